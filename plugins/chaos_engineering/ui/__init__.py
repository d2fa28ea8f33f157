"""The "Chaos" page in the Airflow UI: a FastAPI app the plugin mounts on the api-server at `/chaos`."""
