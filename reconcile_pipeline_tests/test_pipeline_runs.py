"""Real Dagster executions of the reconcile pipeline, no mocks.

- A multiprocess run (``execute_job`` + ``reconstructable``, the code location's executor) over a
  60-workspace demo app: the snapshot table equals expectations computed independently (plain
  sqlite3, plain git, the runtime JSON, the contract's derivations); a second run writes nothing; a
  tampered table is repaired with the drift in the ledger.
- The git shard steps never run more than 3 at once, and do reach 3 (a control job without the
  tag limit reaches 4); neither do git processes, also in process where one step holds the free
  git slots; the step count does not grow with the workspaces.
- ``dagster asset materialize`` from the CLI, per partition and over the range, as operators use it.

Every run happens in a subprocess with its own environment (see support.runs).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from reconcile_pipeline.concurrency import GIT_LIMIT, GIT_POOL, POOL_LIMITS
from reconcile_pipeline.defs.reconciliation.partitions import PROJECTS
from reconcile_pipeline.demo.build import build_demo_app, demo_session_runtime
from reconcile_pipeline_tests.support.expected import (
    expected_snapshots,
    read_table,
    table_differences,
)
from reconcile_pipeline_tests.support.gitrepos import git_calls, git_windows, slow_git
from reconcile_pipeline_tests.support.processes import BIN, dagster_home, pipeline_env, run_command
from reconcile_pipeline_tests.support.runs import (
    ASSET_NAMES,
    CHECK_NAMES,
    RANGE_END,
    RANGE_START,
    SHARD_STEP_PREFIX,
    add_project_partitions,
    check_evaluations,
    check_metadata,
    execute,
    instance_run_summary,
    max_overlap,
    open_instance,
    step_windows,
    sync_partitions,
)

DAGSTER = str(BIN / "dagster")
RECONCILE_CLI = str(BIN / "reconcile-pipeline")
MATERIALIZE = [DAGSTER, "asset", "materialize", "-m", "reconcile_pipeline.definitions"]
REAL_GIT = shutil.which("git")


def _demo(root: Path, generation: int = 3):
    app = build_demo_app(root, workspaces=60, generation=generation)
    demo_session_runtime(app)
    expected = expected_snapshots(app.app_db_path, app.session_runtime_path)
    return app, expected


@pytest.fixture(scope="module")
def demo60(tmp_path_factory):
    """A 60-workspace demo app of the current schema (read only for every test) and its
    independent expectations."""
    return _demo(tmp_path_factory.mktemp("demo60") / "app")


@pytest.fixture(scope="module", params=(1, 2, 3), ids=lambda g: f"gen{g}")
def demo60_any_generation(request, tmp_path_factory):
    """The same demo in each schema generation the app has shipped."""
    return _demo(tmp_path_factory.mktemp(f"demo60_gen{request.param}") / "app", request.param)


def app_env(home: Path, app, pipeline_db: Path, **extra) -> dict[str, str]:
    """Resources pointed at ``app`` and ``pipeline_db`` through their environment variables."""
    return pipeline_env(
        home,
        RECONCILE_APP_DB_URL=app.app_db_url,
        RECONCILE_PIPELINE_DB_URL=f"sqlite:///{pipeline_db}",
        RECONCILE_SESSION_RUNTIME="file",
        RECONCILE_SESSION_RUNTIME_LOCATION=app.session_runtime_path,
        **extra,
    )


def sql(db: Path, statement: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:
            return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def versions(db: Path) -> dict[str, int]:
    return dict(sql(db, "SELECT workspace_id, version FROM workspace_snapshot"))


def ledger(db: Path, run_id: str) -> list[tuple]:
    return sql(
        db,
        "SELECT workspace_id, project_id, field, field_group, stored_value, authoritative_value "
        "FROM drift_ledger WHERE run_id = ? ORDER BY id",
        (run_id,),
    )


def run_facts(home: Path, run_id: str) -> tuple[dg.DagsterRun, dict, dict]:
    """(run record, check evaluations, run summary) from the instance."""
    with open_instance(home) as instance:
        run = instance.get_run_by_id(run_id)
        return run, check_evaluations(instance, run_id), instance_run_summary(instance, run_id)


# --------------------------------------------------------------------------------------------
# 1. A multiprocess run against independent expectations; idempotence; drift repair
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_multiprocess_run_converges_idles_and_repairs(tmp_path, demo60_any_generation):
    app, expected = demo60_any_generation
    # The demo covers the cases that make the comparison meaningful.
    rows = list(expected.values())
    assert len(rows) == app.active_workspaces >= 45
    assert {r["pending_request_type"] for r in rows} == {
        None,
        "plan_approval",
        "user_question",
        "permission_request",
    }
    if app.generation == 3:  # the merge-conflict flag and the projected ratchet state
        assert {r["has_merge_conflict"] for r in rows} == {True, False}
        assert "MERGE_CONFLICT" in {r["ratchet_state"] for r in rows}
    if app.generation > 1:
        assert "ARCHIVING" in {r["status"] for r in rows}
    assert {r["is_working"] for r in rows} == {True, False}
    assert {r["git_has_uncommitted"] for r in rows} == {True, False, None}
    assert any(r["git_additions"] and r["git_deletions"] for r in rows)
    assert any(r["git_total"] == 0 for r in rows)
    null_git = [r["workspace_id"] for r in rows if r["git_total"] is None]
    assert 1 <= len(null_git) < len(rows)

    home = dagster_home(tmp_path / "home")
    db = tmp_path / "pipeline.db"
    env = app_env(home, app, db)
    partition_range = add_project_partitions(home, app.app_db_path)

    # Run 1: seeds the empty table.
    first = execute(env, partition_range)
    assert first["success"], first["stderr"][-5000:]
    run, checks, meta = run_facts(home, first["run_id"])
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.job_name == "reconcile_job"
    assert run.tags[RANGE_START] + "..." + run.tags[RANGE_END] == partition_range
    assert set(checks) == CHECK_NAMES  # all four evaluated in this very run
    for name in ("no_stale_entries", "table_matches_authoritative", "drift_rate_below_threshold"):
        assert checks[name].passed, (name, check_metadata(checks[name]))
    coverage = check_metadata(checks["git_stats_coverage"])
    assert coverage["without_git_stats"] == len(null_git)
    assert coverage["coverage"] == round((len(rows) - len(null_git)) / len(rows), 4)
    assert checks["git_stats_coverage"].passed == (coverage["coverage"] >= coverage["threshold"])
    assert meta["rows_inserted"] == len(rows)
    assert meta["rows_updated"] == 0
    assert meta["schema_generation"] == app.generation
    # Dagster's bookkeeping of a range run (dagster_env.py): one planned event per asset, one
    # materialization per asset and project.
    with open_instance(home) as instance:
        projects = len(instance.get_dynamic_partitions(PROJECTS))
        kinds = Counter(e.dagster_event_type for e in instance.all_logs(first["run_id"]))
    assert projects >= 2
    assert kinds[dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED] == len(ASSET_NAMES)
    assert kinds[dg.DagsterEventType.ASSET_MATERIALIZATION] == projects * len(ASSET_NAMES)

    stored = read_table(db)
    assert table_differences(stored, expected) == []
    before = versions(db)
    assert set(before.values()) == {1}

    # Run 2: nothing changed, nothing written.
    second = execute(env, partition_range)
    assert second["success"], second["stderr"][-5000:]
    _, checks, meta = run_facts(home, second["run_id"])
    assert set(checks) == CHECK_NAMES and all(
        checks[n].passed for n in CHECK_NAMES - {"git_stats_coverage"}
    )
    assert meta["rows_written"] == 0
    assert meta["rows_unchanged"] == len(rows)
    assert meta["drift_records"] == 0
    assert versions(db) == before
    assert table_differences(read_table(db), expected) == []
    assert ledger(db, second["run_id"]) == []

    # Tamper: a lost status event, a lost insert, an entry for a workspace that never existed.
    changed = next(r for r in rows if r["status"] == "READY")
    deleted = next(r for r in rows if r["workspace_id"] != changed["workspace_id"])
    project = changed["project_id"]
    sql(
        db,
        "UPDATE workspace_snapshot SET status = 'FAILED' WHERE workspace_id = ?",
        (changed["workspace_id"],),
    )
    sql(db, "DELETE FROM workspace_snapshot WHERE workspace_id = ?", (deleted["workspace_id"],))
    sql(
        db,
        "INSERT INTO workspace_snapshot (workspace_id, project_id, name, status) "
        "VALUES ('ghost-workspace', ?, 'ghost', 'READY')",
        (project,),
    )

    third = execute(env, partition_range)
    assert third["success"], third["stderr"][-5000:]
    _, checks, meta = run_facts(home, third["run_id"])
    assert ledger(db, third["run_id"]) == [
        (changed["workspace_id"], project, "status", "workspace", '"FAILED"', '"READY"')
    ]  # the re-seeded row is not drift, the ghost is not drift: it is stale
    runs = sql(
        db,
        "SELECT compared, drifted_workspaces, drift_records FROM reconcile_run WHERE run_id = ?",
        (third["run_id"],),
    )
    assert runs == [(len(rows) - 1, 1, 1)]
    assert table_differences(read_table(db), expected) == []  # restored, ghost gone
    after = versions(db)
    assert after[changed["workspace_id"]] == before[changed["workspace_id"]] + 1
    assert after[deleted["workspace_id"]] == 1
    assert "ghost-workspace" not in after
    unchanged = set(before) - {changed["workspace_id"], deleted["workspace_id"]}
    assert {w: after[w] for w in unchanged} == {w: before[w] for w in unchanged}
    snapshot_meta = meta
    assert (snapshot_meta["rows_inserted"], snapshot_meta["rows_updated"]) == (1, 1)
    assert snapshot_meta["stale_removed"] == 1
    assert checks["no_stale_entries"].passed
    assert check_metadata(checks["no_stale_entries"])["removed"] == 1
    assert checks["table_matches_authoritative"].passed
    assert meta["drift_records"] == 1
    assert meta["drift_rate"] == round(1 / (len(rows) - 1), 4)

    print(
        "\nrun durations (execute_job s / whole process s): "
        + ", ".join(f"{r['duration_s']}/{r['process_s']}" for r in (first, second, third))
    )


# --------------------------------------------------------------------------------------------
# 2. At most 3 git shard steps at once, and exactly 3 when the work allows more
# --------------------------------------------------------------------------------------------


def shard_run(
    home: Path, app, db: Path, git: Path, *, control: bool = False, mode: str = "multiprocess"
) -> dict:
    log = git.parent / "calls.log"
    log.write_text("")
    env = app_env(
        home,
        app,
        db,
        RECONCILE_GIT_MAX_SHARDS="6",
        RECONCILE_GIT_MIN_SHARD_SIZE="1",
        # GitPython's documented switch (see the test below); the slow git also goes first on
        # PATH.
        GIT_PYTHON_GIT_EXECUTABLE=git,
        PATH=f"{git.parent}{os.pathsep}{os.environ['PATH']}",
    )
    partition_range = add_project_partitions(home, app.app_db_path)
    if control:  # the control has no tag limit; the git pool must not bind either
        with open_instance(home) as instance:
            instance.event_log_storage.set_concurrency_slots(GIT_POOL, 12)
    result = execute(env, partition_range, control=control, mode=mode)
    assert result["success"], result["stderr"][-5000:]
    with open_instance(home) as instance:
        windows = step_windows(instance, result["run_id"])
        result["events"] = len(instance.all_logs(result["run_id"]))
        if control:
            instance.event_log_storage.set_concurrency_slots(GIT_POOL, GIT_LIMIT)
    shards = [w for key, w in windows.items() if key.startswith(SHARD_STEP_PREFIX)]
    result["steps"] = len(windows)
    result["shard_steps"] = len(shards)
    result["overlap"] = max_overlap(shards)
    result["git_overlap"] = max_overlap(git_windows(log))
    result["git_calls"] = sum(c in ("status", "diff") for c in git_calls(log))
    result["shard_s"] = round(max(e for _, e in shards) - min(s for s, _ in shards), 2)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("planned_per_project", [False, True])
def test_failed_run_and_project_partition_status(tmp_path, demo60, planned_per_project):
    """What RUNBOOK says of a failed run: with one planned event per asset (the default), its
    project partitions are not marked failed, the run is, and its range tags name the projects;
    with Dagster's per-project planned events they would be marked failed."""
    app, _ = demo60
    home = dagster_home(tmp_path / "home")
    env = app_env(home, app, tmp_path / "pipeline.db")
    # The app DB is gone: workspace_extract fails (after its retries), so the run fails.
    env["RECONCILE_APP_DB_URL"] = f"sqlite:///{tmp_path / 'missing' / 'app.db'}"
    if planned_per_project:
        env["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "false"
    partition_range = add_project_partitions(home, app.app_db_path)
    result = execute(env, partition_range)
    assert not result["success"]
    with open_instance(home) as instance:
        run = instance.get_run_by_id(result["run_id"])
        keys = instance.get_dynamic_partitions(PROJECTS)
        status = instance.get_status_by_partition(
            dg.AssetKey("workspace_extract"), keys, dg.DynamicPartitionsDefinition(name=PROJECTS)
        )
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert run.tags[RANGE_START] == keys[0] and run.tags[RANGE_END] == keys[-1]
    failed = {k for k, v in (status or {}).items() if v == dg.AssetPartitionStatus.FAILED}
    assert failed == (set(keys) if planned_per_project else set())


@pytest.mark.slow
def test_git_shards_run_three_at_a_time_and_steps_do_not_grow(tmp_path, demo60):
    """Slow git (0.2 s a call), 6 shards, executor max_concurrent 4: the shard steps' STEP_START
    to STEP_SUCCESS windows in the event log overlap at most 3 deep, and exactly 3, and so do the
    git processes, while the control job without the tag limit (and a git pool of 12) reaches 4
    steps. 20 and 60 workspaces give the same steps."""
    app60, _ = demo60
    app20 = build_demo_app(tmp_path / "demo20", workspaces=20)
    demo_session_runtime(app20)
    git, log = slow_git(tmp_path / "slowbin")

    home60 = dagster_home(tmp_path / "home60")
    home20 = dagster_home(tmp_path / "home20")
    big = shard_run(home60, app60, tmp_path / "p60.db", git)
    small = shard_run(home20, app20, tmp_path / "p20.db", git)
    # The control runs on the larger fleet: longer shards overlap fully even on a busy machine.
    control = shard_run(home60, app60, tmp_path / "p60.db", git, control=True)

    print(
        "\n"
        + "\n".join(
            f"{name}: steps {r['steps']} (shards {r['shard_steps']}), max shard overlap "
            f"{r['overlap']}, git processes at once {r['git_overlap']}, shard phase {r['shard_s']} s, event-log rows {r['events']}, "
            f"execute_job {r['duration_s']} s"
            for name, r in (("60 ws", big), ("20 ws", small), ("control 60 ws", control))
        )
    )
    # The slow git really ran the git work (about two calls per present worktree).
    assert big["git_calls"] >= 2 * app60.worktrees
    assert big["shard_steps"] == small["shard_steps"] == 6
    assert big["overlap"] == 3 and small["overlap"] == 3
    # Three steps that start together hold the git pool's 3 slots: one worktree at a time each.
    assert big["git_overlap"] == 3 and small["git_overlap"] == 3
    # Without the tag limit the same measurement sees max_concurrent (4) shards at once.
    assert control["overlap"] == 4
    assert big["steps"] == small["steps"]


@pytest.mark.slow
def test_in_process_run_uses_the_free_git_slots_and_never_more(tmp_path, demo60):
    """In process the run has one git shard, whatever RECONCILE_GIT_MAX_SHARDS says, and it
    takes the git pool's free slots: 3 git processes at once when the pool is free, never more;
    1 when another run holds 2 slots."""
    app, _ = demo60
    git, _ = slow_git(tmp_path / "slowbin", delay_s=0.1)
    home = dagster_home(tmp_path / "home")
    free = shard_run(home, app, tmp_path / "p.db", git, mode="in_process")
    with open_instance(home) as instance:
        storage = instance.event_log_storage
        assert {p.name: p.limit for p in storage.get_pool_limits()} == POOL_LIMITS
        for step in ("other_step_a", "other_step_b"):  # another run holds 2 of the 3 slots
            assert storage.claim_concurrency_slot(GIT_POOL, "other-run", step).is_claimed
    busy = shard_run(home, app, tmp_path / "p.db", git, mode="in_process")
    with open_instance(home) as instance:
        instance.event_log_storage.free_concurrency_slots_for_run("other-run")
        info = instance.event_log_storage.get_concurrency_info(GIT_POOL)
    print(
        f"\nfree pool: {free['git_overlap']} at once; 2 slots held elsewhere: {busy['git_overlap']}"
    )
    assert free["shard_steps"] == busy["shard_steps"] == 1
    assert free["git_overlap"] == 3
    assert busy["git_overlap"] == 1
    assert info.claimed_slots == [] and info.pending_steps == []  # every slot went back


def test_git_stats_honour_git_python_git_executable(tmp_path, demo60):
    """GitPython's GIT_PYTHON_GIT_EXECUTABLE selects the git the pipeline runs (e.g. a daemon
    whose PATH has no git)."""
    app, expected = demo60
    workspace = next(r for r in expected.values() if r["git_total"] is not None)
    path = sql(
        app.app_db_path,
        'SELECT "worktreePath" FROM "Workspace" WHERE "id" = ?',
        (workspace["workspace_id"],),
    )[0][0]
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "logging-git"
    wrapper.write_text(f'#!/bin/bash\necho "$1" >> "{log}"\nexec "{REAL_GIT}" "$@"\n')
    wrapper.chmod(0o755)
    env = pipeline_env(tmp_path, GIT_PYTHON_GIT_EXECUTABLE=wrapper)
    code = (
        "import sys\nfrom reconcile_pipeline.core.git_stats import workspace_git_stats\n"
        "s = workspace_git_stats(sys.argv[1], 'main')\nassert s.reason is None, s.reason\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, path], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().split()
    assert "status" in calls and "diff" in calls, f"git calls through the wrapper: {calls}"


# --------------------------------------------------------------------------------------------
# 3. The CLI, as operators use it (demo under DAGSTER_HOME, no RECONCILE_* variables)
# --------------------------------------------------------------------------------------------


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
    null_p1 = sum(r["git_total"] is None for r in in_p1.values())
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
    assert "checks:     4 passed\n" in first.stdout
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
    assert passed + not_passed == 4 and len(listed) == not_passed, out  # each one named
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
