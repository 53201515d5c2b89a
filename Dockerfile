# syntax=docker/dockerfile:1
# Tailor's one image: every Airflow 3 component (api-server, scheduler, dag-processor, triggerer, Celery worker),
# dbt, the models and the simulator, installed from the committed uv.lock. docker-compose.yaml runs it; alone:
#   docker build -t tailor-airflow:local . && docker run --rm -p 8080:8080 tailor-airflow:local airflow standalone

# Python 3.11 because uv.lock is resolved for 3.11 only (pyproject: requires-python >=3.11,<3.12).
FROM python:3.11.14-slim-bookworm

# uv pinned to the version uv.lock was checked with (0.13.9); its image holds nothing but the two binaries.
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/

# Bytecode compiled once at build time (every container would otherwise compile it at start); copies, not hard links,
# out of the cache mount; the image's own Python, never a downloaded one.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PYTHONUNBUFFERED=1

WORKDIR /app

# The locked dependencies first, in their own layer: a code change does not reinstall Airflow. --frozen installs
# exactly uv.lock (no re-resolution); --no-dev leaves out pytest, moto and the vendor SDKs the tests use.
# README.md is part of the project's metadata (pyproject's readme), so the project install needs it.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself, installed editable exactly as `make setup` does: plugins/ and the repository root go on
# sys.path, so `tailor`, `ml` and `simulator` import, and tailor finds dbt_project/ and expectations/ beside itself.
# Its bytecode is compiled here too: at run time these folders are read-only to the user, and every process that
# imports them (each task, each DAG parse) would compile them again.
COPY dags ./dags
COPY plugins ./plugins
COPY ml ./ml
COPY simulator ./simulator
COPY dbt_project ./dbt_project
COPY expectations ./expectations
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
    && .venv/bin/python -m compileall -q dags plugins ml simulator

# A non-root user (uid 50000, the official Airflow image's). The code stays root-owned and read-only to it: every
# write goes to the data dir (DuckDB file, lake, outbox, dbt's target/ and logs/, MLflow, GX results) or to Airflow's
# home. The folders exist here with that owner so that the named volumes compose mounts on them start owned by it.
RUN groupadd --system --gid 50000 tailor \
    && useradd --system --uid 50000 --gid tailor --create-home --home-dir /home/tailor tailor \
    && mkdir -p /data /opt/airflow/logs /opt/airflow/auth \
    && chown -R tailor:tailor /data /opt/airflow

# What `make airflow` (tailor.airflow.local) sets, with the image's paths: the project's dags/ and plugins/, no
# examples, Tailor's DAGs unpaused (a fresh install's first run lands the whole history). TAILOR_DATA_DIR is the
# volume every task-running container shares. dbt would otherwise write its anonymous-usage id into dbt_project/.
ENV PATH=/app/.venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/app/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/app/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
    TAILOR_DATA_DIR=/data \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False

VOLUME ["/data"]
USER tailor
EXPOSE 8080 8765
CMD ["airflow", "api-server"]
