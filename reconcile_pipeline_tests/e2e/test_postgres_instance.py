"""The production shape, end to end with real processes: the Dagster instance (run, event-log and
schedule storage) on PostgreSQL through deploy/postgres/dagster.yaml, the pipeline DB and the app
DB on PostgreSQL, the session runtime from a file, `dagster-webserver` and `dagster-daemon run`
as subprocesses. The RUNNING-by-default sensor must launch a reconcile run through the run queue
and that run must succeed with its ERROR checks passing; the snapshot table on PostgreSQL must equal
values computed here independently from the demo app (plain sqlite3 on the original SQLite app DB
that was copied to PostgreSQL, plain git, the runtime JSON, the contract's rules); and Dagster's own
tables must really be in the PostgreSQL instance database (no SQLite storage under DAGSTER_HOME).

Three throwaway databases on the local server (trust auth; RECONCILE_TEST_PG_ADMIN_URL points
elsewhere), dropped afterwards. Retention on this instance is ``test_retention.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from reconcile_pipeline_tests.support.databases import (
    copy_app_db_to,
    create_pg_database,
    drop_pg_database,
    fetch_rows,
    production_home,
)
from reconcile_pipeline_tests.support.expected import (
    expected_git,
    expected_snapshots,
    table_differences,
)
from reconcile_pipeline_tests.support.processes import (
    BIN,
    CHECKS_QUERY,
    Stack,
    assert_went_through_run_queue,
    pipeline_env,
    require_tools,
    run_command,
)
from reconcile_pipeline_tests.support.runs import (
    CHECK_NAMES,
    check_evaluations,
    check_metadata,
    materialization_metadata,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

JOB = "reconcile_job"
DEMO_WORKSPACES = 40
WEBSERVER_TIMEOUT_S = 180.0
FIRST_RUN_TIMEOUT_S = 300.0  # daemon start + first tick + queue + run, on 2 busy cores
ERROR_CHECKS = ("no_stale_entries", "table_matches_authoritative")
# The daemons a production instance needs: sensor, run queue, run monitoring, schedules
# (the retention schedule). Their heartbeats live in the PostgreSQL instance DB.
DAEMONS = ("SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING", "SCHEDULER")
DAEMON_HEALTH_TIMEOUT_S = 90.0
INSTANCE_QUERY = """
query Instance {
  instance {
    runQueuingSupported
    runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml }
    daemonHealth { allDaemonStatuses { daemonType required healthy } }
  }
}
"""
# Put into the RECONCILE_* database URLs (trust auth ignores it): it must never show up in
# logs, run metadata or the event log.
URL_SECRET = "s3cret-url-password-e2e"


def _with_password(url: str) -> str:
    if sa.make_url(url).password:
        return url
    return sa.make_url(url).set(password=URL_SECRET).render_as_string(hide_password=False)


@dataclass
class PgStack:
    stack: Stack
    instance_url: str
    pipeline_url: str
    app_url: str
    demo_root: Path
    pg_env: dict[str, str]
    timings: dict[str, float]


@pytest.fixture
def pg_stack(tmp_path: Path, pg_admin_url: str) -> Iterator[PgStack]:
    require_tools("dagster", "dagster-webserver", "dagster-daemon", "reconcile-pipeline")

    from reconcile_pipeline.demo.build import build_demo_app, demo_session_runtime

    timings: dict[str, float] = {}
    urls: list[str] = []
    stack: Stack | None = None
    try:
        started = time.perf_counter()
        instance_url = create_pg_database("rp_e2e_instance")
        urls.append(instance_url)
        pipeline_url = create_pg_database("rp_e2e_pipeline")
        urls.append(pipeline_url)
        app_url = create_pg_database("rp_e2e_app")
        urls.append(app_url)

        # The app DB: the demo (SQLite + real worktrees), copied into a PostgreSQL app schema.
        demo = build_demo_app(tmp_path / "demo_app", workspaces=DEMO_WORKSPACES, seed=0)
        demo_session_runtime(demo, seed=0)
        counts = copy_app_db_to(demo.app_db_path, app_url)
        assert counts["Workspace"] == demo.workspaces, counts
        timings["setup_demo_and_databases_s"] = round(time.perf_counter() - started, 1)

        home = tmp_path / "dagster_home"
        pg_env = production_home(home, instance_url)
        env = pipeline_env(
            home,
            **pg_env,
            RECONCILE_APP_DB_URL=_with_password(app_url),
            RECONCILE_PIPELINE_DB_URL=_with_password(pipeline_url),
            RECONCILE_SESSION_RUNTIME="file",
            RECONCILE_SESSION_RUNTIME_LOCATION=demo.session_runtime_path,
        )

        # Create Dagster's schema once, before two processes open the instance.
        started = time.perf_counter()
        run_command([str(BIN / "dagster"), "instance", "migrate"], env)
        timings["instance_migrate_s"] = round(time.perf_counter() - started, 1)

        stack = Stack(home=home, env=env)
        stack.start_webserver(tmp_path / "webserver.log")
        stack.start_daemon(tmp_path / "daemon.log")
        yield PgStack(
            stack=stack,
            instance_url=instance_url,
            pipeline_url=pipeline_url,
            app_url=app_url,
            demo_root=demo.root,
            pg_env=pg_env,
            timings=timings,
        )
    finally:
        if stack is not None:
            stack.stop_all()
            print(stack.logs())  # shown by pytest only when the test failed
        for url in urls:
            drop_pg_database(url)


def test_production_instance_on_postgres_end_to_end(
    pg_stack: PgStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = pg_stack.stack
    timings = pg_stack.timings
    stack.wait_for_webserver(WEBSERVER_TIMEOUT_S)
    timings["daemon_start_to_webserver_up_s"] = round(time.time() - stack.daemon_started_at, 1)

    # --- the sensor's run, through the queue, succeeds ----------------------------------------
    run = stack.wait_for_successful_run(JOB, FIRST_RUN_TIMEOUT_S, since=stack.daemon_started_at)
    run_id = run["runId"]
    timings["daemon_start_to_run_created_s"] = round(
        run["creationTime"] - stack.daemon_started_at, 1
    )
    timings["run_created_to_end_s"] = round(run["endTime"] - run["creationTime"], 1)
    timings["daemon_start_to_success_s"] = round(run["endTime"] - stack.daemon_started_at, 1)
    print(f"timings: {timings}")

    # --- the ERROR checks passed: as the UI shows them (GraphQL) ------------------------------
    for check in ERROR_CHECKS:
        executions = stack.gql(
            CHECKS_QUERY, {"key": {"path": ["workspace_snapshot"]}, "check": check}
        )["assetCheckExecutions"]
        mine = [e for e in executions if e["runId"] == run_id]
        assert mine, f"no {check} execution for run {run_id} in the UI: {executions}"
        for e in mine:
            assert e["status"] == "SUCCEEDED", (check, e)
            assert e["evaluation"] and e["evaluation"]["success"], (check, e)

    # --- the instance runs what deploy/postgres/dagster.yaml asks for -------------------------
    config = stack.gql(INSTANCE_QUERY)["instance"]
    queue = config["runQueueConfig"]
    assert config["runQueuingSupported"] and queue["maxConcurrentRuns"] == 4, config
    assert "key: reconcile_pipeline/run\n  limit: 1" in queue["tagConcurrencyLimitsYaml"], queue
    unhealthy: list = []
    deadline = time.monotonic() + DAEMON_HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        statuses = stack.gql(INSTANCE_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
        by_type = {d["daemonType"]: d for d in statuses}
        unhealthy = [
            (name, by_type.get(name))
            for name in DAEMONS
            if not (by_type.get(name) or {}).get("healthy")
        ]
        if not unhealthy:
            break
        time.sleep(2.0)
    assert not unhealthy, f"daemons not running/healthy on the PostgreSQL instance: {unhealthy}"

    # --- ... and through the instance API, on the PostgreSQL storage -------------------------
    app_live_projects = sorted(
        r["id"]
        for r in fetch_rows(pg_stack.app_url, 'SELECT "id" FROM "Project" WHERE NOT "isArchived"')
    )
    for key, value in pg_stack.pg_env.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(stack.home)) as instance:
        storages = {
            "run": type(instance.run_storage).__name__,
            "event_log": type(instance.event_log_storage).__name__,
            "schedule": type(instance.schedule_storage).__name__,
        }
        assert storages == {
            "run": "PostgresRunStorage",
            "event_log": "PostgresEventLogStorage",
            "schedule": "PostgresScheduleStorage",
        }, storages
        record = instance.get_run_record_by_id(run_id)
        assert record is not None and record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        tags = record.dagster_run.tags
        assert tags.get("reconcile_pipeline/run") == "reconcile", tags
        partitions = instance.get_dynamic_partitions("projects")
        assert sorted(partitions) == app_live_projects, (partitions, app_live_projects)
        assert {
            tags["dagster/asset_partition_range_start"],
            tags["dagster/asset_partition_range_end"],
        } == {partitions[0], partitions[-1]}, tags
        assert_went_through_run_queue(instance, run_id)
        evaluations = check_evaluations(instance, run_id)
        materialized = materialization_metadata(instance, run_id)
    for check in ERROR_CHECKS:
        assert check in evaluations, sorted(evaluations)
        assert evaluations[check].passed, (check, check_metadata(evaluations[check]))
    assert set(CHECK_NAMES) <= set(evaluations), sorted(evaluations)
    assert {
        "workspace_extract",
        "git_stats",
        "authoritative_snapshots",
        "snapshot_drift",
        "workspace_snapshot",
    } <= set(materialized), sorted(materialized)
    assert "postgresql" in materialized["workspace_extract"]["app_db"], materialized

    # --- Dagster's storage is really PostgreSQL ---------------------------------------------
    instance_url = pg_stack.instance_url
    tables = {
        r["tablename"]
        for r in fetch_rows(
            instance_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    }
    assert {"runs", "event_logs", "jobs", "job_ticks", "dynamic_partitions"} <= tables, tables
    runs_rows = fetch_rows(instance_url, "SELECT run_id, status FROM runs")
    assert {"run_id": run_id, "status": "SUCCESS"} in runs_rows, runs_rows
    (events,) = fetch_rows(
        instance_url, "SELECT COUNT(*) AS n FROM event_logs WHERE run_id = :run_id", run_id=run_id
    )
    assert events["n"] > 50, events  # steps, materializations, checks of one run
    ticks = fetch_rows(instance_url, "SELECT COUNT(*) AS n FROM job_ticks")[0]["n"]
    assert ticks >= 1, "no sensor tick in the PostgreSQL schedule storage"
    stored_partitions = fetch_rows(
        instance_url,
        "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'projects'",
    )
    assert sorted(r["partition"] for r in stored_partitions) == app_live_projects
    sqlite_files = sorted(
        str(p.relative_to(stack.home)) for p in stack.home.rglob("*.db") if p.is_file()
    )
    assert not sqlite_files, f"SQLite storage under DAGSTER_HOME: {sqlite_files}"

    # --- the snapshot table on PostgreSQL ------------------------------------------------------
    stored = {
        r["workspace_id"]: r
        for r in fetch_rows(pg_stack.pipeline_url, "SELECT * FROM workspace_snapshot")
    }
    active = fetch_rows(
        pg_stack.app_url,
        'SELECT w."id", w."worktreePath" FROM "Workspace" w JOIN "Project" p '
        'ON p."id" = w."projectId" WHERE w."status" <> \'ARCHIVED\' AND NOT p."isArchived"',
    )
    assert len(active) > 20, f"demo too small: {len(active)} active workspaces"
    assert sorted(stored) == sorted(r["id"] for r in active), "table != active workspaces"
    with_git = [
        r["id"]
        for r in active
        if r["worktreePath"] and expected_git(r["worktreePath"], "main") is not None
    ]
    assert len(with_git) > 15, with_git
    no_stats = [w for w in with_git if stored[w]["git_total"] is None]
    assert not no_stats, f"worktrees present but no git stats: {no_stats}"
    # Every cell, against an independent computation from the original (SQLite) demo app DB.
    expected = expected_snapshots(
        pg_stack.demo_root / "app.db", pg_stack.demo_root / "session_runtime.json"
    )
    diffs = table_differences(stored, expected)
    assert not diffs, (
        f"{len(diffs)} differences (workspace, column, stored, expected):\n"
        + "\n".join(map(str, diffs[:60]))
    )
    # The file session runtime was read (not 'none'): working sessions and pending requests.
    assert any(r["is_working"] for r in stored.values())
    assert any(r["pending_request_type"] for r in stored.values())
    assert any(r["git_total"] is None for r in stored.values())  # missing / not-a-repo cases
    summary = fetch_rows(
        pg_stack.pipeline_url,
        "SELECT projects, workspaces, compared, drift_records FROM reconcile_run "
        "WHERE run_id = :run_id",
        run_id=run_id,
    )
    assert summary == [
        {
            "projects": len(app_live_projects),
            "workspaces": len(active),
            "compared": 0,
            "drift_records": 0,
        }
    ], summary
    assert not (stack.home / "pipeline.db").exists(), "pipeline DB fell back to SQLite"

    # --- the database passwords never leak -------------------------------------------------------
    assert "***" in materialized["workspace_extract"]["app_db"], materialized["workspace_extract"]
    leaks = [p.name for p in stack.procs if URL_SECRET in p.log.read_text(errors="replace")]
    leaks += [
        str(path.relative_to(stack.home))
        for path in stack.home.rglob("*")
        if path.is_file() and URL_SECRET.encode() in path.read_bytes()
    ]
    (in_events,) = fetch_rows(
        instance_url,
        "SELECT COUNT(*) AS n FROM event_logs WHERE event LIKE :needle",
        needle=f"%{URL_SECRET}%",
    )
    if in_events["n"]:
        leaks.append(f"{in_events['n']} event_logs rows")
    assert not leaks, f"the RECONCILE_* URL password appears in: {leaks}"
    print(f"timings: {timings}")
    print(
        f"figures: {len(active)} workspaces, {len(with_git)} with git stats, "
        f"{events['n']} event_logs rows for the run, {ticks} sensor/schedule ticks"
    )
