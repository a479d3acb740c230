"""Cell validation of app DB values: the app DB is not trusted, so every cell is checked against
the kind of its column and a bad one becomes NA with a problem row that says why (workspace_id,
field, value, reason), never an exception. Pure: no database, no sink."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from reconcile_pipeline.core.datetimes import INT64_MAX, parse_datetime_series
from reconcile_pipeline.core.generations import SourceColumn
from reconcile_pipeline.core.values import is_missing

PROBLEM_COLUMNS: tuple[str, ...] = ("workspace_id", "field", "value", "reason")


def empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})


def raw_text(value: object) -> str:
    if is_missing(value):
        return "NULL"
    if isinstance(value, bytes):
        return repr(value)
    text = str(value)
    if isinstance(value, str) and not text.isascii():
        # Bytes that were not UTF-8 (surrogate-escaped): show them as \x.. escapes.
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def problem_rows(
    ids: pd.Series, raw: pd.Series, mask: np.ndarray | pd.Series, field: str, reason
) -> pd.DataFrame | None:
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    values = raw[mask].map(raw_text)
    # reason functions get the raw value, so that e.g. 2 and '2' read differently
    reasons = raw[mask].map(reason) if callable(reason) else reason
    return pd.DataFrame(
        {
            "workspace_id": ids[mask].map(raw_text).to_numpy(),
            "field": field,
            "value": values.to_numpy(),
            "reason": np.asarray(reasons) if callable(reason) else reasons,
        }
    )


def text_values(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``string`` series; second item: non-null cells that are not text (e.g. a BLOB)."""
    is_str = raw.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    null = raw.isna().to_numpy()
    out = pd.Series(pd.array([None] * len(raw), dtype="string"), index=raw.index)
    out[is_str] = raw[is_str].astype(str)
    return out, ~is_str & ~null


def not_utf8(values: pd.Series) -> np.ndarray:
    """Cells that held bytes that are not UTF-8 (decoded with surrogateescape by app_engine)."""
    return values.str.contains("[\ud800-\udfff]", regex=True).fillna(False).to_numpy(dtype=bool)


_TRUE = [True, "true", "t", "1"]  # 1 and 1.0 equal True
_FALSE = [False, "false", "f", "0"]


def bool_values(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``boolean`` series from bool / 0 / 1 / 'true' / 'false'; second item: other values."""
    key = raw.map(lambda v: v.strip().lower() if isinstance(v, str) else v)
    # True == 1 == 1.0 (same hash): isin treats them alike, which is intended.
    true = key.isin(_TRUE).to_numpy()
    false = key.isin(_FALSE).to_numpy()
    null = raw.isna().to_numpy()
    out = pd.Series(pd.array([None] * len(raw), dtype="boolean"), index=raw.index)
    out[true] = True
    out[false] = False
    return out, ~true & ~false & ~null


def count_values(raw: pd.Series, source: str) -> tuple[pd.Series, pd.Series]:
    """``Int64`` non-negative integers (a PR number, a retry count); second item: reason per bad
    cell (None where fine)."""

    def check(value: object) -> tuple[int | None, str | None]:
        if is_missing(value):
            return None, None
        if isinstance(value, bool | np.bool_):
            return None, f"{source} {value!r} is not an integer"
        if isinstance(value, float | np.floating):
            if not (math.isfinite(value) and float(value).is_integer()):
                return None, f"{source} {value!r} is not an integer"
            value = int(value)
        if not isinstance(value, int | np.integer):
            return None, f"{source} {value!r} is not an integer"
        if value < 0:
            return None, f"{source} {value} is negative"
        if value > INT64_MAX:
            return None, f"{source} {value} does not fit in 64 bits"
        return int(value), None

    checked = raw.map(check)
    values = pd.Series(pd.array([c[0] for c in checked], dtype="Int64"), index=raw.index)
    return values, pd.Series([c[1] for c in checked], index=raw.index, dtype=object)


def shape_column(
    ids: pd.Series, raw: pd.Series, column: SourceColumn, present: np.ndarray, add
) -> pd.Series:
    """One extract column from its raw cells: typed values, NA and a problem row per bad cell."""
    source, kind, name = column.source, column.kind, column.name
    null = raw.isna().to_numpy() & present
    if kind == "text":
        values, bad = text_values(raw)
        add(problem_rows(ids, raw, bad, name, lambda v: f"{source} {v} is not text"))
        if name != "worktree_path":  # a path may be any bytes; a name must be UTF-8
            invalid = not_utf8(values)
            add(problem_rows(ids, raw, invalid, name, f"{source} is not valid UTF-8"))
            values[invalid] = pd.NA
    elif kind == "bool":
        values, bad = bool_values(raw)
        add(problem_rows(ids, raw, bad, name, lambda v: f"non-boolean {source} {v!r}"))
    elif kind == "datetime":
        values, bad = parse_datetime_series(raw)
        add(
            problem_rows(
                ids, raw, bad.to_numpy(), name, lambda v: f"unparseable DateTime {source} {v!r}"
            )
        )
    elif kind == "count":
        values, reasons = count_values(raw, source)
        bad = reasons.notna().to_numpy()
        if bad.any():
            frame = problem_rows(ids, raw, bad, name, "")
            frame["reason"] = reasons[bad].to_numpy()
            add(frame)
    else:  # enum: tuple of allowed values
        allowed = list(kind)
        valid = raw.isin(allowed).to_numpy()
        values = pd.Series(pd.array([None] * len(raw), dtype="string"), index=raw.index)
        values[valid] = raw[valid].astype(str)
        add(
            problem_rows(
                ids,
                raw,
                ~valid & raw.notna().to_numpy(),
                name,
                lambda v: f"unknown {source} {v!r}; expected one of {allowed}",
            )
        )
    if not column.nullable:
        add(problem_rows(ids, raw, null, name, f"NULL in NOT NULL column {source}"))
    if not present.all():
        values = values.copy()
        values[~present] = column.default if column.default is not None else pd.NA
    return values
