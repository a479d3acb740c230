"""What the UI shows, built from the core's typed reports, in one place.

Where each figure goes decides whether it plots:
- a project's own numbers and rows go on that project's partition of ``snapshot_drift`` and
  ``workspace_snapshot`` (``*_by_project``), so partition plots compare projects and a project's
  history is its own (the intermediate assets' per-project counts would only repeat them, at a
  cost per project and run);
- the run's figures go on what happens once per run: the check results (a range run's check has
  no partition) and one observation of ``workspace_snapshot`` per run (``run_summary``), so time
  plots get one point per run however many projects there are;
- tables are ``MetadataValue.table`` with a schema (rendered inline), timestamps
  ``MetadataValue.timestamp``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from reconcile_pipeline.core import fields as F
from reconcile_pipeline.core.extract import ExtractBatch
from reconcile_pipeline.core.generations import BY_NUMBER
from reconcile_pipeline.core.git_shards import GitStatsReport
from reconcile_pipeline.core.reconcile import Authoritative, DriftReport, TableReport
from reconcile_pipeline.core.rules import RULE_SETS
from reconcile_pipeline.core.store import COLUMNS, TABLE_NAME, workspace_snapshot

ROWS_SHOWN = 50  # rows of a table in one event; the pipeline DB keeps them all
_CELL_CHARS = 200

PROBLEM_COLUMNS = (
    ("workspace_id", "string"),
    ("field", "string"),
    ("value", "string"),
    ("reason", "string"),
)
RUN_PROBLEM_COLUMNS = (("project_id", "string"), *PROBLEM_COLUMNS)
NULL_REASON_COLUMNS = (("workspace_id", "string"), ("project_id", "string"), ("reason", "string"))
DRIFT_COLUMNS = (
    ("workspace_id", "string"),
    ("field", "string"),
    ("group", "string"),
    ("stored", "string"),
    ("authoritative", "string"),
)
TOP_DRIFT_COLUMNS = (("workspace_id", "string"), ("fields", "string"), ("count", "int"))
DIFF_COLUMNS = DRIFT_COLUMNS
STALE_COLUMNS = (("workspace_id", "string"), ("project_id", "string"))


def timestamp(epoch_ms: int) -> dg.MetadataValue:
    return dg.MetadataValue.timestamp(epoch_ms / 1000)


def _cell(value: Any) -> str | int | float | bool | None:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
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
    return [json.dumps(v) for v in values]


def _split(frame: pd.DataFrame, projects: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``frame`` by ``project_id``: every project of the run, empty when it has no rows."""
    groups = dict(tuple(frame.groupby("project_id", sort=False))) if len(frame) else {}
    return {p: groups.get(p, frame.iloc[0:0]) for p in projects}


# ---- workspace_extract -------------------------------------------------------------------------


def extract_run(batch: ExtractBatch, app_db: str) -> dict[str, Any]:
    """The run's facts (every project's materialization carries them): the poll start, the
    schema, the run's counts."""
    generation = BY_NUMBER[batch.generation]
    return {
        "poll_start": timestamp(batch.poll_start_ts),
        "poll_start_ts": dg.MetadataValue.int(batch.poll_start_ts),  # exact, for ledger queries
        "schema_generation": dg.MetadataValue.int(generation.number),
        "schema": generation.label,
        "fields_not_in_schema": ", ".join(sorted(batch.extract.unknown_fields)) or "none",
        "rule_set": RULE_SETS[batch.rule_set].label,
        "app_db": app_db,
        "workspaces": len(batch.workspaces),
        "sessions": len(batch.extract.sessions),
        "problem_cells": len(batch.extract.problems),
    }


# ---- git_stats ---------------------------------------------------------------------------------


def git_run(report: GitStatsReport, threshold: float) -> dict[str, Any]:
    return {
        "coverage": round(report.coverage, 4),
        "worktrees": report.worktrees,
        "null_stats": len(report.null_reasons),
        "git_processes": report.git_processes,
        "shards": report.shards,
        "threshold": threshold,
        "null_reasons": table(report.null_reasons, NULL_REASON_COLUMNS),
    }


# ---- authoritative_snapshots -------------------------------------------------------------------


def authoritative_run(auth: Authoritative) -> dict[str, Any]:
    session = "known" if auth.session_known else auth.unknown_fields["is_working"]
    kanban = auth.snapshots["kanban_column"].fillna("(none)").value_counts()
    reasons = auth.snapshots["status_reason_code"].fillna("(none)").value_counts()
    return {
        "rule_set": RULE_SETS[auth.rule_set].label,
        "session_runtime": session,
        "workspaces": len(auth.snapshots),
        "unknown_cells": len(auth.unknown_cells),
        "kanban_columns": dg.MetadataValue.json({str(k): int(v) for k, v in kanban.items()}),
        "status_reasons": dg.MetadataValue.json({str(k): int(v) for k, v in reasons.items()}),
    }


# ---- snapshot_drift ----------------------------------------------------------------------------


def _drift_table(records: pd.DataFrame) -> dg.MetadataValue:
    shown = records.assign(
        stored=_json_text(records["snapshot_value"]),
        authoritative=_json_text(records["authoritative_value"]),
    )
    return table(shown, DRIFT_COLUMNS)


def _top_drifted(records: pd.DataFrame) -> dg.MetadataValue:
    top = (
        records.groupby("workspace_id")
        .agg(fields=("field", ", ".join), count=("field", "size"))
        .reset_index()
        .sort_values(["count", "workspace_id"], ascending=[False, True], kind="stable")
    )
    return table(top, TOP_DRIFT_COLUMNS, limit=20)


def _drift_figures(records: pd.DataFrame, compared: int) -> dict[str, Any]:
    drifted = int(records["workspace_id"].nunique())
    by_group = records["group"].value_counts()
    return {
        "compared_workspaces": compared,
        "drifted_workspaces": drifted,
        "drift_records": len(records),
        "drift_rate": round(drifted / compared, 4) if compared else 0.0,
        **{f"drift_{g}": int(by_group.get(g, 0)) for g in F.GROUPS if g != "reconciliation"},
    }


def drift_by_project(
    report: DriftReport, auth: Authoritative, stored: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    records = _split(report.records, auth.projects)
    compared = stored[stored["workspace_id"].isin(auth.snapshots["workspace_id"])]
    compared_by_project = compared["project_id"].value_counts()
    return {
        p: {
            **_drift_figures(records[p], int(compared_by_project.get(p, 0))),
            "drift": _drift_table(records[p]),
            "top_drifted_workspaces": _top_drifted(records[p]),
        }
        for p in auth.projects
    }


def drift_run(report: DriftReport, threshold: float) -> dict[str, Any]:
    return {
        **_drift_figures(report.records, report.compared),
        "threshold": threshold,
        "drift": _drift_table(report.records),
        "top_drifted_workspaces": _top_drifted(report.records),
    }


# ---- workspace_snapshot ------------------------------------------------------------------------

_COLUMN_TYPES = {"BOOLEAN": "bool", "BIGINT": "int", "INTEGER": "int"}


def table_schema() -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, _COLUMN_TYPES.get(str(c.type), "string"))
            for c in workspace_snapshot.columns
            if c.name in COLUMNS
        ]
    )


def table_run(pipeline_db: str) -> dict[str, Any]:
    return {
        "dagster/table_name": TABLE_NAME,
        "dagster/column_schema": table_schema(),
        "pipeline_db": pipeline_db,
    }


def table_by_project(report: TableReport, auth: Authoritative) -> dict[str, dict[str, Any]]:
    project_of = dict(
        zip(auth.snapshots["workspace_id"], auth.snapshots["project_id"], strict=True)
    )
    written = pd.Series([project_of.get(w) for w in report.upsert.written_ids]).value_counts()
    inserted = pd.Series([project_of.get(w) for w in report.upsert.inserted_ids]).value_counts()
    removed = pd.Series(report.removed_projects, dtype=object).value_counts()
    workspaces = auth.snapshots["project_id"].value_counts()
    out = {}
    for p in auth.projects:
        n_written = int(written.get(p, 0))
        out[p] = {
            "rows_written": n_written,
            "rows_inserted": int(inserted.get(p, 0)),
            "rows_updated": n_written - int(inserted.get(p, 0)),
            "rows_unchanged": int(workspaces.get(p, 0)) - n_written,
            "stale_removed": int(removed.get(p, 0)),
            "dagster/row_count": report.rows_by_project.get(p, 0),
        }
    return out


def stale_check(report: TableReport) -> dict[str, Any]:
    return {
        "stale_found": len(report.prune.stale),
        "removed": report.removed,
        "left": len(report.left_stale),
        "prune_limit": report.prune.limit,
        "prune_blocked": report.prune.blocked,
        "left_ids": table(report.left_stale, STALE_COLUMNS),
    }


def converged_check(report: TableReport) -> dict[str, Any]:
    mismatches, won = report.convergence.mismatches, report.convergence.events_won
    shown = {
        name: frame.assign(
            stored=_json_text(frame["stored"]), authoritative=_json_text(frame["authoritative"])
        )
        for name, frame in (("mismatch_sample", mismatches), ("events_won_sample", won))
    }
    return {
        "mismatches": len(mismatches),
        "events_won": len(won),
        **{name: table(frame, DIFF_COLUMNS) for name, frame in shown.items()},
    }


def run_summary(
    batch: ExtractBatch,
    git: GitStatsReport,
    auth: Authoritative,
    drift: DriftReport,
    report: TableReport,
    durations: Mapping[str, float],
) -> dict[str, Any]:
    """One run's figures, observed once per run: the time plots' points."""
    return {
        "poll_start": timestamp(batch.poll_start_ts),
        "poll_start_ts": dg.MetadataValue.int(batch.poll_start_ts),  # exact, for queries
        "schema_generation": dg.MetadataValue.int(batch.generation),
        "rule_set": batch.rule_set,
        "projects": len(batch.projects),
        "workspaces": len(auth.snapshots),
        "problem_cells": len(batch.extract.problems),
        "worktrees": git.worktrees,
        "git_coverage": round(git.coverage, 4),
        "null_git_stats": len(git.null_reasons),
        "git_processes": git.git_processes,
        "unknown_cells": len(auth.unknown_cells),
        "compared_workspaces": drift.compared,
        "drifted_workspaces": drift.drifted_workspaces,
        "drift_records": len(drift.records),
        "drift_rate": round(drift.rate, 4),
        "rows_written": report.upsert.written,
        "rows_inserted": report.upsert.inserted,
        "rows_updated": report.upsert.updated,
        "rows_unchanged": report.unchanged,
        "rows_rederived": report.rederived,
        "groups_kept_fresher_event": len(report.upsert.stale_groups),
        "stale_removed": report.removed,
        "prune_blocked": report.prune.blocked,
        "mismatches": len(report.convergence.mismatches),
        "events_won": len(report.convergence.events_won),
        "table_rows": report.table_rows,
        **{f"{stage}_s": round(seconds, 3) for stage, seconds in durations.items()},
        # Every problem of the run, also of rows skipped for want of a workspace to file them
        # under (the first ROWS_SHOWN; reconcile_problem keeps them all).
        "problems": table(batch.problems_by_project(), RUN_PROBLEM_COLUMNS),
    }
