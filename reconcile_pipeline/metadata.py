"""What the UI shows, built from the core's typed reports, in one place: every metadata dict,
check result and description.

One meaning per key, so that every plot means one thing:

- a project's own figures go on that project's partition only, under ``project_*`` keys (plus
  ``dagster/partition_row_count``), with the project's name beside its id;
- the run's figures go once per run, on the ``workspace_snapshot`` observation (the keys of
  ``core.reconcile.RunSummary``) and on the check results (a range run's check has no
  partition), never under a ``project_*`` key;
- what every partition of a run shares (the table's total row count, its schema, the run's
  health, the poll start) goes on the materializations as text, typed values and the table's
  total; settings and constants are text, never plotted numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from reconcile_pipeline.core import fields as F
from reconcile_pipeline.core.extract import ExtractBatch
from reconcile_pipeline.core.generations import BY_NUMBER
from reconcile_pipeline.core.git_shards import GitStatsReport
from reconcile_pipeline.core.git_stats import NO_PATH
from reconcile_pipeline.core.reconcile import DRIFT_GROUPS, ReconcileReport, RunSummary
from reconcile_pipeline.core.rules import RULE_SETS
from reconcile_pipeline.core.store import TABLE_NAME, workspace_snapshot
from reconcile_pipeline.core.values import is_missing
from reconcile_pipeline.defs.reconciliation.keys import (
    AUTHORITATIVE_SNAPSHOTS,
    DRIFT_RATE_CHECK,
    FLAPPING_CHECK,
    GIT_COVERAGE_CHECK,
    GIT_STATS,
    NO_STALE_ENTRIES_CHECK,
    SNAPSHOT_DRIFT,
    TABLE_CONVERGED_CHECK,
    WORKSPACE_SNAPSHOT,
)

ROWS_SHOWN = 50  # rows of a table in one event; the pipeline DB keeps them all
_CELL_CHARS = 200

# Typed tables: (column, type).
PROBLEMS_TABLE = (
    ("workspace_id", "string"),
    ("project", "string"),
    ("field", "string"),
    ("value", "string"),
    ("reason", "string"),
)
NULL_STATS_TABLE = (("workspace_id", "string"), ("project", "string"), ("reason", "string"))
DIFF_TABLE = (
    ("workspace_id", "string"),
    ("project", "string"),
    ("field", "string"),
    ("group", "string"),
    ("stored", "string"),
    ("authoritative", "string"),
)
DRIFT_TABLE = (
    *DIFF_TABLE,
    ("stored_by", "string"),
    ("stored_at", "string"),
    ("cause", "string"),
    ("suppressed", "bool"),
)
BY_WRITER_TABLE = (
    ("group", "string"),
    ("writer", "string"),
    ("cause", "string"),
    ("count", "int"),
)
FLAP_TABLE = (
    ("workspace_id", "string"),
    ("project", "string"),
    ("field", "string"),
    ("runs", "int"),
    ("writers", "string"),
)
SUPPRESSION_TABLE = (
    ("id", "int"),
    ("workspace_id", "string"),
    ("project", "string"),
    ("field", "string"),
    ("reason", "string"),
    ("expires", "string"),
    ("created_by", "string"),
)
TOP_DRIFT_TABLE = (("workspace_id", "string"), ("fields", "string"), ("count", "int"))
RECENT_DRIFT_TABLE = (
    ("run_id", "string"),
    ("poll_start", "string"),
    ("project", "string"),
    ("field", "string"),
    ("group", "string"),
    ("count", "int"),
)
STALE_TABLE = (("workspace_id", "string"), ("project", "string"))
FUTURE_TABLE = (
    ("workspace_id", "string"),
    ("project", "string"),
    ("group", "string"),
    ("stamped", "string"),
    ("ahead_s", "float"),
    ("writer", "string"),
)


def timestamp(epoch_ms: int) -> dg.MetadataValue:
    return dg.MetadataValue.timestamp(epoch_ms / 1000)


def _iso(epoch_ms: int) -> str:
    try:
        return pd.Timestamp(int(epoch_ms), unit="ms", tz="UTC").isoformat(timespec="milliseconds")
    except (OverflowError, ValueError):  # beyond pandas' dates: the number as it is
        return str(epoch_ms)


def _cell(value: Any) -> str | int | float | bool | None:
    if is_missing(value):
        return None
    if isinstance(value, bool | int | float):
        return value
    text = str(value).replace("\n", " ")
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 3] + "..."


def table(
    frame: pd.DataFrame, columns: Sequence[tuple[str, str]], limit: int = ROWS_SHOWN
) -> dg.MetadataValue:
    """The first ``limit`` rows of ``frame`` as a typed table (columns in ``columns`` order)."""
    names = [name for name, _ in columns]
    head = frame.reindex(columns=names).head(limit)
    records = [
        dg.TableRecord({n: _cell(v) for n, v in zip(names, row, strict=True)})
        for row in head.itertuples(index=False)
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns])
    return dg.MetadataValue.table(records=records, schema=schema)


def _json_text(values: Iterable[Any]) -> list[str]:
    return [json.dumps(v, ensure_ascii=False) for v in values]


def _percent(share: float) -> str:
    """A share as a person writes it: 5%, 12.5%, 98.3%."""
    return f"{round(share * 100, 1):g}%"


class Projects:
    """Project names beside their ids: every table and description shows ``name (id)``."""

    def __init__(self, batch: ExtractBatch) -> None:
        frame = batch.workspaces[["project_id", "project_name"]].drop_duplicates("project_id")
        self.names = {
            str(p): str(n)
            for p, n in zip(frame["project_id"], frame["project_name"], strict=True)
            if not is_missing(n)
        }
        self.ids = batch.projects

    def label(self, project_id: object) -> str:
        if is_missing(project_id):
            return "(none)"
        name = self.names.get(str(project_id))
        return f"{name} ({project_id})" if name else str(project_id)

    def named(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(project=[self.label(p) for p in frame["project_id"]])

    def split(self, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """``frame`` by ``project_id``: every project of the run, empty when it has no rows."""
        groups = dict(tuple(frame.groupby("project_id", sort=False))) if len(frame) else {}
        return {p: groups.get(p, frame.iloc[0:0]) for p in self.ids}

    def counts(self, values: Iterable[object]) -> dict[str, int]:
        counted = pd.Series(list(values), dtype=object).value_counts()
        return {p: int(counted.get(p, 0)) for p in self.ids}


# ---- workspace_extract (the extract step) -------------------------------------------------------


def extract_shared(batch: ExtractBatch, app_db: str) -> dict[str, Any]:
    """What every project's extract shares: when the run read, what, with which rules."""
    return {
        "poll_start": timestamp(batch.poll_start_ts),
        "schema": BY_NUMBER[batch.generation].label,
        "fields_not_in_schema": ", ".join(sorted(batch.extract.unknown_fields)) or "none",
        "rule_set": RULE_SETS[batch.rule_set].label,
        "app_db": app_db,
    }


def extract_by_project(batch: ExtractBatch) -> dict[str, dict[str, Any]]:
    projects = Projects(batch)
    workspaces = projects.counts(batch.workspaces["project_id"])
    project_of = dict(
        zip(batch.workspaces["workspace_id"], batch.workspaces["project_id"], strict=True)
    )
    sessions = projects.counts(project_of.get(w) for w in batch.extract.sessions["workspace_id"])
    problems = projects.split(batch.problems_by_project())
    return {
        p: {
            "project": projects.label(p),
            "project_workspaces": workspaces[p],
            "project_sessions": sessions[p],
            "project_problem_cells": len(problems[p]),
            "problems": table(projects.named(problems[p]), PROBLEMS_TABLE),
        }
        for p in batch.projects
    }


# ---- the reconcile step: four assets, their checks and the run's observation --------------------


def per_project(report: ReconcileReport) -> dict[dg.AssetKey, dict[str, dict[str, Any]]]:
    """Each asset's figures per project partition (``add_partitions_metadata``)."""
    return {
        GIT_STATS: _git_by_project(report),
        AUTHORITATIVE_SNAPSHOTS: _authoritative_by_project(report),
        SNAPSHOT_DRIFT: _drift_by_project(report),
        WORKSPACE_SNAPSHOT: _table_by_project(report),
    }


def results(
    report: ReconcileReport,
    *,
    min_git_coverage: float,
    drift_rate_warn: float,
    pipeline_db: str,
) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
    """The step's materializations with their check results, then the run's observation."""
    projects = Projects(report.batch)
    summary = RunSummary.of(report)
    yield dg.MaterializeResult(
        asset_key=GIT_STATS,
        check_results=[_coverage_check(report.git, projects, min_git_coverage)],
    )
    yield dg.MaterializeResult(
        asset_key=AUTHORITATIVE_SNAPSHOTS,
        metadata={
            "rule_set": RULE_SETS[report.auth.rule_set].label,
            "session_runtime": _session_runtime(report),
        },
    )
    yield dg.MaterializeResult(
        asset_key=SNAPSHOT_DRIFT,
        metadata={"ledger_query": _ledger_query(report)},
        check_results=[
            _drift_check(report, projects, drift_rate_warn),
            _flapping_check(report, projects),
        ],
    )
    yield dg.MaterializeResult(
        asset_key=WORKSPACE_SNAPSHOT,
        metadata={
            "health": dg.MetadataValue.md(
                health(summary, min_git_coverage=min_git_coverage, drift_rate_warn=drift_rate_warn)
            ),
            # Dagster's table conventions: the asset's row count is the whole table's.
            "dagster/row_count": dg.MetadataValue.int(report.table.table_rows),
            "dagster/table_name": TABLE_NAME,
            "dagster/column_schema": table_schema(),
            "pipeline_db": pipeline_db,
        },
        check_results=[
            _stale_check(report, projects, report.policy.max_prune_fraction),
            _converged_check(report, projects),
        ],
    )
    yield dg.AssetObservation(
        asset_key=WORKSPACE_SNAPSHOT,
        description="reconcile run summary",
        metadata=run_summary(summary, report, projects),
    )


def log_line(report: ReconcileReport) -> str:
    drift, table = report.drift, report.table
    removed = (
        "stale removal blocked by the prune guard"
        if table.prune.blocked
        else f"{table.removed} stale removed"
    )
    return (
        f"{len(report.auth.snapshots)} workspaces: {drift.drifted_workspaces} drifted "
        f"({len(drift.records)} drift records), {table.upsert.written} rows written, {removed}"
    )


def health(summary: RunSummary, *, min_git_coverage: float, drift_rate_warn: float) -> str:
    """The table's health in one line, what a person reads first on the asset's page."""
    trouble = []
    if summary.mismatches:
        trouble.append(f"{summary.mismatches} mismatched fields")
    if summary.prune_blocked:
        trouble.append("stale removal blocked by the prune guard")
    if summary.drift_rate > drift_rate_warn:
        trouble.append(f"drift above {_percent(drift_rate_warn)}")
    if summary.worktrees and summary.git_coverage < min_git_coverage:
        trouble.append(f"git stats below {_percent(min_git_coverage)}")
    if summary.future_dated:
        trouble.append(f"{summary.future_dated} future-dated group timestamps")
    state = "**healthy**" if not trouble else "**needs attention**: " + "; ".join(trouble)
    return (
        f"{state}  \n{summary.table_rows} rows; drift in {summary.drifted_workspaces} of "
        f"{summary.compared_workspaces} workspaces ({_percent(summary.drift_rate)}); git stats "
        f"for {_percent(summary.git_coverage)} of {summary.worktrees} worktrees; "
        f"{summary.rows_written} rows written, {summary.stale_removed} stale removed; rules "
        f"{summary.rule_set} on schema generation {summary.schema_generation}"
    )


def run_summary(summary: RunSummary, report: ReconcileReport, projects: Projects) -> dict[str, Any]:
    """One run's figures, observed once per run: the time plots' points."""
    figures = summary.flat()
    # A setting of the app DB, not a figure to plot: text.
    figures["schema_generation"] = str(figures["schema_generation"])
    return {
        "poll_start": timestamp(report.batch.poll_start_ts),
        **figures,
        # Every problem of the run, also of rows skipped for want of a workspace to file them
        # under (the first ROWS_SHOWN; reconcile_problem keeps them all).
        "problems": table(projects.named(report.batch.problems_by_project()), PROBLEMS_TABLE),
    }


def _session_runtime(report: ReconcileReport) -> str:
    auth = report.auth
    if not auth.session_known:
        return auth.unknown_fields["is_working"]
    bad = auth.runtime_problems["workspace_id"].nunique()
    return "known" if not bad else f"known; {bad} workspaces with a bad runtime entry"


# ---- git_stats -----------------------------------------------------------------------------------


def _git_by_project(report: ReconcileReport) -> dict[str, dict[str, Any]]:
    projects = Projects(report.batch)
    git = report.git
    with_path = projects.counts(git.stats.loc[git.stats["git_reason"] != NO_PATH, "project_id"])
    failed = projects.split(git.null_reasons)
    out = {}
    for p in report.batch.projects:
        count, without = with_path[p], len(failed[p])
        out[p] = {
            "project": projects.label(p),
            "project_worktrees": count,
            "project_without_git_stats": without,
            "project_git_coverage": round((count - without) / count, 4) if count else 1.0,
            "null_reasons": table(projects.named(failed[p]), NULL_STATS_TABLE),
        }
    return out


def _coverage_check(
    git: GitStatsReport, projects: Projects, threshold: float
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=GIT_STATS,
        check_name=GIT_COVERAGE_CHECK,
        passed=git.coverage >= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{git.with_stats} of {git.worktrees} worktrees have git stats "
            f"({_percent(git.coverage)}); warns below {_percent(threshold)}"
        ),
        metadata={
            "coverage": round(git.coverage, 4),
            "worktrees": git.worktrees,
            "without_git_stats": len(git.null_reasons),
            "git_processes": git.git_processes,
            "threshold": _percent(threshold),
            "null_reasons": table(projects.named(git.null_reasons), NULL_STATS_TABLE),
        },
    )


# ---- authoritative_snapshots ---------------------------------------------------------------------


def _counts_json(values: pd.Series) -> dg.MetadataValue:
    counted = values.astype(object).where(values.notna(), "(none)").value_counts()
    return dg.MetadataValue.json({str(k): int(v) for k, v in counted.items()})


def _authoritative_by_project(report: ReconcileReport) -> dict[str, dict[str, Any]]:
    projects = Projects(report.batch)
    snapshots = projects.split(report.auth.snapshots)
    unknown = projects.counts(report.auth.unknown_cells["project_id"])
    return {
        p: {
            "project": projects.label(p),
            "project_unknown_cells": unknown[p],
            "status_reasons": _counts_json(snapshots[p]["status_reason_code"]),
            "kanban_columns": _counts_json(snapshots[p]["kanban_column"]),
        }
        for p in report.batch.projects
    }


# ---- snapshot_drift --------------------------------------------------------------------------------


def _drift_table(records: pd.DataFrame, projects: Projects) -> dg.MetadataValue:
    shown = projects.named(records).assign(
        stored=_json_text(records["stored"]),
        authoritative=_json_text(records["authoritative"]),
        stored_at=[_iso(t) if t else "" for t in records["stored_at"]],
        suppressed=records["suppression_id"].notna(),
    )
    return table(shown, DRIFT_TABLE)


def _top_drifted(records: pd.DataFrame) -> dg.MetadataValue:
    if records.empty:  # most projects of a run: no group-by (about 5 ms each)
        return table(pd.DataFrame(), TOP_DRIFT_TABLE)
    top = (
        records.groupby("workspace_id")
        .agg(fields=("field", ", ".join), count=("field", "size"))
        .reset_index()
        .sort_values(["count", "workspace_id"], ascending=[False, True], kind="stable")
    )
    return table(top, TOP_DRIFT_TABLE, limit=20)


def _drift_figures(records: pd.DataFrame, compared: int, prefix: str) -> dict[str, Any]:
    drifted = int(records["workspace_id"].nunique())
    by_group = records["group"].value_counts()
    return {
        f"{prefix}compared_workspaces": compared,
        f"{prefix}drifted_workspaces": drifted,
        f"{prefix}drift_records": len(records),
        f"{prefix}drift_rate": round(drifted / compared, 4) if compared else 0.0,
        **{f"{prefix}drift_{g}": int(by_group.get(g, 0)) for g in DRIFT_GROUPS},
    }


def _drift_by_project(report: ReconcileReport) -> dict[str, dict[str, Any]]:
    projects = Projects(report.batch)
    records = projects.split(report.drift.records)
    counted = projects.split(report.drift.counted)  # suppressed drift is shown, not counted
    compared = report.drift.compared_by_project
    return {
        p: {
            "project": projects.label(p),
            **_drift_figures(counted[p], compared.get(p, 0), "project_"),
            "drift": _drift_table(records[p], projects),
            "top_drifted_workspaces": _top_drifted(records[p]),
        }
        for p in report.batch.projects
    }


def _ledger_query(report: ReconcileReport) -> dg.MetadataValue:
    run_id = report.run_id
    return dg.MetadataValue.md(
        "This run's drift, in the pipeline DB:\n\n```sql\n"
        "SELECT workspace_id, project_id, field, stored_value, authoritative_value\n"
        f"FROM drift_ledger WHERE run_id = '{run_id}' ORDER BY workspace_id, field;\n```\n\n"
        "Drift by run, field group and field over the last day:\n\n```sql\n"
        "SELECT run_id, field_group, field, count(*) FROM drift_ledger\n"
        f"WHERE poll_start_ts > {report.batch.poll_start_ts - 86_400_000}\n"
        "GROUP BY run_id, field_group, field ORDER BY run_id DESC, count(*) DESC;\n```"
    )


def _drift_check(
    report: ReconcileReport, projects: Projects, threshold: float
) -> dg.AssetCheckResult:
    drift = report.drift
    recent = report.recent_drift.assign(
        poll_start=[_iso(t) for t in report.recent_drift["poll_start_ts"]]
    )
    return dg.AssetCheckResult(
        asset_key=SNAPSHOT_DRIFT,
        check_name=DRIFT_RATE_CHECK,
        passed=drift.rate <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{drift.drifted_workspaces} of {drift.compared} compared workspaces drifted "
            f"({_percent(drift.rate)}); warns above {_percent(threshold)}"
            + (f"; {drift.suppressed} drifted fields suppressed" if drift.suppressed else "")
        ),
        metadata={
            **_drift_figures(drift.counted, drift.compared, ""),
            "drift_suppressed": drift.suppressed,
            "threshold": _percent(threshold),
            "drift_by_writer": table(
                pd.DataFrame(drift.by_writer, columns=[n for n, _ in BY_WRITER_TABLE]),
                BY_WRITER_TABLE,
            ),
            "suppressions": _suppressions_table(report, projects),
            "drift": _drift_table(drift.records, projects),
            "top_drifted_workspaces": _top_drifted(drift.records),
            "recent_drift": table(projects.named(recent), RECENT_DRIFT_TABLE),
            "ledger_query": _ledger_query(report),
        },
    )


def _suppressions_table(report: ReconcileReport, projects: Projects) -> dg.MetadataValue:
    active = report.suppressions
    shown = active.assign(
        project=[projects.label(p) if not is_missing(p) else "" for p in active["project_id"]],
        expires=[_iso(t) for t in active["expires_at"]],
    )
    return table(shown, SUPPRESSION_TABLE)


def _flapping_check(report: ReconcileReport, projects: Projects) -> dg.AssetCheckResult:
    flaps, policy = report.flaps, report.policy
    window = f"{policy.flap_min_runs} of the last {policy.flap_runs} runs"
    return dg.AssetCheckResult(
        asset_key=SNAPSHOT_DRIFT,
        check_name=FLAPPING_CHECK,
        passed=flaps.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(flaps)} fields drifted in at least {window}"
            + (
                f", e.g. {flaps.iloc[0]['field']} of {flaps.iloc[0]['workspace_id']} "
                f"(writers: {flaps.iloc[0]['writers']})"
                if len(flaps)
                else ""
            )
            + "; warns on any"
        ),
        metadata={
            "flapping_fields": len(flaps),
            "window": window,
            "flaps": table(projects.named(flaps), FLAP_TABLE),
            "ledger_query": dg.MetadataValue.md(
                "Drift of one field over the last runs, with its writers:\n\n```sql\n"
                "SELECT run_id, poll_start_ts, stored_value, authoritative_value, stored_by, cause\n"
                "FROM drift_ledger WHERE workspace_id = '<workspace>' AND field = '<field>'\n"
                "ORDER BY poll_start_ts DESC LIMIT 20;\n```"
            ),
        },
    )


# ---- workspace_snapshot ------------------------------------------------------------------------

_COLUMN_TYPES = {"BOOLEAN": "bool", "BIGINT": "int", "INTEGER": "int"}


def table_schema() -> dg.TableSchema:
    """The table's columns, each with its meaning from the field table (core/fields.py)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                _COLUMN_TYPES.get(str(c.type), "string"),
                description=F.MEANINGS.get(c.name),
            )
            for c in workspace_snapshot.columns
        ]
    )


def _table_by_project(report: ReconcileReport) -> dict[str, dict[str, Any]]:
    projects = Projects(report.batch)
    table_report = report.table
    project_of = dict(
        zip(report.auth.snapshots["workspace_id"], report.auth.snapshots["project_id"], strict=True)
    )
    written = projects.counts(project_of.get(w) for w in table_report.upsert.written_ids)
    inserted = projects.counts(project_of.get(w) for w in table_report.upsert.inserted_ids)
    removed = projects.counts(table_report.removed_projects)
    workspaces = projects.counts(report.auth.snapshots["project_id"])
    return {
        p: {
            "project": projects.label(p),
            "dagster/partition_row_count": table_report.rows_by_project.get(p, 0),
            "project_rows_written": written[p],
            "project_rows_inserted": inserted[p],
            "project_rows_updated": written[p] - inserted[p],
            "project_rows_unchanged": workspaces[p] - written[p],
            "project_stale_removed": removed[p],
        }
        for p in report.batch.projects
    }


def _stale_check(
    report: ReconcileReport, projects: Projects, max_prune_fraction: float
) -> dg.AssetCheckResult:
    table_report = report.table
    prune = table_report.prune
    stored = table_report.covered_rows
    if prune.blocked:
        description = (
            f"prune guard: {len(prune.stale)} of {stored} snapshots look stale, more than the "
            f"limit of {prune.limit} (RECONCILE_MAX_PRUNE_FRACTION={max_prune_fraction}); "
            "nothing was removed. Check the app DB extract; if the removal is intended, raise "
            "the limit for one run."
        )
    else:
        description = (
            f"{table_report.removed} stale snapshots removed, {len(table_report.left_stale)} "
            f"left (at most {prune.limit} removed per run)"
        )
    return dg.AssetCheckResult(
        asset_key=WORKSPACE_SNAPSHOT,
        check_name=NO_STALE_ENTRIES_CHECK,
        passed=table_report.left_stale.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "stale_found": len(prune.stale),
            "removed": table_report.removed,
            "left": len(table_report.left_stale),
            "prune_limit": (
                f"{prune.limit} rows: {_percent(max_prune_fraction)} of {stored} covered, "
                "or the guard's minimum"
            ),
            "prune_blocked": prune.blocked,
            "left_ids": table(projects.named(table_report.left_stale), STALE_TABLE),
        },
    )


def _converged_check(report: ReconcileReport, projects: Projects) -> dg.AssetCheckResult:
    converged = report.table.convergence
    mismatches, won = converged.mismatches, converged.events_won
    future = report.table.future_dated
    shown = {
        name: projects.named(frame).assign(
            stored=_json_text(frame["stored"]), authoritative=_json_text(frame["authoritative"])
        )
        for name, frame in (("mismatch_sample", mismatches), ("events_won_sample", won))
    }
    future_shown = projects.named(future).assign(
        stamped=[_iso(t) for t in future["ts"]],
        ahead_s=[round(a / 1000, 1) for a in future["ahead_ms"]],
        writer=future["source"],
    )
    held = report.table.upsert.tombstoned
    description = (
        f"{len(mismatches)} mismatched fields; {len(won)} fields kept a fresher event-driven write"
    )
    if held:
        description += (
            f"; {len(held)} workspaces removed after the poll start stayed removed (tombstones)"
        )
    if len(future):
        description += (
            f"; {len(future)} group timestamps are ahead of the pipeline DB clock (a writer's "
            "clock is skewed: their drift cannot be repaired until it catches up)"
        )
    return dg.AssetCheckResult(
        asset_key=WORKSPACE_SNAPSHOT,
        check_name=TABLE_CONVERGED_CHECK,
        passed=mismatches.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "mismatches": len(mismatches),
            "events_won": len(won),
            "future_dated": len(future),
            "held_by_tombstone": len(held),
            **{name: table(frame, DIFF_TABLE) for name, frame in shown.items()},
            "future_dated_groups": table(future_shown, FUTURE_TABLE),
        },
    )
