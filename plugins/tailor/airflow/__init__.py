"""Airflow-only glue: Connections to credentials, shared callbacks and pools. The rest of tailor never imports Airflow."""
