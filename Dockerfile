# The LGDP orchestrator's image: the official Apache Airflow image (the same release as
# requirements.txt pins) with this project's dependencies, the lgdp package, dags/, plugins/ and
# return_specs/. Built by docker-compose.yaml; see docs/deployment.md.
ARG AIRFLOW_VERSION=3.3.2
# Python 3.11: the release the project supports (pyproject.toml) and constraints.txt was frozen on.
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11
ARG AIRFLOW_VERSION

# Dependencies first (a layer that only changes with requirements.txt or constraints.txt).
# apache-airflow is pinned to the image's own release so pip never replaces it.
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/lgdp/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
        -r /opt/lgdp/requirements.txt -c /opt/lgdp/constraints.txt \
 && pip check

# The lgdp package (triggers and operators are imported from it by the triggerer and workers).
COPY --chown=airflow:0 pyproject.toml README.md /opt/lgdp/
COPY --chown=airflow:0 include /opt/lgdp/include
RUN pip install --no-cache-dir --no-deps /opt/lgdp

# What Airflow runs: DAG files, plugins and the return specs (the register and its reference data).
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 return_specs /opt/airflow/return_specs

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=false \
    LGDP_SPECS_DIR=/opt/airflow/return_specs \
    SODA_CORE_TELEMETRY_ENABLED=false
