"""Drift history in the pipeline DB: one row per drifted field per run (``drift_ledger``) and one
summary row per run (``reconcile_run``), so drift over time can be queried and plotted."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from reconcile_pipeline.core.db import create_db_engine

schema = sa.MetaData()


def _id_column() -> sa.Column:
    # BIGINT on PostgreSQL; INTEGER on SQLite, whose autoincrement needs exactly that type.
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


drift_ledger = sa.Table(
    "drift_ledger",
    schema,
    _id_column(),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("poll_start_ts", sa.BigInteger(), nullable=False, index=True),
    sa.Column("workspace_id", sa.String(191), nullable=False, index=True),
    sa.Column("project_id", sa.String(191), nullable=False),
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("field_group", sa.String(32), nullable=False),
    # JSON text: the values keep their type (null, "READY", 3, true) whatever the field.
    sa.Column("stored_value", sa.Text()),
    sa.Column("authoritative_value", sa.Text()),
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
)

# Per-row reasons of one run (bad app DB cells, worktrees without git stats): run metadata shows
# the first rows, this table keeps them all.
reconcile_problem = sa.Table(
    "reconcile_problem",
    schema,
    _id_column(),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("source", sa.String(16), nullable=False),  # app_db, git, session_runtime, snapshot
    sa.Column("workspace_id", sa.Text()),
    sa.Column("project_id", sa.Text()),
    sa.Column("field", sa.String(64), nullable=False),
    sa.Column("value", sa.Text()),
    sa.Column("reason", sa.Text(), nullable=False),
)


RECENT_DRIFT_COLUMNS = ("run_id", "poll_start_ts", "project_id", "field", "group", "count")


class DriftLedger:
    def __init__(self, url: str | Engine) -> None:
        self.engine = url if isinstance(url, Engine) else create_db_engine(url)
        schema.create_all(self.engine)

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

    def runs(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(reconcile_run).order_by(reconcile_run.c.poll_start_ts))
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
