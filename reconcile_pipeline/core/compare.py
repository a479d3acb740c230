"""The one comparison of authoritative snapshots with stored ones, and the three answers drawn
from it: drift (what the table got wrong), the rows to write, and convergence (what is still
wrong after the write, and why). Beside it, :func:`underived`: stored rows whose derived fields
are not their rule set's derivation of their raw fields (a rule set change, a tampered column).

Unknown values have one representation, a ``known`` mask: a boolean frame aligned with the
authoritative rows, one column per raw field, False where the authoritative value is not known (a
bad app-DB cell, a field the app's schema generation lacks, the session group without a session
runtime). An unknown value is never drift, never written and never a mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reconcile_pipeline.core import fields as F
from reconcile_pipeline.core import rules
from reconcile_pipeline.core.values import is_missing

# A difference of one field: the stored value and the authoritative one.
DIFF_COLUMNS = ["workspace_id", "project_id", "field", "group", "stored", "authoritative"]
# A drift record: a difference of a compared field, with who wrote the stored value and when,
# and what the drift most likely is (CAUSES).
DRIFT_COLUMNS = [*DIFF_COLUMNS, "stored_by", "stored_at", "cause"]
# The pipeline's own writes carry this source.
RECONCILIATION = "reconciliation"
CAUSES = {
    # The stored value came from an earlier reconciliation: the source changed since and the
    # event that said so never came.
    "missed_event": "the source changed after the last reconciliation; no event said so",
    # An event writer stored a value the source does not hold.
    "wrong_write": "an event writer stored a value that disagrees with the source",
    # A row written before writers were recorded.
    "unknown": "the stored value's writer is not recorded",
}
_DRIFT_ORDER = {f: i for i, f in enumerate(F.DRIFT_FIELDS)}


def normalise(field: str, value: Any) -> Any:
    """One canonical Python value per field kind, so 1 == True and NaN == None compare right."""
    if is_missing(value):
        return None
    if field in F.BOOL_FIELDS or field in F.DERIVED_BOOL_FIELDS:
        return bool(value)
    if field in F.INT_FIELDS:
        return int(value)
    return str(value)


def canonical(field: str, column: pd.Series) -> pd.Series:
    """A column in the nullable dtype of its field kind (what both sides are compared in)."""
    if field in F.BOOL_FIELDS or field in F.DERIVED_BOOL_FIELDS:
        return column.astype("boolean")
    if field in F.INT_FIELDS:
        return pd.to_numeric(column, errors="coerce").astype("Int64")
    return column.astype("string")


def known_mask(
    frame: pd.DataFrame,
    unknown_cells: pd.DataFrame | None = None,
    unknown_fields: Iterable[str] = (),
    fields: Sequence[str] = F.RAW_FIELDS,
) -> pd.DataFrame:
    """The ``known`` mask of ``frame`` (rows keyed by ``workspace_id``): a field is unknown for
    every row when it is in ``unknown_fields`` or not a column at all, and for one row when
    ``unknown_cells`` (workspace_id, field) lists it."""
    absent = set(unknown_fields) | {f for f in fields if f not in frame.columns}
    mask = pd.DataFrame(
        {f: np.full(len(frame), f not in absent) for f in fields}, index=frame.index
    )
    if unknown_cells is not None and len(unknown_cells) and len(frame):
        position = pd.Series(np.arange(len(frame)), index=frame["workspace_id"].to_numpy())
        position = position[~position.index.duplicated()]
        cells = unknown_cells[unknown_cells["field"].isin(list(fields))]
        for name, group in cells.groupby("field"):
            rows = position.reindex(group["workspace_id"].to_numpy()).dropna().astype(int)
            mask.iloc[rows.to_numpy(), mask.columns.get_loc(name)] = False
    return mask


@dataclass(frozen=True)
class FieldDiffs:
    """Every raw field whose known authoritative value differs from the stored one, for the
    workspaces that have a stored row; and the authoritative workspaces that have none."""

    diffs: pd.DataFrame  # DIFF_COLUMNS plus "stored_ts": the stored group's timestamp
    missing: tuple[str, ...]  # authoritative workspace ids without a stored row
    compared: int  # authoritative workspaces with a stored row


def diff_fields(
    authoritative: pd.DataFrame, known: pd.DataFrame, stored: pd.DataFrame
) -> FieldDiffs:
    """The comparison: ``authoritative`` rows (workspace_id, project_id, raw fields) with their
    ``known`` mask against ``stored`` snapshot rows (a missing column compares as NULL)."""
    fields = [f for f in F.RAW_FIELDS if f in authoritative.columns]
    stored_columns = ["workspace_id", *fields, *F.TS_COLUMNS, *F.SOURCE_COLUMNS]
    joined = authoritative[["workspace_id", "project_id", *fields]].merge(
        stored.reindex(columns=stored_columns),
        on="workspace_id",
        how="left",
        suffixes=("", "__stored"),
        indicator=True,
    )
    has_row = (joined["_merge"] == "both").to_numpy()
    missing = tuple(joined.loc[~has_row, "workspace_id"])
    known_values = known.reindex(columns=fields, fill_value=False).to_numpy(dtype=bool)
    parts = []
    for i, name in enumerate(fields):
        truth = canonical(name, joined[name])
        current = canonical(name, joined[f"{name}__stored"])
        differs = ((truth != current).fillna(False) | (truth.isna() ^ current.isna())).to_numpy()
        hit = differs & has_row & known_values[:, i]
        if not hit.any():
            continue
        parts.append(
            pd.DataFrame(
                {
                    "workspace_id": joined["workspace_id"].to_numpy()[hit],
                    "project_id": joined["project_id"].to_numpy()[hit],
                    "field": name,
                    "group": F.GROUP_OF[name],
                    # object dtype: one column mixes None, str, int and bool values
                    "stored": _values(name, current.to_numpy()[hit]),
                    "authoritative": _values(name, truth.to_numpy()[hit]),
                    "stored_ts": joined[F.TS_COLUMN[F.GROUP_OF[name]]].to_numpy()[hit],
                    "stored_by": joined[F.SOURCE_COLUMN[F.GROUP_OF[name]]]
                    .astype(object)
                    .where(lambda c: c.notna(), "")
                    .to_numpy()[hit],
                }
            )
        )
    diffs = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=[*DIFF_COLUMNS, "stored_ts", "stored_by"])
    )
    return FieldDiffs(diffs, missing, int(has_row.sum()))


def _values(name: str, values: np.ndarray) -> pd.Series:
    # object dtype: a value column keeps None, int and bool as they are (no float detour)
    return pd.Series([normalise(name, v) for v in values], dtype=object)


# ---- the three answers -------------------------------------------------------------------------


def drift_records(diffs: FieldDiffs) -> pd.DataFrame:
    """Drift: the compared fields among the differences (new workspaces are seeded, not drift),
    ordered by workspace and field. Columns DRIFT_COLUMNS."""
    frame = diffs.diffs[diffs.diffs["field"].isin(F.DRIFT_FIELDS)]
    if frame.empty:
        return pd.DataFrame(columns=DRIFT_COLUMNS)
    writer = frame["stored_by"].astype(object).fillna("").astype(str)
    frame = frame.assign(
        stored_at=pd.to_numeric(frame["stored_ts"]).fillna(0).astype("int64"),
        stored_by=writer,
        cause=[
            "unknown" if not w else "missed_event" if w == RECONCILIATION else "wrong_write"
            for w in writer
        ],
    )
    order = frame["field"].map(_DRIFT_ORDER)
    frame = frame.assign(_order=order).sort_values(["workspace_id", "_order"], kind="stable")
    out = frame[DRIFT_COLUMNS].reset_index(drop=True)
    for column in ("stored", "authoritative"):
        out[column] = out[column].astype(object)
    return out


def underived(stored: pd.DataFrame, rule_set: str) -> pd.DataFrame:
    """Stored rows that ``rule_set`` would derive otherwise, one row per derived field that
    differs (DIFF_COLUMNS; group ``derived``; ``rule_set`` when the row follows other rules).
    The store derives on every write, so a rewrite of such a row repairs it."""
    columns = ["workspace_id", "project_id", *F.RAW_FIELDS, *F.DERIVED_FIELDS, "rule_set"]
    frame = stored.reindex(columns=columns)
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    derive = rules.RULE_SETS[rule_set].derive
    found = []
    for row in records:
        if (row["rule_set"] or rules.LEGACY) != rule_set:
            found.append(
                (row["workspace_id"], row["project_id"], "rule_set", row["rule_set"], rule_set)
            )
        for name, want in derive(row).items():
            have = normalise(name, row[name])
            if have != want:
                found.append((row["workspace_id"], row["project_id"], name, have, want))
    frame = pd.DataFrame(
        [(w, p, f, "derived", have, want) for w, p, f, have, want in found],
        columns=DIFF_COLUMNS,
        dtype=object,
    )
    return frame


def rows_to_write(
    authoritative: pd.DataFrame,
    known: pd.DataFrame,
    diffs: FieldDiffs,
    rederive: Iterable[str] = (),
) -> tuple[list[dict[str, Any]], int]:
    """Upsert payloads for new workspaces, for those with a known difference and for those to
    ``rederive``; each leaves its unknown fields out. Returns (rows, unchanged count): an
    unchanged fleet writes nothing."""
    changed = set(diffs.missing) | set(diffs.diffs["workspace_id"]) | set(rederive)
    if not changed:
        return [], len(authoritative)
    mask = authoritative["workspace_id"].isin(changed).to_numpy()
    fields = [f for f in F.RAW_FIELDS if f in authoritative.columns]
    chosen = authoritative.loc[mask, ["workspace_id", "project_id", *fields]]
    values = chosen.astype(object).where(chosen.notna(), None).to_dict("records")
    known_rows = known.loc[mask].reindex(columns=fields, fill_value=False).to_numpy(dtype=bool)
    payload = []
    for row, known_row in zip(values, known_rows, strict=True):
        for name, is_known in zip(fields, known_row, strict=True):
            if not is_known:
                del row[name]
        payload.append(row)
    return payload, int((~mask).sum())


@dataclass(frozen=True)
class Convergence:
    """The table after the write against the authoritative values."""

    mismatches: pd.DataFrame  # DIFF_COLUMNS: not converged (a lost write, a missing row)
    events_won: pd.DataFrame  # DIFF_COLUMNS: a fresher event-driven write rightly kept


def convergence(
    after: FieldDiffs,
    poll_start_ts: int,
    underived_after: pd.DataFrame | None = None,
    removed_meanwhile: Iterable[str] = (),
) -> Convergence:
    """Split what still differs: a field whose group was written at or after the poll start
    is a fresher event (the merge rule keeps a write stamped at the poll start itself: strictly
    newer wins); a row missing because it was removed after the poll start (its tombstone kept
    the write out: ``removed_meanwhile``) is a fresher removal; any other difference, a row that
    is missing, or a derived field that is not its rules' derivation (``underived_after``) did
    not converge."""
    frame = after.diffs
    won = frame["stored_ts"].fillna(0).astype("int64").to_numpy() >= poll_start_ts
    gone = set(removed_meanwhile)
    rows = pd.DataFrame(
        {
            "workspace_id": [w for w in after.missing if w not in gone],
            "project_id": None,
            "field": "*",
            "group": "*",
            "stored": None,
            "authoritative": "row",
        }
    )
    parts = [rows, frame.loc[~won, DIFF_COLUMNS]]
    if underived_after is not None and len(underived_after):
        parts.append(underived_after[DIFF_COLUMNS])
    mismatches = pd.concat(parts, ignore_index=True)
    return Convergence(
        mismatches=mismatches if len(mismatches) else pd.DataFrame(columns=DIFF_COLUMNS),
        events_won=frame.loc[won, DIFF_COLUMNS].reset_index(drop=True),
    )


# ---- one workspace, readable (the app's writers and the tests use it) --------------------------


@dataclass(frozen=True, slots=True)
class Drift:
    workspace_id: str | None
    project_id: str | None
    field: str
    group: str
    stored: Any
    authoritative: Any


def detect_drift(existing: Mapping[str, Any], authoritative: Mapping[str, Any]) -> list[Drift]:
    """Drift records of one workspace whose snapshot exists; a field absent from
    ``authoritative`` is unknown, hence no drift."""
    drifts = []
    for name in F.DRIFT_FIELDS:
        if name not in authoritative:
            continue
        stored = normalise(name, existing.get(name))
        truth = normalise(name, authoritative[name])
        if stored != truth:
            drifts.append(
                Drift(
                    workspace_id=existing.get("workspace_id", authoritative.get("workspace_id")),
                    project_id=authoritative.get("project_id", existing.get("project_id")),
                    field=name,
                    group=F.GROUP_OF[name],
                    stored=stored,
                    authoritative=truth,
                )
            )
    return drifts


def drifts_to_frame(drifts: list[Drift]) -> pd.DataFrame:
    """DIFF_COLUMNS of one-workspace drift records (writers are not known here)."""
    # object dtype: a value column mixes None, str, int and bool and must keep them as they are.
    return pd.DataFrame(
        [[getattr(d, c) for c in DIFF_COLUMNS] for d in drifts],
        columns=DIFF_COLUMNS,
        dtype=object,
    )
