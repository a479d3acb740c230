"""The command line, as operators use it: ``reconcile-pipeline demo``, ``sync-partitions`` and
``reconcile`` (what ``make run`` runs), and ``dagster asset materialize`` per partition and over
the range, each in a process of its own on a fresh DAGSTER_HOME (the demo under it, no RECONCILE_*
variables unless a test sets them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from reconcile_pipeline import cli
from reconcile_pipeline.defs.reconciliation.partitions import PROJECTS
from reconcile_pipeline.demo.build import build_demo_app
from reconcile_pipeline_tests.support.databases import sql
from reconcile_pipeline_tests.support.expected import (
    expected_snapshots,
    pathless_workspaces,
    read_table,
    table_differences,
)
from reconcile_pipeline_tests.support.processes import (
    BIN,
    REPO,
    dagster_home,
    pipeline_env,
    run_command,
)
from reconcile_pipeline_tests.support.runs import (
    CHECK_NAMES,
    RANGE_END,
    RANGE_START,
    app_env,
    check_metadata,
    open_instance,
    run_facts,
    sync_partitions,
)

DAGSTER = str(BIN / "dagster")
RECONCILE_CLI = str(BIN / "reconcile-pipeline")
MATERIALIZE = [DAGSTER, "asset", "materialize", "-m", "reconcile_pipeline.definitions"]


def cli_home(tmp_path: Path) -> tuple[Path, dict[str, str], list[str]]:
    """DAGSTER_HOME with the demo built by the CLI, partitions synced; (home, env, projects)."""
    home = dagster_home(tmp_path / "home")
    env = pipeline_env(home)
    proc = run_command([RECONCILE_CLI, "demo", "--workspaces", "20"], env, check=False)
    assert proc.returncode == 0, proc.stderr
    partition_range = sync_partitions(env)
    with open_instance(home) as instance:
        projects = list(instance.get_dynamic_partitions(PROJECTS))
    assert partition_range == f"{projects[0]}...{projects[-1]}" and len(projects) == 2
    return home, env, projects


def materialize(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run_command([*MATERIALIZE, "--select", "*", *args], env, check=False)


def latest_run(home: Path) -> tuple[dg.DagsterRun | None, int]:
    """The newest run in the instance (what the UI's Runs page shows first) and the run count."""
    with open_instance(home) as instance:
        runs = instance.get_runs()
        return (runs[0] if runs else None), len(runs)


def demo_expectations(home: Path) -> dict[str, dict]:
    demo = home / "demo_app"
    return expected_snapshots(demo / "app.db", demo / "session_runtime.json")


@pytest.mark.slow
def test_cli_materialize_range_then_one_partition(tmp_path):
    home, env, (p1, p2) = cli_home(tmp_path)
    db = home / "pipeline.db"
    expected = demo_expectations(home)

    # Without a partition Dagster refuses a partitioned selection, and says why.
    proc = materialize(env)
    assert proc.returncode != 0
    assert "Asset has partitions, but no '--partition' option was provided" in proc.stderr
    assert latest_run(home)[1] == 0

    proc = materialize(env, "--partition-range", f"{p1}...{p2}")
    assert proc.returncode == 0, proc.stderr[-5000:]
    run, count = latest_run(home)
    assert count == 1 and run.status == dg.DagsterRunStatus.SUCCESS
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == (p1, p2)
    assert table_differences(read_table(db), expected) == []

    # Drift in project 2 and an entry for a gone workspace of project 2...
    victim = next(r for r in expected.values() if r["project_id"] == p2)
    wrong = "FAILED" if victim["status"] != "FAILED" else "READY"
    sql(
        db,
        "UPDATE workspace_snapshot SET status = ? WHERE workspace_id = ?",
        (wrong, victim["workspace_id"]),
    )
    sql(
        db,
        "INSERT INTO workspace_snapshot (workspace_id, project_id, name) VALUES ('gone', ?, 'x')",
        (p2,),
    )
    before = read_table(db)

    # ...are left alone by a run of project 1 only.
    proc = materialize(env, "--partition", p1)
    assert proc.returncode == 0, proc.stderr[-5000:]
    run, count = latest_run(home)
    assert count == 2 and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags.get("dagster/partition") == p1
    after = read_table(db)
    assert after == before  # nothing to fix in project 1, project 2 untouched
    assert after[victim["workspace_id"]]["status"] == wrong and "gone" in after
    assert sql(db, "SELECT DISTINCT project_id FROM drift_ledger") == []


@pytest.mark.slow
def test_cli_materialize_one_partition_on_fresh_instance(tmp_path):
    """The per-project backfill on a fresh instance: only that project is read and written, and
    the git coverage check covers that project only."""
    home, env, (p1, p2) = cli_home(tmp_path)
    db = home / "pipeline.db"
    expected = demo_expectations(home)
    in_p1 = {w: r for w, r in expected.items() if r["project_id"] == p1}
    pathless = pathless_workspaces(home / "demo_app" / "app.db")  # outside git coverage
    null_p1 = sum(r["git_total"] is None and w not in pathless for w, r in in_p1.items())
    assert 0 < len(in_p1) < len(expected)

    proc = materialize(env, "--partition", p1)
    assert proc.returncode == 0, proc.stderr[-5000:]
    run, _ = latest_run(home)
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == p1
    assert table_differences(read_table(db), in_p1) == []  # p2 rows absent
    _, checks, _ = run_facts(home, run.run_id)
    assert set(checks) == CHECK_NAMES
    assert check_metadata(checks["git_stats_coverage"])["without_git_stats"] == null_p1

    # Once every project has stored outputs, a project-1 run still reports on project 1 only.
    proc = materialize(env, "--partition-range", f"{p1}...{p2}")
    assert proc.returncode == 0, proc.stderr[-5000:]
    proc = materialize(env, "--partition", p1)
    assert proc.returncode == 0, proc.stderr[-5000:]
    run, _ = latest_run(home)
    _, checks, _ = run_facts(home, run.run_id)
    assert check_metadata(checks["git_stats_coverage"])["without_git_stats"] == null_p1


def test_cli_sync_partitions_with_app_db_url(tmp_path):
    """`reconcile-pipeline sync-partitions` (step 2 of `make run`) with a real app DB named by
    RECONCILE_APP_DB_URL, as in production."""
    app = build_demo_app(tmp_path / "app", workspaces=4)
    home = dagster_home(tmp_path / "home")
    env = pipeline_env(home, RECONCILE_APP_DB_URL=app.app_db_url)
    proc = run_command([RECONCILE_CLI, "sync-partitions", "--quiet"], env, check=False)
    assert proc.returncode == 0, proc.stderr
    ids = sorted(r[0] for r in sql(app.app_db_path, 'SELECT "id" FROM "Project"'))
    assert proc.stdout.strip() == f"{ids[0]}...{ids[-1]}"


@pytest.mark.slow
def test_reconcile_command_prints_progress_and_a_summary_a_person_reads(tmp_path, demo60):
    """`reconcile-pipeline reconcile` (what `make run` ends with): a few progress lines, then a
    summary naming what was built, the run, the figures, every check that did not pass with its
    reason, and the UI; Dagster's own log only behind --verbose."""
    app, expected = demo60
    app_db = tmp_path / "app.db"
    shutil.copy(app.app_db_path, app_db)
    home = dagster_home(tmp_path / "home")
    env = {**app_env(home, app, tmp_path / "p.db"), "RECONCILE_APP_DB_URL": f"sqlite:///{app_db}"}
    projects = len(sql(app_db, 'SELECT "id" FROM "Project" WHERE NOT "isArchived"'))

    first = run_command([RECONCILE_CLI, "reconcile"], env, 600)
    out = first.stderr + first.stdout
    lines = out.strip().splitlines()
    assert lines[0] == f"reconciling {len(expected)} workspaces of {projects} projects", out
    assert len(lines) <= 15, out  # no Dagster event lines at the default level
    assert "DEBUG" not in out and "STEP_START" not in out, out
    for step in ("extract_and_plan: ", "compute_git_shard[shard_0]: ", "reconcile_snapshots: "):
        assert any(line.strip().startswith(step) for line in lines), (step, out)
    run_line = next(line for line in lines if line.startswith("run "))
    run_id = run_line.split()[1].rstrip(":")
    run, _, _ = run_facts(home, run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS and ": SUCCESS in " in run_line
    assert f"({projects} projects)" in out and "built:      workspace_extract, " in out
    assert f"written:    {len(expected)} rows ({len(expected)} new, 0 updated)" in out
    assert "0 drift records in 0 workspaces; 0 stale removed" in out
    assert f"checks:     {len(CHECK_NAMES)} passed\n" in first.stdout
    assert f"http://127.0.0.1:3000/runs/{run_id}" in out

    # Two rows tampered, three quarters of the workspaces archived: drift is counted, and the
    # prune guard blocks the removal, which the summary says, with the failed check's reason.
    tampered = sorted(expected)[:2]
    sql(
        tmp_path / "p.db",
        "UPDATE workspace_snapshot SET name = 'tampered' WHERE workspace_id IN (?, ?)",
        tuple(tampered),
    )
    keep = set(sorted(expected)[::4]) | set(tampered)
    archived = [w for w in expected if w not in keep]
    sql(
        app_db,
        f'UPDATE "Workspace" SET "status" = \'ARCHIVED\' WHERE "id" IN '
        f"({', '.join('?' * len(archived))})",
        tuple(archived),
    )
    second = run_command([RECONCILE_CLI, "reconcile"], env, 600)
    out = second.stderr + second.stdout
    assert f"reconciling {len(keep)} workspaces of {projects} projects" in out, out
    assert "drift records in 2 workspaces" in out, out
    assert "stale removal BLOCKED by the prune guard (nothing removed)" in out, out
    passed, not_passed = map(int, re.search(r"checks: +(\d+) passed, (\d+) not", out).groups())
    listed = [line.split()[:2] for line in out.splitlines() if line.startswith("    ")]
    assert passed + not_passed == len(CHECK_NAMES) and len(listed) == not_passed, out  # each named
    assert ["FAILED", "no_stale_entries:"] in listed and [
        "WARN",
        "drift_rate_below_threshold:",
    ] in listed
    assert f"drift_rate_below_threshold: 2 of {len(keep)} compared workspaces drifted" in out
    failed = next(line for line in out.splitlines() if "FAILED no_stale_entries: " in line)
    assert f"{len(archived)} of {len(expected)} snapshots look stale" in failed, failed
    assert len(read_table(tmp_path / "p.db")) == len(expected)  # nothing removed

    verbose = run_command([RECONCILE_CLI, "reconcile", "--verbose"], env, 600)
    assert "STEP_START" in verbose.stderr and "RUN_SUCCESS" in verbose.stderr, verbose.stderr


def test_cli_demo_subcommand(tmp_path, capsys):
    root = tmp_path / "cli demo"
    assert cli.main(["demo", "--root", str(root), "--workspaces", "6", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert f"sqlite:///{root / 'app.db'}" in out
    assert "workspaces: 6" in out and "projects: 2" in out
    assert "(schema generation 3)" in out  # the current app by default
    assert (root / "session_runtime.json").exists()
    assert cli.main(["demo", "--root", str(root), "--workspaces", "6"]) == 2
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([])  # a subcommand is required

    # as a module, in a fresh process, and with --force and --projects
    proc = subprocess.run(
        [sys.executable, "-m", "reconcile_pipeline.cli", "demo", "--root", str(root)]
        + ["--workspaces", "9", "--projects", "3", "--force", "--schema-generation", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "projects: 3  workspaces: 9" in proc.stdout
    assert "(schema generation 1)" in proc.stdout
    tables = {r[0] for r in sql(root / "app.db", "SELECT name FROM sqlite_master")}
    assert "ClaudeSession" in tables


def test_console_script(tmp_path):
    script = Path(sys.executable).parent / "reconcile-pipeline"
    if not script.exists():
        pytest.skip("console script not installed (pip install -e .)")
    proc = subprocess.run(
        [str(script), "demo", "--root", str(tmp_path / "d"), "--workspaces", "3"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "app DB URL: sqlite:///" in proc.stdout
