"""Drift history in the pipeline DB: one row per drifted field per run (``drift_ledger``, with the
writer of the stored value), one summary row per run (``reconcile_run``), every per-row problem
(``reconcile_problem``) and the operators' drift suppressions (``drift_suppression``), so drift
over time can be queried, plotted and attributed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from reconcile_pipeline.core.db import (
    add_missing_columns,
    create_db_engine,
    db_now_ms,
    id_column,
)
from reconcile_pipeline.core.values import is_missing

schema = sa.MetaData()


drift_ledger = sa.Table(
    "drift_ledger",
    schema,
    id_column(),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("poll_start_ts", sa.BigInteger(), nullable=False, index=True),
    sa.Column("workspace_id", sa.String(191), nullable=False, index=True),
    sa.Column("project_id", sa.String(191), nullable=False),
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("field_group", sa.String(32), nullable=False),
    # JSON text: the values keep their type (null, "READY", 3, true) whatever the field.
    sa.Column("stored_value", sa.Text()),
    sa.Column("authoritative_value", sa.Text()),
    # Who wrote the stored value and when (its group's writer and timestamp), and the likely
    # cause: missed_event, wrong_write or unknown (compare.CAUSES).
    sa.Column("stored_by", sa.Text(), nullable=False, server_default=""),
    sa.Column("stored_at", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("cause", sa.String(16), nullable=False, server_default="unknown"),
    # An active suppression matched it: kept here, left out of the drift rate.
    sa.Column("suppression_id", sa.BigInteger()),
)
reconcile_run = sa.Table(
    "reconcile_run",
    schema,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("poll_start_ts", sa.BigInteger(), nullable=False, index=True),
    sa.Column("projects", sa.Integer(), nullable=False),
    sa.Column("workspaces", sa.Integer(), nullable=False),
    sa.Column("compared", sa.Integer(), nullable=False),
    sa.Column("drifted_workspaces", sa.Integer(), nullable=False),
    sa.Column("drift_records", sa.Integer(), nullable=False),
    sa.Column("drift_by_group", sa.Text(), nullable=False),  # JSON {group: count}
    # JSON [[group, writer, cause, count], ...]
    sa.Column("drift_by_writer", sa.Text(), nullable=False, server_default="[]"),
    sa.Column("suppressed", sa.Integer(), nullable=False, server_default="0"),
)

# Per-row reasons of one run (bad app DB cells, worktrees without git stats): run metadata shows
# the first rows, this table keeps them all.
reconcile_problem = sa.Table(
    "reconcile_problem",
    schema,
    id_column(),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("source", sa.String(16), nullable=False),  # app_db, git, session_runtime, snapshot
    sa.Column("workspace_id", sa.Text()),
    sa.Column("project_id", sa.Text()),
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("value", sa.Text()),
    sa.Column("reason", sa.Text(), nullable=False),
)


# An operator's "known drift, leave it out of the drift rate until ...": a workspace or a whole
# project, one field (or every field: '*').
drift_suppression = sa.Table(
    "drift_suppression",
    schema,
    id_column(),
    sa.Column("workspace_id", sa.String(191)),
    sa.Column("project_id", sa.String(191)),
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("created_at", sa.BigInteger(), nullable=False),
    sa.Column("expires_at", sa.BigInteger(), nullable=False, index=True),
    sa.Column("created_by", sa.Text(), nullable=False, server_default=""),
)

RECENT_DRIFT_COLUMNS = ("run_id", "poll_start_ts", "project_id", "field", "group", "count")
FLAP_COLUMNS = ("workspace_id", "project_id", "field", "runs", "writers")
SUPPRESSION_COLUMNS = (
    "id",
    "workspace_id",
    "project_id",
    "field",
    "reason",
    "created_at",
    "expires_at",
    "created_by",
)


class DriftLedger:
    def __init__(self, url: str | Engine) -> None:
        self.engine = url if isinstance(url, Engine) else create_db_engine(url)
        with self.engine.begin() as conn:
            schema.create_all(conn)
            for table in (drift_ledger, reconcile_run):  # in place: every row kept
                add_missing_columns(conn, table)

    def record(
        self, run_id: str, poll_start_ts: int, drift: pd.DataFrame, summary: Mapping[str, Any]
    ) -> None:
        """Replace this run's rows (a retried step writes them once) in one transaction."""
        rows = [
            {
                "run_id": run_id,
                "poll_start_ts": poll_start_ts,
                "workspace_id": r["workspace_id"],
                "project_id": r["project_id"],
                "field": r["field"],
                "field_group": r["group"],
                "stored_value": json.dumps(r["stored"]),
                "authoritative_value": json.dumps(r["authoritative"]),
                "stored_by": r.get("stored_by") or "",
                "stored_at": int(r.get("stored_at") or 0),
                "cause": r.get("cause") or "unknown",
                "suppression_id": (
                    None if is_missing(r.get("suppression_id")) else int(r["suppression_id"])
                ),
            }
            for r in drift.to_dict("records")
        ]
        with self.engine.begin() as conn:
            conn.execute(drift_ledger.delete().where(drift_ledger.c.run_id == run_id))
            conn.execute(reconcile_run.delete().where(reconcile_run.c.run_id == run_id))
            if rows:
                conn.execute(drift_ledger.insert(), rows)
            conn.execute(
                reconcile_run.insert(),
                {
                    "run_id": run_id,
                    "poll_start_ts": poll_start_ts,
                    "projects": summary["projects"],
                    "workspaces": summary["workspaces"],
                    "compared": summary["compared"],
                    "drifted_workspaces": summary["drifted_workspaces"],
                    "drift_records": len(rows),
                    "drift_by_group": json.dumps(summary["drift_by_group"], sort_keys=True),
                    "drift_by_writer": json.dumps(summary.get("drift_by_writer", [])),
                    "suppressed": summary.get("suppressed", 0),
                },
            )

    def record_problems(self, run_id: str, source: str, problems: pd.DataFrame) -> None:
        """Replace this run's problem rows of ``source`` (columns workspace_id, project_id,
        field, value, reason; missing columns are null)."""
        frame = problems.reindex(columns=["workspace_id", "project_id", "field", "value", "reason"])
        frame = frame.astype(object).where(frame.notna(), None)
        rows = [{"run_id": run_id, "source": source, **r} for r in frame.to_dict("records")]
        with self.engine.begin() as conn:
            conn.execute(
                reconcile_problem.delete().where(
                    reconcile_problem.c.run_id == run_id, reconcile_problem.c.source == source
                )
            )
            if rows:
                conn.execute(reconcile_problem.insert(), rows)

    def problems(self, run_id: str) -> pd.DataFrame:
        with self.engine.connect() as conn:
            result = conn.execute(
                sa.select(reconcile_problem)
                .where(reconcile_problem.c.run_id == run_id)
                .order_by(reconcile_problem.c.id)
            )
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    def history(
        self, *, workspace_id: str | None = None, run_id: str | None = None
    ) -> pd.DataFrame:
        query = sa.select(drift_ledger).order_by(drift_ledger.c.id)
        if workspace_id is not None:
            query = query.where(drift_ledger.c.workspace_id == workspace_id)
        if run_id is not None:
            query = query.where(drift_ledger.c.run_id == run_id)
        with self.engine.connect() as conn:
            result = conn.execute(query)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        for column in ("stored_value", "authoritative_value"):
            frame[column] = [json.loads(v) for v in frame[column]]
        return frame

    def recent_drift(self, runs: int) -> pd.DataFrame:
        """Drift of the last ``runs`` runs (by poll start), counted per run, project and field:
        RECENT_DRIFT_COLUMNS, newest run first. A run without drift has no row."""
        last = (
            sa.select(reconcile_run.c.run_id)
            .order_by(reconcile_run.c.poll_start_ts.desc())
            .limit(runs)
            .subquery()
        )
        count = sa.func.count().label("count")
        query = (
            sa.select(
                drift_ledger.c.run_id,
                sa.func.max(drift_ledger.c.poll_start_ts).label("poll_start_ts"),
                drift_ledger.c.project_id,
                drift_ledger.c.field,
                drift_ledger.c.field_group.label("group"),
                count,
            )
            .where(drift_ledger.c.run_id.in_(sa.select(last.c.run_id)))
            .group_by(
                drift_ledger.c.run_id,
                drift_ledger.c.project_id,
                drift_ledger.c.field,
                drift_ledger.c.field_group,
            )
            .order_by(sa.desc("poll_start_ts"), drift_ledger.c.project_id, count.desc())
        )
        with self.engine.connect() as conn:
            result = conn.execute(query)
            return pd.DataFrame(result.fetchall(), columns=list(RECENT_DRIFT_COLUMNS))

    def flapping(self, runs: int, min_runs: int) -> pd.DataFrame:
        """(workspace, field) pairs that drifted in at least ``min_runs`` of the last ``runs``
        runs, with the writers whose values were found wrong: FLAP_COLUMNS, most runs first.
        Suppressed drift does not count: an operator who muted a field has seen it."""
        last = (
            sa.select(reconcile_run.c.run_id)
            .order_by(reconcile_run.c.poll_start_ts.desc())
            .limit(runs)
            .subquery()
        )
        query = sa.select(
            drift_ledger.c.workspace_id,
            drift_ledger.c.project_id,
            drift_ledger.c.field,
            drift_ledger.c.run_id,
            drift_ledger.c.stored_by,
        ).where(
            drift_ledger.c.run_id.in_(sa.select(last.c.run_id)),
            drift_ledger.c.suppression_id.is_(None),
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).fetchall()
        frame = pd.DataFrame(rows, columns=["workspace_id", "project_id", "field", "run_id", "by"])
        if frame.empty:
            return pd.DataFrame(columns=list(FLAP_COLUMNS))
        grouped = frame.groupby(["workspace_id", "field"], sort=True).agg(
            project_id=("project_id", "last"),
            runs=("run_id", "nunique"),
            writers=("by", lambda s: ", ".join(sorted({w or "(unknown)" for w in s}))),
        )
        out = grouped[grouped["runs"] >= min_runs].reset_index()
        out = out.sort_values(["runs", "workspace_id"], ascending=[False, True], kind="stable")
        return out[list(FLAP_COLUMNS)].reset_index(drop=True)

    # -- suppressions ------------------------------------------------------------------------

    def suppress(
        self,
        *,
        field: str,
        reason: str,
        expires_at: int,
        workspace_id: str | None = None,
        project_id: str | None = None,
        created_by: str = "",
    ) -> int:
        """Mute a known drift of ``field`` ('*': every field) of one workspace or a whole
        project until ``expires_at`` (epoch ms). Returns the suppression's id."""
        if (workspace_id is None) == (project_id is None):
            raise ValueError("a suppression names one workspace or one project")
        if not reason.strip():
            raise ValueError("a suppression needs a reason")
        with self.engine.begin() as conn:
            now = db_now_ms(conn)
            if expires_at <= now:
                raise ValueError("a suppression must expire in the future")
            result = conn.execute(
                drift_suppression.insert().returning(drift_suppression.c.id),
                {
                    "workspace_id": workspace_id,
                    "project_id": project_id,
                    "field": field,
                    "reason": reason.strip(),
                    "created_at": now,
                    "expires_at": expires_at,
                    "created_by": created_by,
                },
            )
            return int(result.scalar_one())

    def unsuppress(self, suppression_id: int) -> bool:
        with self.engine.begin() as conn:
            deleted = conn.execute(
                drift_suppression.delete().where(drift_suppression.c.id == suppression_id)
            )
            return deleted.rowcount == 1

    def suppressions(self, *, active_at: int | None = None) -> pd.DataFrame:
        """Every suppression, or only those in force at ``active_at`` (epoch ms): an expired
        one stops applying by itself."""
        query = sa.select(drift_suppression).order_by(drift_suppression.c.id)
        if active_at is not None:
            query = query.where(drift_suppression.c.expires_at > active_at)
        with self.engine.connect() as conn:
            rows = conn.execute(query).fetchall()
        return pd.DataFrame(rows, columns=list(SUPPRESSION_COLUMNS))

    def runs(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(reconcile_run).order_by(reconcile_run.c.poll_start_ts))
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
