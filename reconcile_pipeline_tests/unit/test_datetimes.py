"""App-DB DateTime values to epoch ms: every encoding the app's writers use, and garbage."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest

from reconcile_pipeline.core.datetimes import parse_datetime_ms, parse_datetime_series

T0 = 1_704_164_645_123  # 2024-01-02T03:04:05.123Z
T0_TEXT = "2024-01-02 03:04:05.123"

PLUS_2 = dt.timezone(dt.timedelta(hours=2))
PARSE_CASES = [
    (None, None),
    (float("nan"), None),
    (T0, T0),
    (np.int64(T0), T0),
    (float(T0), T0),
    (T0 + 0.9, T0),  # floor to the ms
    (0, 0),
    (-1, -1),
    (str(T0), T0),
    (f" {T0} ", T0),
    (T0_TEXT, T0),
    ("2024-01-02 03:04:05", T0 - 123),
    ("2024-01-02T03:04:05.123Z", T0),
    ("2024-01-02T03:04:05.1239Z", T0),  # truncated, not rounded
    ("2024-01-02T03:04:05.123456789Z", T0),
    ("2024-01-02T03:04:05.12Z", T0 - 3),
    ("2024-01-02T05:04:05.123+02:00", T0),
    ("2024-01-02T05:04:05.123+0200", T0),
    ("2024-01-01T22:04:05.123-05:00", T0),
    ("2024-01-02T03:04", T0 - 5_123),
    ("2024-01-02", 1_704_153_600_000),
    ("1969-12-31T23:59:59.999Z", -1),
    ("0001-01-01 00:00:00", -62_135_596_800_000),
    ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    (dt.datetime(2024, 1, 2, 3, 4, 5, 123_999), T0),  # naive = UTC (PostgreSQL), truncated
    (dt.datetime(2024, 1, 2, 5, 4, 5, 123_000, tzinfo=PLUS_2), T0),
    (pd.Timestamp("2024-01-02T03:04:05.123Z"), T0),
    ("2024-01-02T03:04:05.123+00:00", T0),  # what the app's current client writes
]
GARBAGE = [
    "",
    "yesterday",
    "2024-13-01 00:00:00",
    "2024-02-30",
    "2024/01/02",
    "12:00",
    "2024-01-02T03:04:05 Z",
    "2024-01-02T03:04:05+24:00",
    True,
    b"2024-01-02",
    float("inf"),
    2**63,
    float(2**64),
    dt.date(2024, 1, 2),
]


@pytest.mark.parametrize(("value", "expected"), PARSE_CASES, ids=repr)
def test_parse_datetime_ms(value, expected):
    assert parse_datetime_ms(value) == expected


@pytest.mark.parametrize("value", GARBAGE, ids=repr)
def test_parse_datetime_ms_rejects_garbage(value):
    with pytest.raises(ValueError):
        parse_datetime_ms(value)


def test_parse_datetime_series_agrees_with_scalar():
    values = [v for v, _ in PARSE_CASES] + GARBAGE
    series = pd.Series(values, index=range(100, 100 + len(values)), dtype=object)
    parsed, bad = parse_datetime_series(series)
    assert str(parsed.dtype) == "Int64" and bad.dtype == bool
    assert list(parsed.index) == list(series.index)
    for value, got, is_bad in zip(values, parsed, bad, strict=True):
        try:
            want = parse_datetime_ms(value)
        except ValueError:
            assert is_bad and got is pd.NA, value
        else:
            assert not is_bad, value
            assert (got is pd.NA) if want is None else got == want, (value, got, want)


def test_parse_datetime_series_is_vectorised_fast():
    n = 20_000
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 2**41, n).tolist()
    values = ints + [T0_TEXT] * n + ["2024-01-02T05:04:05.123+02:00"] * n + [None] * 100
    series = pd.Series(values, dtype=object)
    started = time.perf_counter()
    parsed, bad = parse_datetime_series(series)
    assert time.perf_counter() - started < 1.5
    assert not bad.any()
    assert parsed.iloc[:n].tolist() == ints
    assert set(parsed.iloc[n : 3 * n]) == {T0}
