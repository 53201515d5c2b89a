# Tailor — `make demo` runs the pipeline on the embedded defaults; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
SIZE ?= S
export TAILOR_DATA_DIR ?= $(CURDIR)/data
AIRFLOW_PORT ?= 8080
# Airflow's metadata database. Creating backfills needs PostgreSQL or MySQL: SQLite refuses them under concurrent
# access, e.g. make airflow AIRFLOW_DB=postgresql+psycopg2://postgres@127.0.0.1/airflow
AIRFLOW_DB ?= sqlite:///$(CURDIR)/.airflow/airflow.db

.PHONY: setup demo test lint bench airflow simulator clean

# Locked install into .venv; re-runs only when the lock or pyproject changed.
setup: $(VENV)/.synced
$(VENV)/.synced: uv.lock pyproject.toml
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --python 3.11
	@touch $@

demo: setup
	$(BIN)/python -m tailor demo

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m bench --size $(SIZE)

# The simulator alone, in the foreground (Ctrl-C stops it).
simulator: setup
	$(BIN)/python -m simulator serve

# Airflow 3 standalone (scheduler, API server, DAG processor, triggerer) over the project's dags/ and plugins/.
AIRFLOW_ENV = PATH=$(CURDIR)/$(BIN):$$PATH AIRFLOW_HOME=$(CURDIR)/.airflow \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(AIRFLOW_DB) \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$(CURDIR)/.airflow/passwords.json \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/

airflow: setup
	@mkdir -p .airflow dags
	@test -f .airflow/passwords.json || echo '{"admin": "admin"}' > .airflow/passwords.json
	@$(AIRFLOW_ENV) $(BIN)/airflow db migrate >/dev/null
	@$(AIRFLOW_ENV) $(BIN)/airflow pools set duckdb 1 "DuckDB allows one writer: every task that writes it" >/dev/null
	@echo "Airflow UI: http://127.0.0.1:$(AIRFLOW_PORT)  login: admin / admin"
	$(AIRFLOW_ENV) $(BIN)/airflow standalone

clean:
	rm -rf $(TAILOR_DATA_DIR) .airflow .pytest_cache .ruff_cache
