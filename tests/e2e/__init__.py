"""End-to-end tests: a real Airflow driven through its REST API, the way a user drives it."""
