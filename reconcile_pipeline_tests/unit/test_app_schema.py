"""The demo's and the tests' app tables are the app's own: each generation's DDL, built in
SQLite, has exactly the columns (types, NOT NULL, defaults, keys) and foreign keys that the app's
Prisma migrations leave at that generation. The reference files in ``data/`` were recorded from
the app's migrations with ``scripts/app_schema_fingerprint.py``."""

from __future__ import annotations

import json
import sqlite3

import pytest
import sqlalchemy as sa

from reconcile_pipeline.demo.app_schema import (
    SIDE_TABLES,
    TABLES,
    app_rows,
    app_schema_ddl,
    create_app_schema,
    side_defaults,
)
from reconcile_pipeline_tests.support.databases import make_engine
from reconcile_pipeline_tests.support.paths import DATA


def recorded(generation: int) -> dict:
    return json.loads((DATA / f"app_schema_gen{generation}.json").read_text())["tables"]


@pytest.mark.parametrize("generation", (1, 2, 3))
def test_ddl_matches_the_apps_migrations(generation):
    conn = sqlite3.connect(":memory:")
    for statement in app_schema_ddl(generation, "sqlite"):
        conn.execute(statement)
    want = recorded(generation)
    assert set(TABLES[generation]) == set(want)
    for table, spec in want.items():
        got = [
            {"name": r[1], "type": r[2], "notnull": bool(r[3]), "default": r[4], "pk": bool(r[5])}
            for r in conn.execute(f'PRAGMA table_info("{table}")')
        ]
        columns = [
            {k: c[k] for k in ("name", "type", "notnull", "default", "pk")} for c in spec["columns"]
        ]
        assert got == columns, table
        fks = sorted(
            (r[3], r[2], r[6]) for r in conn.execute(f'PRAGMA foreign_key_list("{table}")')
        )
        # The one foreign key left out: PeriodicTask is not a table the pipeline reads.
        want_fks = sorted(
            (f["column"], f["references_table"], f["on_delete"])
            for f in spec["foreign_keys"]
            if f["references_table"] != "PeriodicTask"
        )
        assert fks == want_fks, table


def test_ddl_per_dialect_and_loose_variant():
    sqlite = "\n".join(app_schema_ddl(3, "sqlite"))
    pg = "\n".join(app_schema_ddl(3, "postgresql"))
    assert '"createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP' in sqlite
    assert '"createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP' in pg
    assert '"hasMergeConflict" BOOLEAN NOT NULL DEFAULT false' in pg
    loose = "\n".join(app_schema_ddl(3, "sqlite", constraints=False))
    assert "NOT NULL" not in loose and "FOREIGN KEY" not in loose and "PRIMARY KEY" not in loose
    with pytest.raises(ValueError, match="unsupported dialect"):
        app_schema_ddl(3, "mysql")
    with pytest.raises(ValueError, match="unknown schema generation"):
        app_schema_ddl(4, "sqlite")


@pytest.mark.parametrize("generation", (1, 2, 3))
def test_ddl_runs_on_both_dialects_and_is_idempotent(db_url, generation):
    engine = make_engine(db_url)
    create_app_schema(engine, generation)
    create_app_schema(engine, generation)
    assert set(TABLES[generation]) <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


LATER_FIELDS = {
    "mode": "AUTO_ITERATION",
    "autoIterationStatus": "RUNNING",
    "ratchetDispatchOutcome": "DIED",
    "ratchetDispatchRetryCount": 2,
    "ratchetDispatchStalled": True,
}


@pytest.mark.parametrize("generation", (1, 2, 3))
def test_app_rows_put_the_later_fields_where_the_generation_keeps_them(generation):
    workspace = {"id": "w", "projectId": "p", "name": "n", "updatedAt": 1, **LATER_FIELDS}
    session = {"id": "s", "workspaceId": "w", "name": None, "model": "opus", "updatedAt": 1}
    out = app_rows(generation, workspaces=[workspace], agent_sessions=[session])
    row = out["Workspace"][0]
    if generation == 1:  # none of them
        assert not set(LATER_FIELDS) & set(row)
        assert out["ClaudeSession"][0]["model"] == "opus"
    elif generation == 2:  # flat, but no stalled flag
        assert {k: row[k] for k in LATER_FIELDS if k in row} == {
            k: v for k, v in LATER_FIELDS.items() if k != "ratchetDispatchStalled"
        }
        assert out["AgentSession"][0] == {**session, "workflow": "implement", "provider": "CLAUDE"}
    else:  # side tables
        assert not set(LATER_FIELDS) & set(row)
        assert out["WorkspaceAutoIteration"] == [
            {"workspaceId": "w", "mode": "AUTO_ITERATION", "status": "RUNNING"}
        ]
        assert out["WorkspaceRatchet"] == [
            {
                "workspaceId": "w",
                "dispatchOutcome": "DIED",
                "dispatchRetryCount": 2,
                "dispatchStalled": True,
            }
        ]
        missing = app_rows(
            3, workspaces=[workspace], missing_side_rows=[("w", "WorkspaceAutoIteration")]
        )
        assert missing["WorkspaceAutoIteration"] == []
        assert side_defaults("WorkspaceAutoIteration") == {
            "mode": "STANDARD",
            "autoIterationStatus": None,
        }
        assert side_defaults("WorkspaceRatchet") == {
            "ratchetEnabled": True,
            "ratchetDispatchOutcome": None,
            "ratchetDispatchRetryCount": 0,
            "ratchetDispatchStalled": False,
        }
        assert set(SIDE_TABLES) == set(TABLES[3]) - {
            "Project",
            "Workspace",
            "AgentSession",
            "TerminalSession",
        }
