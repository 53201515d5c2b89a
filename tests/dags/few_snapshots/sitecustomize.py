"""Train the customer models on two churn snapshots instead of six in the Airflow processes a test starts with this
folder on PYTHONPATH (a Celery worker: its task processes are forked from it), as the in-process daily runs of
tests/dags/test_daily.py do: the feed needs models that score, not the best ones, and each snapshot is a dbt build."""

from ml import config

config.TRAINING_SNAPSHOTS = 2
