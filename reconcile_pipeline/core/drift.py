"""Field-level drift between stored snapshots and authoritative values (DESIGN "Drift").

Two forms that give the same answer: ``detect_drift`` for one workspace (readable, used by tests
and the app), ``detect_drift_frame`` for whole frames (vectorised, used by the pipeline).
A field is *unknown* when the authoritative side does not have it (key or column absent, or a
(workspace_id, field) pair listed in ``unknown``): unknown fields are never drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reconcile_pipeline.core.fields import BOOL_FIELDS, DRIFT_FIELDS, GROUP_OF, INT_FIELDS

DRIFT_COLUMNS = [
    "workspace_id",
    "project_id",
    "field",
    "group",
    "snapshot_value",
    "authoritative_value",
]


@dataclass(frozen=True, slots=True)
class Drift:
    workspace_id: str | None
    project_id: str | None
    field: str
    group: str
    snapshot_value: Any
    authoritative_value: Any


def normalise(field: str, value: Any) -> Any:
    """One canonical Python value per field kind, so 1 == True and NaN == None compare right."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if field in BOOL_FIELDS:
        return bool(value)
    if field in INT_FIELDS:
        return int(value)
    return str(value)


def detect_drift(existing: Mapping[str, Any], authoritative: Mapping[str, Any]) -> list[Drift]:
    """Drift records of one workspace whose snapshot already exists."""
    drifts = []
    for field in DRIFT_FIELDS:
        if field not in authoritative:
            continue
        stored = normalise(field, existing.get(field))
        truth = normalise(field, authoritative[field])
        if stored != truth:
            drifts.append(
                Drift(
                    workspace_id=existing.get("workspace_id", authoritative.get("workspace_id")),
                    project_id=authoritative.get("project_id", existing.get("project_id")),
                    field=field,
                    group=GROUP_OF[field],
                    snapshot_value=stored,
                    authoritative_value=truth,
                )
            )
    return drifts


def canonical_series(field: str, column: pd.Series) -> pd.Series:
    if field in BOOL_FIELDS:
        return column.astype("boolean")
    if field in INT_FIELDS:
        return pd.to_numeric(column, errors="coerce").astype("Int64")
    return column.astype("string")


def detect_drift_frame(
    existing: pd.DataFrame,
    authoritative: pd.DataFrame,
    unknown: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Vectorised ``detect_drift`` over frames keyed by ``workspace_id``.

    ``existing``: stored snapshots; ``authoritative``: one row per workspace (with project_id);
    ``unknown``: optional (workspace_id, field) pairs whose authoritative value is not known.
    Returns one row per drift with DRIFT_COLUMNS, sorted by workspace_id then DRIFT_FIELDS order.
    """
    fields = [f for f in DRIFT_FIELDS if f in authoritative.columns]
    if existing.empty or authoritative.empty or not fields:
        return pd.DataFrame(columns=DRIFT_COLUMNS)
    left = existing[["workspace_id", *[f for f in fields if f in existing.columns]]]
    right = authoritative[["workspace_id", "project_id", *fields]]
    both = right.merge(left, on="workspace_id", how="inner", suffixes=("__auth", "__stored"))
    if both.empty:
        return pd.DataFrame(columns=DRIFT_COLUMNS)
    if unknown is not None and not unknown.empty:
        unknown_keys = set(zip(unknown["workspace_id"], unknown["field"], strict=True))
    else:
        unknown_keys = set()

    parts = []
    for order, field in enumerate(fields):
        auth = canonical_series(
            field, both[f"{field}__auth"] if field in left.columns else both[field]
        )
        stored_col = f"{field}__stored"
        stored = canonical_series(
            field,
            both[stored_col] if stored_col in both.columns else pd.Series(None, index=both.index),
        )
        differs = (auth != stored).fillna(False) | (auth.isna() ^ stored.isna())
        if not differs.any():
            continue
        hit = both.loc[differs, ["workspace_id", "project_id"]].copy()
        hit["field"] = field
        hit["group"] = GROUP_OF[field]
        # object dtype: pandas would otherwise turn None into NaN in a str column.
        hit["snapshot_value"] = pd.Series(
            [normalise(field, v) for v in stored[differs]], index=hit.index, dtype=object
        )
        hit["authoritative_value"] = pd.Series(
            [normalise(field, v) for v in auth[differs]], index=hit.index, dtype=object
        )
        hit["_order"] = order
        parts.append(hit)
    if not parts:
        return pd.DataFrame(columns=DRIFT_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    if unknown_keys:
        keep = [
            (w, f) not in unknown_keys
            for w, f in zip(out["workspace_id"], out["field"], strict=True)
        ]
        out = out[keep]
    out = out.sort_values(["workspace_id", "_order"], kind="stable").drop(columns="_order")
    return out.reset_index(drop=True)[DRIFT_COLUMNS]


def drifts_to_frame(drifts: list[Drift]) -> pd.DataFrame:
    # object dtype: a value column mixes None, str, int and bool and must keep them as they are.
    return pd.DataFrame(
        [[getattr(d, c) for c in DRIFT_COLUMNS] for d in drifts],
        columns=DRIFT_COLUMNS,
        dtype=object,
    )
