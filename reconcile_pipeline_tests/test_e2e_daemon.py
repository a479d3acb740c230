"""End to end with real processes: `dagster-webserver` and `dagster-daemon run` on a fresh
DAGSTER_HOME with a demo app. The RUNNING-by-default sensor's first tick must launch one
`reconcile_job` run over every project partition, through the queued run coordinator, and that run
must succeed; the UI's GraphQL API must show it, and the snapshot table must equal values computed
here independently (plain sqlite3, plain `git`, the demo's session_runtime.json, DESIGN's rules).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKSPACE_YAML = REPO / "workspace.yaml"
JOB = "reconcile_job"
SENSOR = "reconciliation_sensor"
RUN_TAG = ("reconcile_pipeline/run", "reconcile")

DEMO_WORKSPACES = 40
FIRST_RUN_TIMEOUT_S = 240.0  # daemon start + first tick + queue + run, on 2 slow cores
WEBSERVER_TIMEOUT_S = 120.0
POLL_S = 1.0
LOG_TAIL_LINES = 80

IN_FLIGHT = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}
FAILED = {"FAILURE", "CANCELED"}

# Environment variables that would point the code location somewhere else than DAGSTER_HOME.
_RECONCILE_ENV_PREFIX = "RECONCILE_"


# ----------------------------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    url: str
    procs: list[Proc] = field(default_factory=list)
    started_at: float = 0.0  # time.time() when the daemon was started

    def logs(self) -> str:
        parts = []
        for p in self.procs:
            rc = p.popen.poll()
            state = "running" if rc is None else f"exited with {rc}"
            parts.append(f"----- {p.name} ({state}), last lines of {p.log} -----\n{p.tail()}")
        return "\n".join(parts)

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n\n{self.logs()}", pytrace=False)

    def check_alive(self) -> None:
        for p in self.procs:
            if not p.alive():
                self.fail(f"{p.name} exited early with code {p.popen.returncode}")

    def gql(self, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            doc = json.loads(response.read())
        if doc.get("errors"):
            self.fail(f"GraphQL errors for {query.split('(')[0].strip()}: {doc['errors']}")
        return doc["data"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(name: str, args: list[str], env: dict[str, str], log: Path) -> Proc:
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Own process group: code servers, run workers and executor children are in it too
            # (Dagster does not start new sessions on POSIX), so teardown can end them all.
            start_new_session=True,
        )
    return Proc(name, popen, log)


def _stop(proc: Proc, grace_s: float = 20.0) -> None:
    if proc.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=grace_s)
    # Whatever is left in the group (children that outlived their parent) is killed hard.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.popen.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=10)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    for tool in ("dagster", "dagster-webserver", "dagster-daemon", "reconcile-pipeline"):
        if not (BIN / tool).exists():
            pytest.fail(f"{BIN / tool} not found: install the project with `make setup`")
    if shutil.which("git") is None:
        pytest.fail("git is not installed")

    home = tmp_path / "dagster_home"
    home.mkdir()
    assert home.resolve() != (REPO / "dagster_home").resolve()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(_RECONCILE_ENV_PREFIX)}
    env.update(DAGSTER_HOME=str(home), PYTHONUNBUFFERED="1")

    demo = subprocess.run(
        [str(BIN / "reconcile-pipeline"), "demo", "--workspaces", str(DEMO_WORKSPACES)],
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

    port = _free_port()
    s = Stack(home=home, env=env, url=f"http://127.0.0.1:{port}")
    try:
        s.procs.append(
            _start(
                "dagster-webserver",
                [
                    str(BIN / "dagster-webserver"),
                    "-w",
                    str(WORKSPACE_YAML),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                env,
                tmp_path / "webserver.log",
            )
        )
        s.started_at = time.time()
        s.procs.append(
            _start(
                "dagster-daemon",
                [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE_YAML)],
                env,
                tmp_path / "daemon.log",
            )
        )
        yield s
    finally:
        for p in reversed(s.procs):
            _stop(p)
        # Shown by pytest only when the test failed.
        print(s.logs())


# ----------------------------------------------------------------------------------------------
# GraphQL (what the UI sees)
# ----------------------------------------------------------------------------------------------

RUNS_QUERY = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs {
      results { runId status jobName creationTime startTime endTime tags { key value } }
    }
    ... on PythonError { message }
  }
}
"""

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

CHECKS_QUERY = """
query Checks($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 20) {
    runId
    status
    evaluation { success checkName description }
  }
}
"""

RUN_ERRORS_QUERY = """
query RunEvents($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      eventConnection(limit: 2000) {
        events {
          __typename
          ... on MessageEvent { message level stepKey }
          ... on ExecutionStepFailureEvent { error { message stack } }
          ... on RunFailureEvent { error { message } }
        }
      }
    }
  }
}
"""


def _runs(stack: Stack) -> list[dict]:
    data = stack.gql(RUNS_QUERY, {"filter": {"pipelineName": JOB}})["runsOrError"]
    if data["__typename"] != "Runs":
        stack.fail(f"runsOrError: {data}")
    return data["results"]


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


def _run_errors(stack: Stack, run_id: str) -> str:
    data = stack.gql(RUN_ERRORS_QUERY, {"runId": run_id})["runOrError"]
    if data["__typename"] != "Run":
        return str(data)
    lines = []
    for event in data["eventConnection"]["events"]:
        if event.get("error") or event.get("level") in ("ERROR", "CRITICAL"):
            lines.append(json.dumps(event)[:3000])
    return "\n".join(lines[-20:]) or "(no error events)"


# ----------------------------------------------------------------------------------------------
# Independent expectations
# ----------------------------------------------------------------------------------------------


def _sqlite_ro(path: Path) -> sqlite3.Connection:
    """Plain sqlite3, read only (a later sensor tick may be writing: wait for its lock)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_OPTIONAL_LOCKS": "0",  # read only: never rewrite a worktree's index
    "LC_ALL": "C",
}


def _git(worktree: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **_GIT_ENV,
        # never fall through to an enclosing repository
        "GIT_CEILING_DIRECTORIES": os.path.dirname(worktree),
    }
    return subprocess.run(
        ["git", *args], cwd=worktree, env=env, capture_output=True, text=True, timeout=60
    )


def expected_git_stats(worktree: str | None, default_branch: str) -> dict[str, Any]:
    """DESIGN "Git stats", with plain git: null for no path, a missing dir or a git failure."""
    null = {"git_total": None, "git_additions": None, "git_deletions": None}
    null["git_has_uncommitted"] = None
    if worktree is None or not os.path.isdir(worktree):
        return null
    status = _git(worktree, "status", "--porcelain")
    if status.returncode != 0:
        return null
    base = None
    for ref in (f"origin/{default_branch}", default_branch):
        found = _git(worktree, "merge-base", "HEAD", ref)
        if found.returncode == 0 and found.stdout.strip():
            base = found.stdout.strip()
            break
    diff = _git(worktree, "diff", "--numstat", base or "HEAD")
    if diff.returncode != 0:
        return null
    total = additions = deletions = 0
    for line in diff.stdout.splitlines():
        if not line.strip():
            continue
        adds, dels, _ = line.split("\t", 2)
        total += 1
        additions += 0 if adds == "-" else int(adds)
        deletions += 0 if dels == "-" else int(dels)
    return {
        "git_total": total,
        "git_additions": additions,
        "git_deletions": deletions,
        "git_has_uncommitted": bool(status.stdout.strip()),
    }


_ACTIVE_PR = {"OPEN", "DRAFT", "CHANGES_REQUESTED", "APPROVED"}


def expected_derived(r: dict[str, Any]) -> dict[str, Any]:
    """DESIGN "Derived fields", written out again from the text."""
    ci = r["pr_ci_status"]
    ci_observation = {
        "PENDING": "CHECKS_PENDING",
        "FAILURE": "CHECKS_FAILED",
        "SUCCESS": "CHECKS_PASSED",
    }.get(ci)
    if ci_observation is None:
        if ci == "UNKNOWN":
            ci_observation = "NO_CHECKS" if r["pr_updated_at"] is not None else "NOT_FETCHED"
        else:
            ci_observation = "CHECKS_UNKNOWN"
    active_pr = bool(r["pr_url"]) and r["pr_state"] in _ACTIVE_PR
    animated = False
    if r["pr_state"] == "MERGED":
        phase, flow_working = "MERGED", False
    elif not active_pr:
        phase, flow_working = "NO_PR", False
    elif ci_observation in ("NOT_FETCHED", "CHECKS_PENDING"):
        phase, flow_working, animated = "CI_WAIT", True, bool(r["ratchet_enabled"])
    elif not r["ratchet_enabled"]:
        phase, flow_working = "READY", False
    elif r["ratchet_state"] in ("CI_FAILED", "REVIEW_PENDING"):
        phase, flow_working = "RATCHET_FIXING", True
    elif r["ratchet_state"] in ("READY", "MERGED"):
        phase, flow_working = "READY", False
    else:
        phase, flow_working = "RATCHET_VERIFY", True
    effective = bool(r["is_working"]) or flow_working
    if r["status"] == "ARCHIVED":
        kanban = None
    elif r["status"] in ("NEW", "PROVISIONING", "FAILED") or effective:
        kanban = "WORKING"
    elif r["pr_state"] == "MERGED":
        kanban = "DONE"
    elif not r["has_had_sessions"]:
        kanban = None
    else:
        kanban = "WAITING"
    if not r["pr_url"]:
        sidebar_ci = "NONE"
    elif r["pr_state"] == "MERGED" or r["ratchet_state"] == "MERGED":
        sidebar_ci = "MERGED"
    else:
        sidebar_ci = {"SUCCESS": "PASSING", "FAILURE": "FAILING", "PENDING": "RUNNING"}.get(
            ci, "UNKNOWN"
        )
        if sidebar_ci == "UNKNOWN":
            sidebar_ci = {"CI_FAILED": "FAILING", "CI_RUNNING": "RUNNING"}.get(
                r["ratchet_state"], "UNKNOWN"
            )
    return {
        "ci_observation": ci_observation,
        "flow_phase": phase,
        "ratchet_button_animated": animated,
        "kanban_column": kanban,
        "sidebar_activity_state": "WORKING" if effective else "IDLE",
        "sidebar_ci_state": sidebar_ci,
    }


_PENDING_TYPES = {"ExitPlanMode": "plan_approval", "AskUserQuestion": "user_question"}


def expected_snapshots(demo_root: Path) -> dict[str, dict[str, Any]]:
    """workspace_id -> every snapshot field, from the app DB, the runtime file and git."""
    conn = _sqlite_ro(demo_root / "app.db")
    conn.row_factory = sqlite3.Row
    try:
        workspaces = [
            dict(r)
            for r in conn.execute(
                'SELECT w.*, p."defaultBranch" AS "defaultBranch" FROM "Workspace" w '
                'JOIN "Project" p ON p."id" = w."projectId" '
                'WHERE w."status" <> \'ARCHIVED\' AND p."isArchived" = 0'
            )
        ]
        agents = [dict(r) for r in conn.execute('SELECT * FROM "ClaudeSession"')]
        terminals = [dict(r) for r in conn.execute('SELECT * FROM "TerminalSession"')]
    finally:
        conn.close()
    runtime = json.loads((demo_root / "session_runtime.json").read_text())["sessions"]

    out: dict[str, dict[str, Any]] = {}
    for w in workspaces:
        wid = w["id"]
        mine = sorted(
            (s for s in agents if s["workspaceId"] == wid),
            key=lambda s: (s["createdAt"], s["id"]),
        )
        states = [
            runtime.get(s["id"]) or {"isWorking": False, "pendingRequest": None} for s in mine
        ]
        pending = None
        for st in states:
            tool = (st.get("pendingRequest") or {}).get("toolName")
            if tool in _PENDING_TYPES:
                pending = _PENDING_TYPES[tool]
                break
        activity = [s["updatedAt"] for s in agents + terminals if s["workspaceId"] == wid]
        row: dict[str, Any] = {
            "project_id": w["projectId"],
            "name": w["name"],
            "status": w["status"],
            "created_at": w["createdAt"],
            "branch_name": w["branchName"],
            "has_had_sessions": bool(w["hasHadSessions"]),
            "pr_url": w["prUrl"],
            "pr_number": w["prNumber"],
            "pr_state": w["prState"],
            "pr_ci_status": w["prCiStatus"],
            "pr_updated_at": w["prUpdatedAt"],
            "is_working": any(st["isWorking"] for st in states),
            "pending_request_type": pending,
            "ratchet_enabled": bool(w["ratchetEnabled"]),
            "ratchet_state": w["ratchetState"],
            "run_script_status": w["runScriptStatus"],
            "last_activity_at": max(activity) if activity else None,
            **expected_git_stats(w["worktreePath"], w["defaultBranch"]),
        }
        row.update(expected_derived(row))
        out[wid] = row
    return out


_BOOL_COLUMNS = {
    "has_had_sessions",
    "is_working",
    "ratchet_enabled",
    "git_has_uncommitted",
    "ratchet_button_animated",
}


def stored_snapshots(pipeline_db: Path) -> dict[str, dict[str, Any]]:
    conn = _sqlite_ro(pipeline_db)
    conn.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in conn.execute("SELECT * FROM workspace_snapshot")]
    finally:
        conn.close()
    for r in rows:
        for c in _BOOL_COLUMNS:
            if r.get(c) is not None:
                r[c] = bool(r[c])
    return {r["workspace_id"]: r for r in rows}


# ----------------------------------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------------------------------


def _wait_for_webserver(stack: Stack) -> None:
    deadline = time.monotonic() + WEBSERVER_TIMEOUT_S
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            with urllib.request.urlopen(f"{stack.url}/server_info", timeout=5):  # noqa: S310
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(POLL_S)
    stack.fail(f"dagster-webserver did not answer on {stack.url} within {WEBSERVER_TIMEOUT_S} s")


def test_daemon_sensor_launches_a_successful_reconcile_run(stack: Stack) -> None:
    _wait_for_webserver(stack)

    # --- wait for the first tick's run to succeed, watching for overlapping runs -------------
    deadline = stack.started_at + FIRST_RUN_TIMEOUT_S
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
            runs = _runs(stack)
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
                f"{_run_errors(stack, failed[0]['runId'])}"
            )
        done = [r for r in runs if r["status"] == "SUCCESS"]
        if done:
            succeeded = min(done, key=lambda r: r["creationTime"])
            break
        time.sleep(POLL_S)

    run_id = succeeded["runId"]
    first_seen = time.time()
    timings = {
        "daemon_start_to_run_created_s": round(succeeded["creationTime"] - stack.started_at, 1),
        "run_created_to_end_s": round(succeeded["endTime"] - succeeded["creationTime"], 1),
        "daemon_start_to_success_s": round(succeeded["endTime"] - stack.started_at, 1),
        "daemon_start_to_observed_s": round(first_seen - stack.started_at, 1),
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
    timings["daemon_start_to_first_tick_s"] = round(ticks[0]["timestamp"] - stack.started_at, 1)
    timings["ticks_before_launch"] = len(before)
    print(f"timings: {timings}")

    # --- never two reconcile runs in flight; no run created while the first was in flight ------
    assert max_in_flight <= 1 and not overlaps, f"overlapping in-flight runs: {overlaps}"
    runs = _runs(stack)
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
        # Sensor -> QueuedRunCoordinator (RUN_ENQUEUED) -> the daemon's run queue launches it.
        lifecycle = [
            e.get_dagster_event().event_type
            for e in instance.all_logs(
                run_id,
                of_type={
                    dg.DagsterEventType.RUN_ENQUEUED,
                    dg.DagsterEventType.RUN_STARTING,
                    dg.DagsterEventType.RUN_SUCCESS,
                },
            )
        ]
        assert lifecycle == [
            dg.DagsterEventType.RUN_ENQUEUED,
            dg.DagsterEventType.RUN_STARTING,
            dg.DagsterEventType.RUN_SUCCESS,
        ], f"run did not go through the run queue: {lifecycle}"
        evaluations = [
            e.get_dagster_event().event_specific_data
            for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
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
    expected = expected_snapshots(stack.home / "demo_app")
    stored = stored_snapshots(pipeline_db)
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
