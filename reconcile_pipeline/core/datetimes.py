"""App-DB DateTime values as epoch milliseconds (UTC), whatever encoding wrote them.

Accepted: integer epoch milliseconds (Prisma's SQLite connector), ``'YYYY-MM-DD HH:MM:SS[.fff]'``
text (SQL defaults, UTC), ISO-8601 text with ``T``, an optional fraction and ``Z``/``±HH:MM``
(other drivers and the app's own writers), and ``datetime`` objects (PostgreSQL ``TIMESTAMP(3)``:
naive, meaning UTC). All become epoch ms UTC, truncated to the ms.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import numpy as np
import pandas as pd

from reconcile_pipeline.core.values import is_missing

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# The one text grammar both parsers accept: date, optional time (T or space), optional fraction,
# optional Z or ±HH[:MM] offset. No offset means UTC.
_DATETIME_TEXT = (
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?"
)
_DATETIME_RE = re.compile(_DATETIME_TEXT)
_NUMERIC_TEXT = r"[+-]?\d+(?:\.\d*)?"
_NUMERIC_RE = re.compile(_NUMERIC_TEXT)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def _number_to_ms(value: int | float) -> int:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite epoch-ms number: {value!r}")
        value = math.floor(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"epoch ms out of the 64-bit range: {value!r}")
    return int(value)


def parse_datetime_ms(value: object) -> int | None:
    """One app-DB DateTime value as epoch ms UTC; ``None`` for NULL; ``ValueError`` on garbage."""
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"not a DateTime: {value!r}")
    if isinstance(value, int | np.integer):
        return _number_to_ms(int(value))
    if isinstance(value, float | np.floating):
        return _number_to_ms(float(value))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # PostgreSQL TIMESTAMP(3) comes back naive, in UTC
            value = value.replace(tzinfo=dt.UTC)
        return (value - _EPOCH) // _MS
    if isinstance(value, str):
        text = value.strip()
        if _NUMERIC_RE.fullmatch(text):
            return _number_to_ms(int(text) if text.lstrip("+-").isdigit() else float(text))
        match = _DATETIME_RE.fullmatch(text)
        if not match:
            raise ValueError(f"unparseable DateTime {value!r}")
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        tz = dt.UTC
        if offset and offset != "Z":
            digits = offset[1:].replace(":", "")
            delta = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            tz = dt.timezone(-delta if offset[0] == "-" else delta)  # ValueError if >= 24h
        parsed = dt.datetime(  # ValueError for impossible dates (month 13, Feb 30, ...)
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "")[:3].ljust(3, "0")) * 1000,  # truncate to the ms
            tzinfo=tz,
        )
        return (parsed - _EPOCH) // _MS
    raise ValueError(f"not a DateTime: {value!r} ({type(value).__name__})")


def parse_datetime_series(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Vectorised :func:`parse_datetime_ms`: ``(Int64 epoch ms UTC, bool mask of unparseable)``.

    NULLs are NA and not unparseable. Values are split by kind (numbers, numeric text, date text,
    datetime objects) and each kind is converted in bulk with numpy / ``pd.to_datetime``.
    """
    raw = pd.Series(series, dtype=object, copy=False)
    n = len(raw)
    values = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    null = raw.isna().to_numpy()
    kind = raw.map(type)  # hash-based isin below: a type per value, no per-value parsing

    def _assign(mask: np.ndarray, ms: np.ndarray, good: np.ndarray) -> None:
        idx = np.flatnonzero(mask)[good]
        values[idx] = ms[good]
        ok[idx] = True

    is_int = kind.isin([int, np.int64, np.int32]).to_numpy() & ~null
    if is_int.any():
        objs = raw.to_numpy()[is_int]
        good = np.array([INT64_MIN <= v <= INT64_MAX for v in objs], dtype=bool)
        ints = np.zeros(len(objs), dtype=np.int64)
        ints[good] = objs[good].astype(np.int64)
        _assign(is_int, ints, good)

    is_float = kind.isin([float, np.float64, np.float32]).to_numpy() & ~null
    if is_float.any():
        floats = raw.to_numpy()[is_float].astype(np.float64)
        floats = np.floor(floats)
        # 2**63 is exactly representable; anything >= it does not fit in int64.
        good = np.isfinite(floats) & (floats >= -(2.0**63)) & (floats < 2.0**63)
        ints = np.zeros(len(floats), dtype=np.int64)
        ints[good] = floats[good].astype(np.int64)
        _assign(is_float, ints, good)

    is_str = kind.isin([str]).to_numpy() & ~null
    if is_str.any():
        text = raw[is_str].astype(str).str.strip()
        numeric = text.str.fullmatch(_NUMERIC_TEXT).to_numpy()
        if numeric.any():
            # Rare (Prisma writes integers): reuse the scalar rule for exact int/float handling.
            parsed = [_safe_number_text(t) for t in text[numeric]]
            good = np.array([p is not None for p in parsed], dtype=bool)
            ms = np.array([p if p is not None else 0 for p in parsed], dtype=np.int64)
            _assign(_sub_mask(is_str, numeric), ms, good)
        dated = text.str.fullmatch(_DATETIME_TEXT).to_numpy() & ~numeric
        if dated.any():
            # Truncate fractions to the ms first so that conversion is exact (no rounding).
            trimmed = text[dated].str.replace(r"(\.\d{3})\d+", r"\1", regex=True)
            stamps = pd.to_datetime(trimmed, format="ISO8601", utc=True, errors="coerce")
            ms, good = _timestamps_to_ms(stamps)
            _assign(_sub_mask(is_str, dated), ms, good)

    is_dt = kind.isin([dt.datetime, pd.Timestamp, np.datetime64]).to_numpy() & ~null
    if is_dt.any():
        stamps = pd.to_datetime(raw[is_dt], utc=True, errors="coerce")
        ms, good = _timestamps_to_ms(stamps)
        _assign(is_dt, ms, good)

    result = pd.Series(pd.array(values, dtype="Int64"), index=raw.index)
    result[~ok] = pd.NA
    bad = pd.Series(~ok & ~null, index=raw.index)
    return result, bad


def _safe_number_text(text: str) -> int | None:
    try:
        return parse_datetime_ms(text)
    except ValueError:
        return None


def _sub_mask(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Positions (in the full array) of the ``inner``-selected elements of ``outer``."""
    mask = np.zeros(len(outer), dtype=bool)
    mask[np.flatnonzero(outer)[inner]] = True
    return mask


def _timestamps_to_ms(stamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    good = stamps.notna().to_numpy()
    micros = np.zeros(len(stamps), dtype=np.int64)
    if good.any():
        # Microsecond unit covers years 1..9999 without overflow; floor-divide to the ms.
        as_us = stamps[good].dt.as_unit("us").dt.tz_localize(None)
        micros[good] = as_us.to_numpy().astype("datetime64[us]").astype(np.int64)
    return micros // 1000, good
