"""Shift this process's wall clock back by TAILOR_TEST_CLOCK_SHIFT_HOURS, for Airflow processes started by the
scheduler tests (on PYTHONPATH only there). time-machine moves time.time and datetime.now, and the clock ticks on;
monotonic clocks and sleeping are untouched. Forked children (task runners) inherit the shift."""

import os

_hours = os.environ.get("TAILOR_TEST_CLOCK_SHIFT_HOURS")
if _hours:
    from datetime import UTC, datetime, timedelta

    import time_machine

    time_machine.travel(datetime.now(UTC) - timedelta(hours=float(_hours)), tick=True).start()
