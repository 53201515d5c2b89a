"""Input checks the models share: the messages name what is wrong and where (ml.errors.ModelInputError)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ml.errors import ModelInputError


def utc_timestamp(name: str, value: datetime | pd.Timestamp) -> pd.Timestamp:
    """`value` as a UTC pandas Timestamp (a naive one is read as UTC); ModelInputError naming `name` if it is none."""
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise ModelInputError(f"{name} must be a datetime, got {value!r}") from error
    if pd.isna(stamp):
        raise ModelInputError(f"{name} must be a datetime, got {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def require_columns(name: str, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """ModelInputError naming the missing columns of `frame` (called `name`) and those it has."""
    if not isinstance(frame, pd.DataFrame):
        raise ModelInputError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ModelInputError(f"{name} is missing the column(s) {', '.join(missing)} "
                              f"(it has: {', '.join(map(str, frame.columns)) or 'none'})")
