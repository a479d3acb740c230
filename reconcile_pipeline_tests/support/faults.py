"""Shared by the fault tests (``integration/test_faults_*.py``, ``e2e/test_faults_sigkill.py``):
real faults against real runs, and what every one of them must leave.

After every fault: the table is either untouched or fully updated (every row self-consistent:
derived fields equal the contract's derivation of its raw fields, versions sane), the failure says
why, and the next run converges to expectations computed without product code (plain sqlite3,
plain git, the runtime JSON: ``support.expected.expected_snapshots``).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from reconcile_pipeline.defs.resources import SessionRuntime
from reconcile_pipeline.demo.build import DemoApp
from reconcile_pipeline_tests.support.databases import engine_for
from reconcile_pipeline_tests.support.expected import (
    consistency_problems,
    read_table,
    table_differences,
)


def copy_app(demo: DemoApp, tmp_path: Path) -> Path:
    """A copy of the demo's app DB to change (the worktrees stay shared and are never changed)."""
    path = tmp_path / "app.db"
    shutil.copy(demo.app_db_path, path)
    return path


def live_projects(path: Path) -> list[str]:
    """The ids of the projects not archived in a SQLite app DB."""
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute('SELECT "id" FROM "Project" WHERE "isArchived" = 0')]
    finally:
        conn.close()


def file_runtime(demo: DemoApp) -> SessionRuntime:
    """The demo's session runtime file as the resource reads it."""
    return SessionRuntime(kind="file", location=str(demo.session_runtime_path))


def failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """step key -> error text of its STEP_FAILURE."""
    out = {}
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.event_specific_data.error
            out[event.step_key] = error.to_string() if error else ""
    return out


def error_lines(text: str) -> list[str]:
    """The message lines of an error chain (no stack frames)."""
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith(" ") and "Stack Trace" not in line
    ]


def count_events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType, step: str) -> int:
    """How many events of ``kind`` the run reported for ``step``."""
    return sum(1 for e in result.all_events if e.event_type == kind and e.step_key == step)


def assert_converged(url: str, expected: dict) -> None:
    """Every row self-consistent and equal to the independent expectation."""
    rows = read_table(url)
    assert consistency_problems(rows) == []
    diffs = table_differences(rows, expected)
    assert diffs == [], f"{len(diffs)} differences, e.g. {diffs[:5]}"


def ledger_runs(url: str) -> set[str]:
    """The run ids the drift ledger has a summary of."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT run_id FROM reconcile_run")).scalars())
    finally:
        engine.dispose()
