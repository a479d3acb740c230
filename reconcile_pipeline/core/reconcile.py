"""The reconciliation as pure frame functions: authoritative snapshots, what to write, what is stale,
and whether the table converged. The Dagster assets are thin wrappers around these.

Unknown cells are (workspace_id, field) pairs whose authoritative value is not known (a bad value
in the app DB, or the whole session group when the session runtime is unknown): they are never
written and never drift.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reconcile_pipeline.core import fields as F
from reconcile_pipeline.core.derivations import derive
from reconcile_pipeline.core.drift import canonical_series

SESSION_FIELDS = F.GROUPS["session"]
UNKNOWN_COLUMNS = ["workspace_id", "project_id", "field", "reason"]
SNAPSHOT_COLUMNS = ["workspace_id", "project_id", *F.RAW_FIELDS, *F.DERIVED_FIELDS]


@dataclass(frozen=True)
class Authoritative:
    snapshots: pd.DataFrame  # SNAPSHOT_COLUMNS (session fields present even when unknown)
    unknown: pd.DataFrame  # UNKNOWN_COLUMNS
    session_known: bool


def build_authoritative(
    workspaces: pd.DataFrame,
    problems: pd.DataFrame,
    session_fields: pd.DataFrame | None,
    git_stats: pd.DataFrame,
    unknown_fields: Iterable[str] = (),
) -> Authoritative:
    """Join the extract, the session runtime and git stats into one snapshot row per workspace.
    ``unknown_fields``: fields the app DB's schema generation lacks, unknown for every row."""
    frame = workspaces.copy()
    if session_fields is None:
        frame["is_working"] = pd.array([False] * len(frame), dtype="boolean")
        frame["pending_request_type"] = None
    else:
        frame = frame.merge(
            session_fields[["workspace_id", "is_working", "pending_request_type"]],
            on="workspace_id",
            how="left",
        )
        frame["is_working"] = frame["is_working"].astype("boolean").fillna(False)
        frame["pending_request_type"] = (
            frame["pending_request_type"]
            .astype(object)
            .where(frame["pending_request_type"].notna(), None)
        )
    git = git_stats[["workspace_id", *F.GIT_FIELDS]] if len(git_stats) else None
    if git is not None:
        frame = frame.merge(git, on="workspace_id", how="left")
    else:
        for column in F.GIT_FIELDS:
            frame[column] = pd.NA
    for column in F.GIT_FIELDS:
        frame[column] = frame[column].astype("boolean" if column in F.BOOL_FIELDS else "Int64")
    frame = frame[["workspace_id", "project_id", *F.RAW_FIELDS]].sort_values("workspace_id")
    frame = frame.reset_index(drop=True)

    unknown = problems.reindex(columns=["workspace_id", "field", "reason"])
    unknown = unknown[unknown["field"].isin(F.RAW_FIELDS)]
    whole_columns = [(f, "not in the app DB's schema generation") for f in sorted(unknown_fields)]
    if session_fields is None:
        whole_columns += [(f, "session runtime unknown") for f in SESSION_FIELDS]
    if whole_columns and len(frame):
        unknown = pd.concat(
            [
                unknown,
                *(
                    pd.DataFrame(
                        {"workspace_id": frame["workspace_id"].to_numpy(), "field": f, "reason": r}
                    )
                    for f, r in whole_columns
                ),
            ],
            ignore_index=True,
        )
    unknown = unknown.merge(frame[["workspace_id", "project_id"]], on="workspace_id", how="inner")
    unknown = unknown[UNKNOWN_COLUMNS].reset_index(drop=True)

    derived = pd.DataFrame.from_records(
        [derive(r) for r in _records(frame, F.RAW_FIELDS)],
        columns=list(F.DERIVED_FIELDS),
        index=frame.index,
    )
    frame = pd.concat([frame, derived], axis=1)
    return Authoritative(frame[SNAPSHOT_COLUMNS], unknown, session_fields is not None)


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Row dicts with plain Python values (None for any missing value)."""
    out = frame[list(columns)].astype(object).where(frame[list(columns)].notna(), None)
    return out.to_dict("records")


def _differs(auth: pd.DataFrame, stored: pd.DataFrame, field: str) -> pd.Series:
    a, s = canonical_series(field, auth[field]), canonical_series(field, stored[field])
    return (a != s).fillna(False) | (a.isna() ^ s.isna())


def rows_to_write(
    authoritative: Authoritative, stored: pd.DataFrame
) -> tuple[list[dict[str, Any]], int]:
    """Upsert payloads for new workspaces and for those whose known values differ from the table.

    Returns (rows, unchanged count). A row leaves out its unknown fields. Rows that already match
    are not sent at all: an unchanged fleet writes nothing.
    """
    snaps = authoritative.snapshots
    if snaps.empty:
        return [], 0
    unknown = authoritative.unknown
    known = {f: pd.Series(True, index=snaps.index) for f in F.RAW_FIELDS}
    if not unknown.empty:
        position = pd.Series(snaps.index, index=snaps["workspace_id"])
        for field, group in unknown.groupby("field"):
            mask = known[field].copy()
            mask.loc[position.reindex(group["workspace_id"]).dropna().astype(int)] = False
            known[field] = mask

    stored_cols = ["workspace_id", *F.RAW_FIELDS]
    joined = snaps[["workspace_id", *F.RAW_FIELDS]].merge(
        stored.reindex(columns=stored_cols),
        on="workspace_id",
        how="left",
        suffixes=("", "__stored"),
        indicator=True,
    )
    is_new = (joined["_merge"] == "left_only").to_numpy()
    changed = pd.Series(is_new, index=snaps.index)
    stored_side = joined[[f"{f}__stored" for f in F.RAW_FIELDS]].set_axis(
        list(F.RAW_FIELDS), axis=1
    )
    for field in F.RAW_FIELDS:
        changed |= _differs(joined, stored_side, field) & known[field]

    payload = _records(snaps.loc[changed], ["workspace_id", "project_id", *F.RAW_FIELDS])
    masks = {f: known[f][changed].to_numpy() for f in F.RAW_FIELDS}
    for i, row in enumerate(payload):
        for field in F.RAW_FIELDS:
            if not masks[field][i]:
                del row[field]
    return payload, int((~changed).sum())


def stale_ids(
    stored: pd.DataFrame,
    authoritative: pd.DataFrame,
    covered_projects: Iterable[str] | None,
) -> list[str]:
    """Snapshot rows to remove: in a covered project (or anywhere when ``covered_projects`` is
    None, i.e. a run over every project) but not among the authoritative workspaces."""
    live = set(authoritative["workspace_id"])
    candidates = stored
    if covered_projects is not None:
        candidates = stored[stored["project_id"].isin(set(covered_projects))]
    return sorted(set(candidates["workspace_id"]) - live)


def stale_scope(
    stored: pd.DataFrame,
    covered: Sequence[str] | None,
    own_projects: Iterable[str],
    live_projects: Iterable[str],
) -> list[str]:
    """Projects whose rows stale cleanup may remove: the run's own projects (``covered``) and,
    in a run over every project (``covered`` None), also stored projects no longer live in the
    app DB. A live project created since the tick has no partition yet: its rows are not stale."""
    if covered is not None:
        return list(covered)
    live = set(live_projects)
    return sorted(set(own_projects) | {p for p in stored["project_id"].unique() if p not in live})


@dataclass(frozen=True)
class PrunePlan:
    stale: list[str]
    limit: int
    blocked: bool  # more stale rows than the limit: remove nothing (an empty or partial extract)


def plan_prune(
    stored: pd.DataFrame,
    authoritative: pd.DataFrame,
    scope: Sequence[str],
    *,
    max_fraction: float,
    min_guard: int,
) -> PrunePlan:
    """Stale rows of ``scope``, and whether the prune guard allows removing them in one run:
    at most ``max_fraction`` of the stored rows, or ``min_guard`` rows whatever the fraction."""
    stale = stale_ids(stored, authoritative, scope)
    limit = max(min_guard, math.floor(max_fraction * len(stored)))
    return PrunePlan(stale, limit, len(stale) > limit)


def left_stale(
    after: pd.DataFrame, authoritative: pd.DataFrame, scope: Sequence[str], poll_start_ts: int
) -> pd.DataFrame:
    """Stale rows still in the table. A row any of whose groups was written at or after the poll
    start belongs to a workspace created meanwhile: it is not stale."""
    rows = after[after["workspace_id"].isin(stale_ids(after, authoritative, scope))]
    return rows[(rows[list(F.TS_COLUMNS)] < poll_start_ts).all(axis=1)]


def convergence(
    stored_after: pd.DataFrame,
    authoritative: Authoritative,
    poll_start_ts: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compare the table after the write with the authoritative frame.

    Returns (mismatches, events_won): both long frames (workspace_id, field, group, stored,
    authoritative). A mismatch whose group was written after the poll started is a fresher
    event-driven write that rightly won; any other mismatch, or a missing row, means the table
    did not converge.
    """
    snaps = authoritative.snapshots
    columns = ["workspace_id", "field", "group", "stored", "authoritative"]
    if snaps.empty:
        empty = pd.DataFrame(columns=columns)
        return empty, empty.copy()
    joined = snaps[["workspace_id", *F.RAW_FIELDS]].merge(
        stored_after.reindex(columns=["workspace_id", *F.RAW_FIELDS, *F.TS_COLUMNS]),
        on="workspace_id",
        how="left",
        suffixes=("", "__stored"),
        indicator=True,
    )
    unknown_keys = set(
        zip(authoritative.unknown["workspace_id"], authoritative.unknown["field"], strict=True)
    )
    stored_side = joined[[f"{f}__stored" for f in F.RAW_FIELDS]].set_axis(
        list(F.RAW_FIELDS), axis=1
    )
    parts = []
    missing = joined["_merge"] == "left_only"
    if missing.any():
        parts.append(
            pd.DataFrame(
                {
                    "workspace_id": joined.loc[missing, "workspace_id"],
                    "field": "*",
                    "group": "*",
                    "stored": None,
                    "authoritative": "row",
                }
            )
        )
    for field in F.RAW_FIELDS:
        diff = _differs(joined, stored_side, field) & ~missing
        if not diff.any():
            continue
        hit = pd.DataFrame(
            {
                "workspace_id": joined.loc[diff, "workspace_id"],
                "field": field,
                "group": F.GROUP_OF[field],
                "stored": stored_side.loc[diff, field].astype(object),
                "authoritative": joined.loc[diff, field].astype(object),
                "_group_ts": joined.loc[diff, F.TS_COLUMN[F.GROUP_OF[field]]],
            }
        )
        parts.append(hit)
    if not parts:
        empty = pd.DataFrame(columns=columns)
        return empty, empty.copy()
    out = pd.concat(parts, ignore_index=True)
    if unknown_keys:
        out = out[
            [
                (w, f) not in unknown_keys
                for w, f in zip(out["workspace_id"], out["field"], strict=True)
            ]
        ]
    # >=: a write stamped at the poll start itself was kept by the merge rule (strictly newer
    # wins), so it is a fresher event, not a mismatch.
    group_ts = out["_group_ts"] if "_group_ts" in out else pd.Series(pd.NA, index=out.index)
    won = group_ts.fillna(0).astype("int64") >= poll_start_ts
    events_won = out[won][columns].reset_index(drop=True)
    mismatches = out[~won][columns].reset_index(drop=True)
    return mismatches, events_won
