# The project's Airflow image: Airflow 3.3.2 on Python 3.11 with the pinned requirements (and their
# constraints), the DAGs, the plugins and include/ baked in, and `chaosctl` on PATH (the watchdog
# Deployment runs it). docker compose builds it; for Kubernetes, push it to your registry.
#   docker build -t airflow-chaos-engineering:latest .
FROM apache/airflow:3.3.2-python3.11

# requirements.txt reads constraints.txt (-c): both go together. apache-airflow is pinned in it,
# so pip keeps the image's Airflow.
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/chaos/
RUN pip install --no-cache-dir -r /opt/chaos/requirements.txt

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 include /opt/airflow/include
COPY --chown=airflow:0 sandbox /opt/chaos/sandbox

# One copy of the package: the plugins folder (which compose may mount over for development),
# for Airflow and for chaosctl alike.
ENV PYTHONPATH=/opt/airflow/plugins \
    CHAOS_INCLUDE_DIR=/opt/airflow/include
USER root
RUN printf '#!/bin/sh\nexec python -m chaos_engineering.cli "$@"\n' > /usr/local/bin/chaosctl \
    && chmod 0755 /usr/local/bin/chaosctl
USER airflow
