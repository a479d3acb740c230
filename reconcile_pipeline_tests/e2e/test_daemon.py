"""End to end with real processes: `dagster-webserver` and `dagster-daemon run` on a fresh
DAGSTER_HOME with a demo app, once per app schema generation (1, 2, 3). The RUNNING-by-default
sensor's first tick must launch one `reconcile_job` run over every project partition, through the
queued run coordinator, and that run must succeed and say which generation it read; the UI's
GraphQL API must show it, and the snapshot table must equal values computed independently of the
product by support.expected (plain sqlite3, plain `git`, the demo's session_runtime.json, the
contract's rules).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from reconcile_pipeline_tests.support.expected import expected_snapshots, read_table
from reconcile_pipeline_tests.support.processes import (
    BIN,
    CHECKS_QUERY,
    REPO,
    Stack,
    assert_went_through_run_queue,
    dagster_home,
)

pytestmark = pytest.mark.slow

JOB = "reconcile_job"
SENSOR = "reconciliation_sensor"
RUN_TAG = ("reconcile_pipeline/run", "reconcile")

DEMO_WORKSPACES = 40
FIRST_RUN_TIMEOUT_S = 240.0  # daemon start + first tick + queue + run, on 2 slow cores
WEBSERVER_TIMEOUT_S = 120.0
POLL_S = 1.0

IN_FLIGHT = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}
FAILED = {"FAILURE", "CANCELED"}

# Environment variables that would point the code location somewhere else than DAGSTER_HOME.
_RECONCILE_ENV_PREFIX = "RECONCILE_"


# ----------------------------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path, generation: int) -> Iterator[Stack]:
    home = dagster_home(
        tmp_path / "dagster_home",
        ("dagster", "dagster-webserver", "dagster-daemon", "reconcile-pipeline"),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(_RECONCILE_ENV_PREFIX)}
    env.update(DAGSTER_HOME=str(home), PYTHONUNBUFFERED="1")

    demo = subprocess.run(
        [str(BIN / "reconcile-pipeline"), "demo", "--workspaces", str(DEMO_WORKSPACES)]
        + ["--schema-generation", str(generation)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, f"demo build failed:\n{demo.stdout}\n{demo.stderr}"
    assert (home / "demo_app" / "app.db").is_file(), demo.stdout

    # Initialise the instance storage ONCE before starting two processes on it: a webserver and
    # a daemon that both create a fresh SQLite instance at the same moment race on its alembic
    # stamp ("table alembic_version already exists", or later "alembic_version has more than
    # one head"; dagster-io/dagster#27390). `dagster dev` avoids it the same way.
    migrate = subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, f"instance init failed:\n{migrate.stdout}\n{migrate.stderr}"

    s = Stack(home=home, env=env)
    try:
        s.start_webserver(tmp_path / "webserver.log")
        s.start_daemon(tmp_path / "daemon.log")
        yield s
    finally:
        s.stop_all()
        # Shown by pytest only when the test failed.
        print(s.logs())


# ----------------------------------------------------------------------------------------------
# GraphQL (what the UI sees)
# ----------------------------------------------------------------------------------------------

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
          ... on RepositoryLocation {
            name
            repositories {
              name
              sensors {
                name
                minIntervalSeconds
                sensorState {
                  status
                  ticks(limit: 50) {
                    status timestamp endTimestamp runIds skipReason error { message }
                  }
                }
              }
            }
          }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


def _sensor(stack: Stack) -> dict | None:
    """The sensor as the UI lists it, or None while the code location is still loading."""
    data = stack.gql(WORKSPACE_QUERY)["workspaceOrError"]
    if data["__typename"] != "Workspace":
        stack.fail(f"workspaceOrError: {data}")
    for entry in data["locationEntries"]:
        location = entry["locationOrLoadError"]
        if location is None:
            continue
        if location["__typename"] == "PythonError":
            stack.fail(f"code location {entry['name']} failed to load: {location['message']}")
        for repo in location["repositories"]:
            for sensor in repo["sensors"]:
                if sensor["name"] == SENSOR:
                    return sensor
    return None


# ----------------------------------------------------------------------------------------------
# Independent expectations
# ----------------------------------------------------------------------------------------------


def _sqlite_ro(path: Path) -> sqlite3.Connection:
    """Plain sqlite3, read only (a later sensor tick may be writing: wait for its lock)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def test_daemon_sensor_launches_a_successful_reconcile_run(stack: Stack, generation: int) -> None:
    stack.wait_for_webserver(WEBSERVER_TIMEOUT_S)

    # --- wait for the first tick's run to succeed, watching for overlapping runs -------------
    deadline = stack.daemon_started_at + FIRST_RUN_TIMEOUT_S
    max_in_flight = 0
    overlaps: list[list[str]] = []
    seen_statuses: dict[str, list[str]] = {}
    succeeded: dict | None = None
    while succeeded is None:
        stack.check_alive()
        if time.time() > deadline:
            try:
                sensor_view: Any = _sensor(stack)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                sensor_view = f"(webserver unreachable: {exc})"
            stack.fail(
                f"no successful {JOB} run within {FIRST_RUN_TIMEOUT_S:.0f} s of daemon start; "
                f"runs seen (status history): {seen_statuses}; sensor: {sensor_view}"
            )
        try:
            runs = stack.runs(JOB)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(POLL_S)
            continue
        for run in runs:
            history = seen_statuses.setdefault(run["runId"], [])
            if not history or history[-1] != run["status"]:
                history.append(run["status"])
        in_flight = [r["runId"] for r in runs if r["status"] in IN_FLIGHT]
        max_in_flight = max(max_in_flight, len(in_flight))
        if len(in_flight) > 1:
            overlaps.append(in_flight)
        failed = [r for r in runs if r["status"] in FAILED]
        if failed:
            stack.fail(
                f"{JOB} run {failed[0]['runId']} ended {failed[0]['status']}:\n"
                f"{stack.run_errors(failed[0]['runId'])}"
            )
        done = [r for r in runs if r["status"] == "SUCCESS"]
        if done:
            succeeded = min(done, key=lambda r: r["creationTime"])
            break
        time.sleep(POLL_S)

    run_id = succeeded["runId"]
    first_seen = time.time()
    timings = {
        "daemon_start_to_run_created_s": round(
            succeeded["creationTime"] - stack.daemon_started_at, 1
        ),
        "run_created_to_end_s": round(succeeded["endTime"] - succeeded["creationTime"], 1),
        "daemon_start_to_success_s": round(succeeded["endTime"] - stack.daemon_started_at, 1),
        "daemon_start_to_observed_s": round(first_seen - stack.daemon_started_at, 1),
    }
    print(f"timings: {timings}")

    # --- the UI's view: the sensor is RUNNING, its first tick launched this run ---------------
    sensor = _sensor(stack)
    assert sensor is not None, f"sensor {SENSOR} not in the workspace\n{stack.logs()}"
    state = sensor["sensorState"]
    assert state["status"] == "RUNNING", f"sensor state {state['status']}"
    assert sensor["minIntervalSeconds"] == 60
    ticks = sorted(state["ticks"], key=lambda t: t["timestamp"])
    launching = [t for t in ticks if t["runIds"]]
    assert launching, f"no sensor tick with a run: {ticks}"
    first_launch = launching[0]
    assert first_launch["status"] == "SUCCESS", first_launch
    assert first_launch["runIds"] == [run_id], (first_launch, run_id)
    errors = [t for t in ticks if t["status"] == "FAILURE"]
    assert not errors, f"failed sensor ticks: {errors}"
    before = [t for t in ticks if t["timestamp"] < first_launch["timestamp"]]
    timings["daemon_start_to_first_tick_s"] = round(
        ticks[0]["timestamp"] - stack.daemon_started_at, 1
    )
    timings["ticks_before_launch"] = len(before)
    print(f"timings: {timings}")

    # --- never two reconcile runs in flight; no run created while the first was in flight ------
    assert max_in_flight <= 1 and not overlaps, f"overlapping in-flight runs: {overlaps}"
    runs = stack.runs(JOB)
    created_during = [
        r["runId"]
        for r in runs
        if r["runId"] != run_id
        and succeeded["creationTime"] <= r["creationTime"] <= succeeded["endTime"]
    ]
    assert not created_during, f"runs created while {run_id} was in flight: {created_during}"
    during = [
        t
        for t in ticks
        if succeeded["creationTime"] < t["timestamp"] < succeeded["endTime"] and t["runIds"]
    ]
    assert not during, f"ticks launched runs while {run_id} was in flight: {during}"

    # --- the run covers every project partition and went through the queue -------------------
    tags = {t["key"]: t["value"] for t in succeeded["tags"]}
    assert tags.get(RUN_TAG[0]) == RUN_TAG[1], tags
    assert seen_statuses[run_id][-1] == "SUCCESS"
    conn = _sqlite_ro(stack.home / "demo_app" / "app.db")
    try:
        live_projects = sorted(
            r[0] for r in conn.execute('SELECT "id" FROM "Project" WHERE "isArchived" = 0')
        )
    finally:
        conn.close()
    covered = {
        tags["dagster/asset_partition_range_start"],
        tags["dagster/asset_partition_range_end"],
    }
    assert covered <= set(live_projects), (tags, live_projects)

    # --- asset checks of the run, through GraphQL and through the instance ------------------
    for check in ("no_stale_entries", "table_matches_authoritative"):
        executions = stack.gql(
            CHECKS_QUERY, {"key": {"path": ["workspace_snapshot"]}, "check": check}
        )["assetCheckExecutions"]
        mine = [e for e in executions if e["runId"] == run_id]
        assert mine, f"no {check} execution for run {run_id} in the UI: {executions}"
        for e in mine:
            assert e["status"] == "SUCCEEDED", (check, e)
            assert e["evaluation"] and e["evaluation"]["success"], (check, e)

    with dg.DagsterInstance.from_config(str(stack.home)) as instance:
        record = instance.get_run_record_by_id(run_id)
        assert record is not None and record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        partitions = instance.get_dynamic_partitions("projects")
        assert sorted(partitions) == live_projects, (partitions, live_projects)
        assert {
            record.dagster_run.tags["dagster/asset_partition_range_start"],
            record.dagster_run.tags["dagster/asset_partition_range_end"],
        } == {partitions[0], partitions[-1]}
        assert_went_through_run_queue(instance, run_id)
        evaluations = [
            e.get_dagster_event().event_specific_data
            for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
        # The run read the generation the app DB is in (the run summary observation says so).
        observations = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
        seen = {
            e.get_dagster_event()
            .event_specific_data.asset_observation.metadata["schema_generation"]
            .value
            for e in observations
        }
        assert seen == {str(generation)}, seen  # a setting, shown as text
    by_name: dict[str, list[bool]] = {}
    for ev in evaluations:
        by_name.setdefault(ev.check_name, []).append(ev.passed)
    for check in ("no_stale_entries", "table_matches_authoritative"):
        assert by_name.get(check) and all(by_name[check]), (check, by_name)
    # (git coverage and drift rate are WARN checks, their outcome depends on the demo data)
    assert "git_stats_coverage" in by_name and "drift_rate_below_threshold" in by_name, by_name

    # --- the snapshot table equals the independently computed expectation ------------------
    pipeline_db = stack.home / "pipeline.db"
    assert pipeline_db.is_file(), f"{pipeline_db} missing"
    demo = stack.home / "demo_app"
    expected = expected_snapshots(demo / "app.db", demo / "session_runtime.json")
    stored = read_table(pipeline_db)
    assert len(expected) > 20, f"demo too small: {len(expected)} live workspaces"
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    assert not missing and not extra, f"missing rows {missing}, extra rows {extra}"
    columns = set(next(iter(stored.values())))
    unknown_columns = sorted(set(next(iter(expected.values()))) - columns)
    assert not unknown_columns, f"expected columns missing from the table: {unknown_columns}"
    mismatches = []
    for wid, want in expected.items():
        got = stored[wid]
        for column, value in want.items():
            if got.get(column) != value:
                mismatches.append(f"{wid} {column}: stored {got.get(column)!r}, want {value!r}")
    assert not mismatches, f"{len(mismatches)} mismatched cells:\n" + "\n".join(mismatches[:60])
    # The demo exercises the interesting cases: null git stats, binaries, sessions.
    assert any(r["git_total"] is None for r in expected.values())
    assert any(r["git_has_uncommitted"] for r in expected.values())
    assert any(r["is_working"] for r in expected.values())
    assert any(r["pending_request_type"] for r in expected.values())

    # --- the first run seeds: no drift recorded, every live workspace counted --------------
    conn = _sqlite_ro(pipeline_db)
    try:
        summary = conn.execute(
            "SELECT projects, workspaces, compared, drift_records FROM reconcile_run "
            "WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        drift_rows = conn.execute(
            "SELECT COUNT(*) FROM drift_ledger WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
    finally:
        conn.close()
    assert summary == (len(live_projects), len(expected), 0, 0), summary
    assert drift_rows == 0
