# Tailor — `make demo` runs the pipeline on the embedded defaults; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
SIZE ?= S
export TAILOR_DATA_DIR ?= $(CURDIR)/data
AIRFLOW_PORT ?= 8080
# Airflow's metadata database: AIRFLOW_DB if set (e.g. postgresql+psycopg2://postgres@127.0.0.1/airflow), else the
# local PostgreSQL when one answers, else SQLite (backfills then run one DAG run at a time).
export AIRFLOW_DB

.PHONY: setup demo test test-long lint bench airflow simulator clean

# Locked install into .venv; re-runs only when the lock or pyproject changed. Bytecode is compiled here, the
# dependencies' and the project's own: where Python may not write it back (PYTHONDONTWRITEBYTECODE, a read-only
# install) every process would compile what it imports again, and each Airflow process, task and test imports GX,
# dbt, MLflow or scikit-learn (GX: 6.6 s from source, 2.9 s compiled, on a 2-core machine).
setup: $(VENV)/.synced
$(VENV)/.synced: uv.lock pyproject.toml
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --python 3.11 --compile-bytecode
	$(BIN)/python -m compileall -q dags plugins ml simulator bench
	@touch $@

demo: setup
	$(BIN)/python -m tailor demo

test: setup
	$(BIN)/pytest

# The tests too long for every change (marked `long`: the daily DAG's 14-day backfill, about half an hour here).
test-long: setup
	$(BIN)/pytest -m long -n 0

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m bench --size $(SIZE)

# The local live shop alone, in the foreground (Ctrl-C stops it): the same shop on every start (its anchor is kept
# under $(TAILOR_DATA_DIR)/simulator/); any other world: $(BIN)/python -m simulator serve --help
simulator: setup
	$(BIN)/python -m tailor.local_simulator

# Airflow 3 standalone (scheduler, API server, DAG processor, triggerer) over the project's dags/ and plugins/;
# state and logs under $(TAILOR_DATA_DIR)/airflow/<metadata database>/.
airflow: setup
	$(BIN)/python -m tailor.airflow.local --port $(AIRFLOW_PORT)

clean:
	rm -rf $(TAILOR_DATA_DIR) .pytest_cache .ruff_cache
