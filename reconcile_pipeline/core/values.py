"""Cell values as they come from drivers, pandas and writers: the one answer to "is this value
missing?", and plain Python values for everything else."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def is_missing(value: Any) -> bool:
    """None, pandas' NA and NaT, and a float NaN (numpy's included) are missing; nothing else."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def plain(value: Any) -> Any:
    """A plain Python value from a numpy or pandas scalar; a missing value becomes None and a
    whole float an int."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
