"""The reconciliation as plain functions over typed stage values: the authoritative snapshot,
drift against the table, and the table's update (write, prune, verify), each returning a report
that the Dagster layer turns into metadata and check results.

Unknown values (a bad app-DB cell, a field the app's schema generation lacks, the session group
without a session runtime) are never written, never drift and never a mismatch: one ``known``
mask carries them (see :mod:`reconcile_pipeline.core.compare`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

from reconcile_pipeline.core import fields as F
from reconcile_pipeline.core.compare import (
    RECONCILIATION,
    Convergence,
    FieldDiffs,
    convergence,
    diff_fields,
    drift_records,
    known_mask,
    rows_to_write,
    underived,
)
from reconcile_pipeline.core.extract import ExtractBatch
from reconcile_pipeline.core.git_shards import GitStatsReport, collect_shards
from reconcile_pipeline.core.ledger import DriftLedger
from reconcile_pipeline.core.rules import RULE_SETS
from reconcile_pipeline.core.session_runtime import SESSION_GROUP, RuntimeRead, session_fields
from reconcile_pipeline.core.store import SnapshotStore, UpsertResult
from reconcile_pipeline.core.values import is_missing

UNKNOWN_COLUMNS = ["workspace_id", "project_id", "field", "reason"]
SNAPSHOT_COLUMNS = ["workspace_id", "project_id", *F.RAW_FIELDS, *F.DERIVED_FIELDS, "rule_set"]
SOURCE = RECONCILIATION


@dataclass(frozen=True)
class Authoritative:
    """The authoritative snapshot of one run's workspaces: the value the last stages share.

    Carries the batch's poll start (every write is stamped with it) and projects (what stale
    cleanup may touch) along with the snapshot rows and their ``known`` mask.
    """

    poll_start_ts: int
    projects: tuple[str, ...]  # the run's project partitions
    live_projects: tuple[str, ...]  # every non-archived project of the app DB
    rule_set: str  # the rule set that derived the snapshots (core/rules)
    snapshots: pd.DataFrame  # SNAPSHOT_COLUMNS, one row per workspace, by workspace_id
    known: pd.DataFrame  # bool, aligned with snapshots, one column per raw field
    unknown_cells: pd.DataFrame  # UNKNOWN_COLUMNS: bad app-DB cells, with their reason
    unknown_fields: Mapping[str, str]  # field -> why it is unknown for every workspace
    runtime_problems: pd.DataFrame  # per-row session runtime problems (workspace_id, field, ...)

    @property
    def session_known(self) -> bool:
        return not set(SESSION_GROUP) & set(self.unknown_fields)


def build_authoritative(
    batch: ExtractBatch, runtime: RuntimeRead, git: GitStatsReport
) -> Authoritative:
    """Join the extract, the session runtime and git stats into one snapshot row per workspace,
    with the derived fields of the batch's rule set."""
    rule_set = RULE_SETS[batch.rule_set]
    frame = batch.workspaces.copy()
    sessions = session_fields(runtime, batch.extract.sessions, rule_set)
    if sessions is not None:
        frame = frame.merge(sessions.frame, on="workspace_id", how="left")
    # A workspace without agent sessions: not working, nothing pending, no summaries.
    working = frame["is_working"] if sessions is not None else pd.Series(False, index=frame.index)
    frame["is_working"] = working.astype("boolean").fillna(False)
    for column, empty in (("pending_request_type", None), ("session_summaries", "[]")):
        values = (
            frame[column].astype(object)
            if sessions is not None
            else pd.Series(index=frame.index, dtype=object)
        )
        filled = values.where(values.notna(), empty)
        frame[column] = filled
    stats = git.stats[["workspace_id", *F.GIT_FIELDS]]
    frame = frame.merge(stats, on="workspace_id", how="left")
    for column in F.GIT_FIELDS:
        frame[column] = frame[column].astype("boolean" if column in F.BOOL_FIELDS else "Int64")
    frame = frame[["workspace_id", "project_id", *F.RAW_FIELDS]].sort_values("workspace_id")
    frame = frame.reset_index(drop=True)
    derived = pd.DataFrame.from_records(
        [rule_set.derive(r) for r in _records(frame, F.RAW_FIELDS)],
        columns=list(F.DERIVED_FIELDS),
        index=frame.index,
    )
    snapshots = pd.concat([frame, derived], axis=1).assign(rule_set=rule_set.name)
    snapshots = snapshots[SNAPSHOT_COLUMNS]

    unknown_fields = {
        f: f"not in the app DB's schema generation {batch.generation}"
        for f in sorted(batch.extract.unknown_fields)
    }
    if sessions is None:
        unknown_fields.update(
            {f: f"session runtime unknown: {runtime.reason}" for f in SESSION_GROUP}
        )
    problems = batch.extract.problems
    if sessions is not None:
        problems = pd.concat([problems, sessions.problems], ignore_index=True)
    cells = problems.reindex(columns=["workspace_id", "field", "reason"])
    cells = cells[cells["field"].isin(F.RAW_FIELDS)]
    cells = cells.merge(frame[["workspace_id", "project_id"]], on="workspace_id", how="inner")
    return Authoritative(
        poll_start_ts=batch.poll_start_ts,
        projects=batch.projects,
        live_projects=batch.live_projects,
        rule_set=rule_set.name,
        snapshots=snapshots,
        known=known_mask(snapshots, cells, unknown_fields),
        unknown_cells=cells[UNKNOWN_COLUMNS].reset_index(drop=True),
        unknown_fields=unknown_fields,
        runtime_problems=(
            sessions.problems if sessions is not None else pd.DataFrame(columns=["workspace_id"])
        ).merge(frame[["workspace_id", "project_id"]], on="workspace_id", how="left"),
    )


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict]:
    """Row dicts with plain Python values (None for any missing value)."""
    out = frame[list(columns)].astype(object).where(frame[list(columns)].notna(), None)
    return out.to_dict("records")


# ---- drift -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableComparison:
    """The stored rows the run covers, read once, and their differences from the authoritative
    snapshot: drift is measured on it before the write (the order is the contract), and the write
    skips the rows it shows unchanged."""

    stored: pd.DataFrame
    diffs: FieldDiffs
    covers_all: bool  # the run covers every project: stale cleanup may reach vanished projects
    underived: pd.DataFrame  # derived fields the run's rule set would derive otherwise


def _underived(stored: pd.DataFrame, auth: Authoritative) -> pd.DataFrame:
    return underived(
        stored[stored["workspace_id"].isin(auth.snapshots["workspace_id"])], auth.rule_set
    )


def compare_with_table(
    store: SnapshotStore, auth: Authoritative, *, covers_all: bool
) -> TableComparison:
    stored = store.read_frame(None if covers_all else list(auth.projects))
    return TableComparison(
        stored,
        diff_fields(auth.snapshots, auth.known, stored),
        covers_all,
        _underived(stored, auth),
    )


@dataclass(frozen=True)
class DriftReport:
    records: pd.DataFrame  # compare.DRIFT_COLUMNS plus suppression_id (None: not suppressed)
    compared: int  # workspaces that had a stored row
    compared_by_project: Mapping[str, int]

    @property
    def counted(self) -> pd.DataFrame:
        """The records that count: every one that no active suppression matched."""
        return self.records[self.records["suppression_id"].isna()]

    @property
    def suppressed(self) -> int:
        return len(self.records) - len(self.counted)

    @property
    def drifted_workspaces(self) -> int:
        """Workspaces with drift that counts (suppressed drift is kept, not counted)."""
        return int(self.counted["workspace_id"].nunique())

    @property
    def by_writer(self) -> list[list]:
        """[group, writer, cause, count] of every record, most first: who wrote what was wrong."""
        if self.records.empty:
            return []
        counts = self.records.groupby(["group", "stored_by", "cause"]).size()
        rows = [[g, w or "(unknown)", c, int(n)] for (g, w, c), n in counts.items()]
        return sorted(rows, key=lambda r: (-r[3], r[0], r[1]))

    @property
    def by_group(self) -> dict[str, int]:
        """Drift records that count, per field group."""
        return {str(k): int(v) for k, v in self.counted["group"].value_counts().items()}

    @property
    def rate(self) -> float:
        return self.drifted_workspaces / self.compared if self.compared else 0.0


def suppressed_by(records: pd.DataFrame, suppressions: pd.DataFrame) -> pd.Series:
    """The id of the first active suppression matching each record (None where none does): the
    same field, or every field ('*'), of the record's workspace or of its whole project."""
    out = pd.Series([None] * len(records), index=records.index, dtype=object)
    for s in suppressions.itertuples(index=False):
        field = (records["field"] == s.field) | (s.field == "*")
        if s.workspace_id is not None and not is_missing(s.workspace_id):
            scope = records["workspace_id"] == s.workspace_id
        else:
            scope = records["project_id"] == s.project_id
        hit = (field & scope & out.isna()).to_numpy()
        out[hit] = int(s.id)
    return out


def record_drift(
    ledger: DriftLedger,
    run_id: str,
    auth: Authoritative,
    comparison: TableComparison,
    suppressions: pd.DataFrame,
) -> DriftReport:
    """Drift of the stored rows, kept as history in the ledger (one row per drifted field, with
    the writer of the stored value and the suppression that mutes it, if any; one summary row
    per run)."""
    stored = comparison.stored
    compared = stored.loc[stored["workspace_id"].isin(auth.snapshots["workspace_id"]), "project_id"]
    records = drift_records(comparison.diffs)
    records = records.assign(suppression_id=suppressed_by(records, suppressions))
    report = DriftReport(
        records,
        comparison.diffs.compared,
        {str(k): int(v) for k, v in compared.value_counts().items()},
    )
    ledger.record(
        run_id,
        auth.poll_start_ts,
        report.records,
        {
            "projects": len(auth.projects),
            "workspaces": len(auth.snapshots),
            "compared": report.compared,
            "drifted_workspaces": report.drifted_workspaces,
            "drift_by_group": report.by_group,
            "drift_by_writer": report.by_writer,
            "suppressed": report.suppressed,
        },
    )
    return report


# ---- the table's update: write, prune, verify --------------------------------------------------


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


@dataclass(frozen=True)
class TableReport:
    upsert: UpsertResult  # what the write did
    skipped_unchanged: int  # rows the comparison showed equal: not sent at all
    prune: PrunePlan
    removed_projects: tuple[str, ...]  # the project of each removed row
    left_stale: pd.DataFrame  # stale rows still there after the prune
    convergence: Convergence  # the table after the write against the authoritative values
    table_rows: int  # rows in the whole table afterwards
    rows_by_project: Mapping[str, int]  # rows of each covered project afterwards
    write_s: float
    covered_rows: int  # stored rows the run covered, before the write
    rederived: int  # rows rewritten only because their rules' derivation was not stored
    future_dated: pd.DataFrame  # FUTURE_COLUMNS: group timestamps ahead of the DB clock

    @property
    def removed(self) -> int:
        return len(self.removed_projects)

    @property
    def unchanged(self) -> int:
        return self.skipped_unchanged + self.upsert.unchanged


def update_table(
    store: SnapshotStore,
    auth: Authoritative,
    comparison: TableComparison,
    *,
    max_prune_fraction: float,
    min_prune_guard: int,
) -> TableReport:
    """Write the rows that differ (stamped with the poll start: a fresher event write wins),
    remove stale rows under the prune guard, then read the covered rows back and verify."""
    started = time.perf_counter()
    rows, skipped = rows_to_write(
        auth.snapshots, auth.known, comparison.diffs, comparison.underived["workspace_id"]
    )
    upsert = store.upsert_many(
        rows,
        source=SOURCE,
        ts=auth.poll_start_ts,
        skip_unchanged=True,
        rule_set=auth.rule_set,
    )
    write_s = time.perf_counter() - started

    covered = None if comparison.covers_all else list(auth.projects)
    stored = comparison.stored
    prune = plan_prune(
        stored,
        auth.snapshots,
        stale_scope(stored, covered, auth.projects, auth.live_projects),
        max_fraction=max_prune_fraction,
        min_guard=min_prune_guard,
    )
    if not prune.blocked:
        store.remove_many(prune.stale, not_written_after=auth.poll_start_ts, source=SOURCE)

    after = store.read_frame(covered)
    present = set(after["workspace_id"])
    gone = stored[stored["workspace_id"].isin(set(prune.stale) - present)]
    still_stale = left_stale(
        after,
        auth.snapshots,
        stale_scope(after, covered, auth.projects, auth.live_projects),
        auth.poll_start_ts,
    )
    converged = convergence(
        diff_fields(auth.snapshots, auth.known, after),
        auth.poll_start_ts,
        _underived(after, auth),
        removed_meanwhile=upsert.tombstoned,
    )
    future = future_dated(after, store.now_ms())
    return TableReport(
        upsert=upsert,
        skipped_unchanged=skipped,
        prune=prune,
        removed_projects=tuple(gone["project_id"]) if not prune.blocked else (),
        left_stale=still_stale,
        convergence=converged,
        table_rows=len(after) if covered is None else store.count(),
        rows_by_project={str(k): int(v) for k, v in after["project_id"].value_counts().items()},
        write_s=write_s,
        covered_rows=len(stored),
        rederived=len(
            set(comparison.underived["workspace_id"])
            - set(comparison.diffs.diffs["workspace_id"])
            - set(comparison.diffs.missing)
        ),
        future_dated=future,
    )


FUTURE_COLUMNS = ["workspace_id", "project_id", "group", "ts", "ahead_ms", "source"]


def future_dated(rows: pd.DataFrame, now_ms: int) -> pd.DataFrame:
    """Group timestamps ahead of the pipeline DB's clock (``now_ms``): a writer with a skewed
    clock. The merge rule keeps such a group against every reconciliation until the clock
    catches up, so its drift is found on every run and never repaired (docs/RUNBOOK.md)."""
    parts = []
    for group, column in F.TS_COLUMN.items():
        ahead = rows[rows[column].astype("Int64").fillna(0) > now_ms]
        if len(ahead):
            parts.append(
                pd.DataFrame(
                    {
                        "workspace_id": ahead["workspace_id"].to_numpy(),
                        "project_id": ahead["project_id"].to_numpy(),
                        "group": group,
                        "ts": ahead[column].astype("int64").to_numpy(),
                        "ahead_ms": (ahead[column].astype("int64") - now_ms).to_numpy(),
                        # The group's own writer (the row's source may be a later writer's).
                        "source": ahead[F.SOURCE_COLUMN[group]].to_numpy(),
                    }
                )
            )
    if not parts:
        return pd.DataFrame(columns=FUTURE_COLUMNS)
    return pd.concat(parts, ignore_index=True).sort_values(["workspace_id", "group"])


# ---- the whole stage -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StagePolicy:
    """The reconcile stage's guards and windows (settings: docs in settings.py)."""

    max_prune_fraction: float = 0.5
    min_prune_guard: int = 5
    flap_runs: int = 10  # a flap: drift of one field in at least flap_min_runs of the last ...
    flap_min_runs: int = 3
    change_retention_ms: int = 24 * 3_600_000
    recent_runs: int = 10  # the drift history table

    def __post_init__(self) -> None:
        if self.flap_min_runs > self.flap_runs:
            raise ValueError(
                f"RECONCILE_FLAP_MIN_RUNS ({self.flap_min_runs}) must not exceed "
                f"RECONCILE_FLAP_RUNS ({self.flap_runs}): the flapping check could never fire"
            )


@dataclass(frozen=True)
class ReconcileReport:
    """Everything one run's reconcile stage found and did: what the metadata, the checks and the
    command line read."""

    run_id: str
    batch: ExtractBatch
    git: GitStatsReport
    auth: Authoritative
    drift: DriftReport
    table: TableReport
    recent_drift: pd.DataFrame  # ledger.RECENT_DRIFT_COLUMNS: the last runs' drift
    flaps: pd.DataFrame  # ledger.FLAP_COLUMNS: fields that keep drifting
    suppressions: pd.DataFrame  # ledger.SUPPRESSION_COLUMNS: those in force during the run
    policy: StagePolicy
    durations: Mapping[str, float]  # seconds per stage


def reconcile_stage(
    batch: ExtractBatch,
    shards: Sequence[pd.DataFrame],
    runtime: RuntimeRead,
    store: SnapshotStore,
    ledger: DriftLedger,
    run_id: str,
    *,
    covers_all: bool,
    policy: StagePolicy,
) -> ReconcileReport:
    """The last stage, in its order: git stats collected, the authoritative snapshot, drift of
    the stored rows (kept in the ledger, with its writers and suppressions), then the write at
    the poll start, stale removal under the prune guard and verification; every per-row problem
    kept in the ledger; expired tombstones and old changes dropped."""
    clock = _Clock()
    git = collect_shards(shards)
    ledger.record_problems(run_id, "git", git.problems)
    clock.lap("git_collect")
    auth = build_authoritative(batch, runtime, git)
    ledger.record_problems(run_id, "session_runtime", auth.runtime_problems)
    clock.lap("authoritative")
    comparison = compare_with_table(store, auth, covers_all=covers_all)
    suppressions = ledger.suppressions(active_at=batch.poll_start_ts)
    drift = record_drift(ledger, run_id, auth, comparison, suppressions)
    clock.lap("drift")
    table = update_table(
        store,
        auth,
        comparison,
        max_prune_fraction=policy.max_prune_fraction,
        min_prune_guard=policy.min_prune_guard,
    )
    ledger.record_problems(run_id, "snapshot", future_problems(table.future_dated))
    store.purge(changes_before_ms=batch.poll_start_ts - policy.change_retention_ms)
    clock.lap("write")
    return ReconcileReport(
        run_id=run_id,
        batch=batch,
        git=git,
        auth=auth,
        drift=drift,
        table=table,
        recent_drift=ledger.recent_drift(policy.recent_runs),
        flaps=ledger.flapping(policy.flap_runs, policy.flap_min_runs),
        suppressions=suppressions,
        policy=policy,
        durations=clock.laps,
    )


def future_problems(future: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "workspace_id": future["workspace_id"],
            "project_id": future["project_id"],
            "field": "ts_" + future["group"].astype(str),
            "value": future["ts"].astype(str),
            "reason": [
                f"group {g} stamped {a / 1000:.1f} s ahead of the pipeline DB clock by writer "
                f"{src!r}: it wins against every reconciliation until the clock catches up"
                for g, a, src in zip(
                    future["group"], future["ahead_ms"], future["source"], strict=True
                )
            ],
        },
        columns=["workspace_id", "project_id", "field", "value", "reason"],
    )


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


# ---- the run's figures, typed --------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """One run's figures: the run summary observation holds exactly these keys (the maps flat,
    as ``drift_<group>`` and ``<stage>_s``), and the command line reads them back from it."""

    schema_generation: int
    rule_set: str
    projects: int
    workspaces: int
    problem_cells: int
    worktrees: int
    git_coverage: float
    null_git_stats: int
    git_processes: int
    unknown_cells: int
    compared_workspaces: int
    drifted_workspaces: int
    drift_records: int
    drift_rate: float
    drift_suppressed: int
    flapping_fields: int
    rows_written: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_rederived: int
    groups_kept_fresher_event: int
    stale_removed: int
    prune_blocked: bool
    mismatches: int
    events_won: int
    future_dated: int
    held_by_tombstone: int
    table_rows: int
    drift_by_group: Mapping[str, int]
    durations: Mapping[str, float]

    @classmethod
    def of(cls, report: ReconcileReport) -> RunSummary:
        batch, git, auth, drift, table = (
            report.batch,
            report.git,
            report.auth,
            report.drift,
            report.table,
        )
        return cls(
            schema_generation=batch.generation,
            rule_set=batch.rule_set,
            projects=len(batch.projects),
            workspaces=len(auth.snapshots),
            problem_cells=len(batch.extract.problems),
            worktrees=git.worktrees,
            git_coverage=round(git.coverage, 4),
            null_git_stats=len(git.null_reasons),
            git_processes=git.git_processes,
            unknown_cells=len(auth.unknown_cells),
            compared_workspaces=drift.compared,
            drifted_workspaces=drift.drifted_workspaces,
            drift_records=len(drift.counted),
            drift_rate=round(drift.rate, 4),
            drift_suppressed=drift.suppressed,
            flapping_fields=len(report.flaps),
            rows_written=table.upsert.written,
            rows_inserted=table.upsert.inserted,
            rows_updated=table.upsert.updated,
            rows_unchanged=table.unchanged,
            rows_rederived=table.rederived,
            groups_kept_fresher_event=len(table.upsert.stale_groups),
            stale_removed=table.removed,
            prune_blocked=table.prune.blocked,
            mismatches=len(table.convergence.mismatches),
            events_won=len(table.convergence.events_won),
            future_dated=len(table.future_dated),
            held_by_tombstone=len(table.upsert.tombstoned),
            table_rows=table.table_rows,
            drift_by_group={g: drift.by_group.get(g, 0) for g in DRIFT_GROUPS},
            durations=dict(report.durations),
        )

    def flat(self) -> dict[str, Any]:
        """The figures under their observation keys."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _MAPS}
        out.update({f"drift_{g}": n for g, n in self.drift_by_group.items()})
        out.update({f"{stage}_s": s for stage, s in self.durations.items()})
        return out

    @classmethod
    def keys(cls) -> list[str]:
        """The observation's keys of the figures (durations vary by run: not listed)."""
        plain = [f.name for f in fields(cls) if f.name not in _MAPS]
        return [*plain, *(f"drift_{g}" for g in DRIFT_GROUPS)]

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> RunSummary:
        """Read back from the observation's values (``flat``'s keys)."""
        plain = {f.name: values.get(f.name) for f in fields(cls) if f.name not in _MAPS}
        for f in fields(cls):  # a figure shown as text (not to be plotted) reads back typed
            if f.type == "int" and isinstance(plain.get(f.name), str):
                plain[f.name] = int(plain[f.name])
        return cls(
            **plain,
            drift_by_group={g: values.get(f"drift_{g}", 0) for g in DRIFT_GROUPS},
            durations={k[: -len("_s")]: v for k, v in values.items() if k.endswith("_s")},
        )


# Groups whose fields are drift-compared, in field order.
DRIFT_GROUPS = tuple(dict.fromkeys(F.GROUP_OF[f] for f in F.DRIFT_FIELDS))
_MAPS = ("drift_by_group", "durations")
