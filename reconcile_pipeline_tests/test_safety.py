"""Safety: SQL is parameterised, git never runs through a shell nor on a path outside the
configured roots, and database passwords never reach the Dagster event log.

- Static: an AST scan of the package for SQL built from f-strings / ``.format`` / ``%`` / ``+``
  (anything that looks like SQL, and anything handed to ``text()``/``execute*()``), against a
  short allow-list of DDL built from constants; ruff's S608 enabled and clean; no ``shell=``
  anywhere but ``False``, and no GitPython shell switch.
- Dynamic: a real multiprocess run (own process group, own DAGSTER_HOME) with
  ``RECONCILE_GIT_ALLOWED_ROOTS`` set and ``GIT_PYTHON_GIT_EXECUTABLE`` pointing at a wrapper
  script that logs every git invocation (cwd and argv): worktrees outside the roots get a reason
  and no git process ever runs for them.
- Secrets: real runs with ``postgres:S3cretPw@`` in the pipeline DB URL (the local server trusts,
  any password works) and in the URL of an app DB that does not exist: the password appears
  nowhere in the event log (messages, metadata, error infos), the run record or its snapshots.
"""

from __future__ import annotations

import ast
import os
import re
import stat
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._serdes import serialize_value

from reconcile_pipeline.defs.reconciliation.sensor import reconciliation_sensor
from reconcile_pipeline.defs.resources import AppDatabase, default_resources
from reconcile_pipeline_tests.support import gitrepos as gr
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.databases import PG_ADMIN_URL, pg_available
from reconcile_pipeline_tests.support.expected import read_table
from reconcile_pipeline_tests.support.processes import BIN, REPO, dagster_home, pipeline_env
from reconcile_pipeline_tests.support.runs import (
    ASSETS,
    add_partitions,
    add_project_partitions,
    check_evaluations,
    execute,
    materialization_metadata,
    open_instance,
    reconcile,
    table_rows,
)

PACKAGE = REPO / "reconcile_pipeline"
SECRET = "S3cretPw"

# ---- static: SQL built from strings -----------------------------------------------------------

_SQL = re.compile(
    r"(?i)\b(select\s.+\sfrom|insert\s+into|update\s+\S+\s+set|delete\s+from|"
    r"create\s+(table|(unique\s+)?index|database|trigger|function)|alter\s+(table|database)|"
    r"drop\s+(table|index|database)|truncate\s|pragma\s|begin\s|grant\s)"
)
_SQL_SINKS = {"text", "exec_driver_sql", "execute", "executemany", "executescript"}

# (file, source snippet) -> why it is safe. Everything else built from strings is a finding.
ALLOWED = {
    ("core/db.py", 'f"ALTER TABLE {table.name} ADD COLUMN {ddl}"'): (
        "migration DDL: a constant table name and a column definition compiled by SQLAlchemy "
        "from the Table object"
    ),
    ("demo/app_schema.py", """f'CREATE TABLE IF NOT EXISTS "{table}" (\\n    {body}\\n)'"""): (
        "the app schema DDL (demo and tests only) from the TABLES constants"
    ),
    ("core/db.py", 'f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}"'): "a constant",
    ("metadata.py", "This run's drift, in the pipeline DB"): (
        "queries shown to the user in the UI to copy and run; never executed here"
    ),
    ("core/db.py", 'f"BEGIN {mode}"'): (
        "the package's own execution option (DEFERRED or IMMEDIATE), never user input"
    ),
}


def _template(node: ast.AST) -> str | None:
    """The constant text of a string built at run time, with {} for the variable parts."""
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
            for v in node.values
        )
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
    ):
        return node.func.value.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        parts = [
            n.value
            for n in (node.left, node.right)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        ]
        if parts:
            return "{}".join(parts)
    return None


def find_string_built_sql() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        rel = path.relative_to(PACKAGE).as_posix()
        flagged: set[int] = set()
        for node in ast.walk(tree):
            candidates = []
            template = _template(node)
            if template is not None and _SQL.search(template):
                candidates.append(node)
            if isinstance(node, ast.Call) and node.args:
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in _SQL_SINKS and _template(node.args[0]) is not None:
                    candidates.append(node.args[0])
            for candidate in candidates:
                if id(candidate) in flagged:
                    continue
                flagged.add(id(candidate))
                segment = ast.get_source_segment(source, candidate) or ""
                found.append((rel, candidate.lineno, segment))
    return found


def test_sql_is_never_built_from_strings_outside_the_allow_list():
    found = find_string_built_sql()
    unexpected = [
        f"{rel}:{line}: {segment[:120]}"
        for rel, line, segment in found
        if not any(rel == f and snippet in segment for f, snippet in ALLOWED)
    ]
    assert unexpected == [], "SQL built from strings:\n" + "\n".join(unexpected)
    # The allow-list is not stale: each entry still matches something.
    stale = [
        key
        for key in ALLOWED
        if not any(rel == key[0] and key[1] in segment for rel, _, segment in found)
    ]
    assert stale == [], f"allow-list entries that match nothing any more: {stale}"


def test_the_scanner_finds_what_it_must():
    """The scanner itself, on known-bad snippets (so a green scan means something)."""
    bad = [
        "conn.execute(sa.text(f\"SELECT * FROM t WHERE id = '{x}'\"))",
        "conn.exec_driver_sql('DELETE FROM t WHERE id = %s' % x)",
        "q = 'UPDATE t SET a = {}'.format(v)",
        "q = 'INSERT INTO t VALUES (' + v + ')'",
        "cursor.execute(f'{stmt}')",
    ]
    for snippet in bad:
        tree = ast.parse(snippet)
        hits = [
            n
            for n in ast.walk(tree)
            if (_template(n) is not None and _SQL.search(_template(n) or ""))
            or (
                isinstance(n, ast.Call)
                and n.args
                and getattr(n.func, "attr", None) in _SQL_SINKS
                and _template(n.args[0]) is not None
            )
        ]
        assert hits, snippet


def test_ruff_s608_is_enabled_and_clean():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    selected = config.get("select", []) + config.get("extend-select", [])
    assert any(code in ("S608", "S60", "S6", "S") for code in selected), selected
    assert not any("S608".startswith(code) for code in config.get("ignore", []))
    for pattern, codes in config.get("per-file-ignores", {}).items():
        if any("S608".startswith(code) for code in codes):
            assert "test" in pattern, f"S608 ignored for product files: {pattern}"
    proc = subprocess.run(
        [str(BIN / "ruff"), "check", "--select", "S608", "--no-cache", str(PACKAGE)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_shell_anywhere_and_git_bounded_in_time():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.keyword)
                and node.arg == "shell"
                and not (isinstance(node.value, ast.Constant) and node.value.value is False)
            ):
                offenders.append(f"{rel}:{node.value.lineno}: shell={ast.unparse(node.value)}")
            if isinstance(node, ast.Attribute) and node.attr == "USE_SHELL":
                offenders.append(f"{rel}:{node.lineno}: GitPython USE_SHELL")
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) in ("system", "popen")
                and getattr(node.func.value, "id", None) == "os"
            ):
                offenders.append(f"{rel}:{node.lineno}: os.{node.func.attr}")
    assert offenders == [], offenders
    git_stats = (PACKAGE / "core" / "git_stats.py").read_text()
    # git runs from one place, with an argument list and a deadline that kills it.
    assert git_stats.count("subprocess.Popen(") == 1 and "subprocess.run(" not in git_stats
    assert "timeout=remaining" in git_stats and "os.killpg(" in git_stats


# ---- dynamic: git never runs outside the allowed roots --------------------------------------


def _wrapper(path: Path, log: Path) -> Path:
    real_git = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    path.write_text(
        f'#!/bin/sh\nprintf \'%s\\t%s\\n\' "$(pwd -P)" "$*" >> \'{log}\'\nexec {real_git} "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _secret_url(url: str) -> str:
    return sa.make_url(url).set(password=SECRET).render_as_string(hide_password=False)


def _leaks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Every place of the run's records where the secret shows: event log entries (messages,
    metadata, error infos), the run record (config, tags), the job and plan snapshots."""
    found = []
    for entry in instance.all_logs(run_id):
        text = serialize_value(entry)
        if SECRET in text:
            found.append(
                f"event {entry.dagster_event_type}: {text[text.index(SECRET) - 80 :][:160]}"
            )
    run = instance.get_run_by_id(run_id)
    if SECRET in serialize_value(run):
        found.append("run record")
    if run.job_snapshot_id and SECRET in serialize_value(
        instance.get_job_snapshot(run.job_snapshot_id)
    ):
        found.append("job snapshot")
    if run.execution_plan_snapshot_id and SECRET in serialize_value(
        instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    ):
        found.append("execution plan snapshot")
    return found


@pytest.mark.slow
def test_git_never_runs_outside_allowed_roots_in_a_real_multiprocess_run(tmp_path, pg_url):
    root = tmp_path / "allowed"
    outside = tmp_path / "outside"
    outside.mkdir()
    project = gr.make_project(root / "proj")
    inside = gr.add_worktree(project.repo, root / "wt" / "inside", "inside")
    gr.write(inside, "src/app.py", "changed\n")
    escaped = gr.add_worktree(project.repo, outside / "escaped", "escaped")
    linked = gr.add_worktree(project.repo, outside / "linked", "linked")
    (root / "link").symlink_to(linked)

    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}")
    app.add_project("p")
    app.add_workspace("inside", "p", worktreePath=str(inside))
    app.add_workspace("outside", "p", worktreePath=str(escaped))
    app.add_workspace(
        "dotdot", "p", worktreePath=str(root / "wt" / ".." / ".." / "outside" / "escaped")
    )
    app.add_workspace("symlink", "p", worktreePath=str(root / "link"))
    app.dispose()

    log = tmp_path / "git-invocations.log"
    wrapper = _wrapper(tmp_path / "git-wrapper", log)
    home = dagster_home(tmp_path / "home")
    pipeline_url = _secret_url(pg_url)
    env = pipeline_env(
        home,
        RECONCILE_APP_DB_URL=app.url,
        RECONCILE_PIPELINE_DB_URL=pipeline_url,
        RECONCILE_GIT_ALLOWED_ROOTS=str(root),
        GIT_PYTHON_GIT_EXECUTABLE=str(wrapper),
    )
    partition_range = add_project_partitions(home, tmp_path / "app.db")
    result = execute(env, partition_range)
    assert result["success"], result["stderr"][-3000:]

    invocations = [line.split("\t", 1) for line in log.read_text().splitlines()]
    cwds = {os.path.realpath(cwd) for cwd, _ in invocations}
    assert os.path.realpath(inside) in cwds, "the wrapper did not see the inside worktree"
    forbidden = [os.path.realpath(escaped), os.path.realpath(linked), str(outside)]
    ran_outside = [
        (cwd, args)
        for cwd, args in invocations
        if any(cwd.startswith(f) or f in args for f in forbidden)
    ]
    assert ran_outside == [], ran_outside

    with open_instance(home) as instance:
        coverage = check_evaluations(instance, result["run_id"])["git_stats_coverage"]
        reasons = {
            r["workspace_id"]: r["reason"] for r in table_rows(coverage.metadata["null_reasons"])
        }
        for workspace_id in ("outside", "dotdot", "symlink"):
            assert "worktree path outside allowed roots" in reasons[workspace_id]
        assert _leaks(instance, result["run_id"]) == []  # the pipeline URL's password
    rows = read_table(pg_url)
    assert rows["inside"]["git_total"] == 1
    assert all(rows[w]["git_total"] is None for w in ("outside", "dotdot", "symlink"))
    print(
        f"\nSAFETY git wrapper: {len(invocations)} git invocations, "
        f"{len(cwds)} distinct cwds, none outside {root}"
    )


# ---- secrets ---------------------------------------------------------------------------------


def _product_resources(monkeypatch, tmp_path, app_url: str, pipeline_url: str) -> dict:
    """The code location's own resources, configured through the environment as in production."""
    monkeypatch.setenv("RECONCILE_APP_DB_URL", app_url)
    monkeypatch.setenv("RECONCILE_PIPELINE_DB_URL", pipeline_url)
    monkeypatch.setenv("RECONCILE_SESSION_RUNTIME", "none")
    return default_resources()


def test_pipeline_db_password_never_in_the_event_log(monkeypatch, tmp_path, pg_url):
    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}")
    app.add_project_with_workspaces("p", 3)
    app.dispose()
    res = _product_resources(monkeypatch, tmp_path, app.url, _secret_url(pg_url))
    with dg.instance_for_test() as instance:
        add_partitions(instance, ["p"])
        result = reconcile(instance, res)
        assert result.success
        assert _leaks(instance, result.run_id) == []
        # The URL is shown, masked.
        table = materialization_metadata(instance, result.run_id)["workspace_snapshot"]
        assert "postgres:***@" in table["pipeline_db"]
    assert len(read_table(pg_url)) == 3


def test_app_db_password_never_in_a_failed_run_or_a_sensor_tick(monkeypatch, tmp_path):
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable")

    missing = f"rp_missing_{uuid.uuid4().hex[:10]}"
    app_url = _secret_url(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{missing}")
    pipeline_url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = _product_resources(monkeypatch, tmp_path, app_url, pipeline_url)
    with dg.instance_for_test() as instance:
        add_partitions(instance, ["p"])
        result = dg.materialize(
            ASSETS,
            instance=instance,
            resources=res,
            partition_key="p",
            raise_on_error=False,
        )
        assert not result.success
        failure = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert failure
        error = failure[0].event_specific_data.error.to_string()
        assert f'database "{missing}" does not exist' in error  # a clear message...
        assert SECRET not in error  # ...without the password
        assert _leaks(instance, result.run_id) == []

        tick = reconciliation_sensor(
            dg.build_sensor_context(
                instance=instance, resources={"app_db": AppDatabase(url=app_url)}
            )
        )
        assert isinstance(tick, dg.SkipReason), tick
        assert "unreadable" in tick.skip_message and SECRET not in tick.skip_message
        assert "postgres:***@" in tick.skip_message


if __name__ == "__main__":  # pragma: no cover - list the scan's findings
    for finding in find_string_built_sql():
        print(*finding, sep="\t", file=sys.stdout)
