"""Real processes for the end-to-end tests: one environment for every subprocess of the
pipeline, fresh DAGSTER_HOMEs, commands, and long-running ``dagster-webserver`` /
``dagster-daemon`` processes in their own process groups with GraphQL against the webserver."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from reconcile_pipeline_tests.support.paths import REPO

BIN = Path(sys.executable).parent
WORKSPACE_YAML = REPO / "workspace.yaml"
SCREENSHOT_DIR = REPO / "test-artifacts" / "screenshots"
LOG_TAIL_LINES = 80


def pipeline_env(home: Path, **settings: str | os.PathLike[str]) -> dict[str, str]:
    """Environment for a pipeline subprocess: this process's, minus every RECONCILE_* and
    DAGSTER_* setting it may carry (they would point the code location elsewhere), plus
    DAGSTER_HOME and ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECONCILE_", "DAGSTER_")) and k != "GIT_PYTHON_GIT_EXECUTABLE"
    }
    env["DAGSTER_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: os.fspath(v) for k, v in settings.items()})
    return env


def require_tools(*tools: str) -> None:
    """Fail unless ``tools`` (in the venv) and git are installed."""
    for tool in tools:
        if not (BIN / tool).exists():
            pytest.fail(f"{BIN / tool} not found: install the project with `make setup`")
    if shutil.which("git") is None:
        pytest.fail("git is not installed")


def dagster_home(path: Path, tools: tuple[str, ...] = ()) -> Path:
    """A fresh DAGSTER_HOME at ``path`` with the project's dagster.yaml (never the repository's
    own home), after checking that ``tools`` (in the venv) and git are installed."""
    require_tools(*tools)
    path.mkdir(parents=True, exist_ok=True)
    assert path.resolve() != (REPO / "dagster_home").resolve()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", path / "dagster.yaml")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_command(
    args: list[str], env: Mapping[str, str], timeout: float = 300, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """A short-lived command from the repository root; with ``check`` a failure fails the test
    with its output."""
    proc = subprocess.run(
        args, cwd=REPO, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args[:3]))} exited with {proc.returncode}:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}",
            pytrace=False,
        )
    return proc


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


RUN_QUEUE_LIFECYCLE = [
    dg.DagsterEventType.RUN_ENQUEUED,
    dg.DagsterEventType.RUN_STARTING,
    dg.DagsterEventType.RUN_SUCCESS,
]


def assert_went_through_run_queue(instance: dg.DagsterInstance, run_id: str) -> None:
    """Sensor -> QueuedRunCoordinator (RUN_ENQUEUED) -> the daemon's run queue launched it."""
    lifecycle = [
        e.get_dagster_event().event_type
        for e in instance.all_logs(run_id, of_type=set(RUN_QUEUE_LIFECYCLE))
    ]
    assert lifecycle == RUN_QUEUE_LIFECYCLE, f"run did not go through the run queue: {lifecycle}"


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


def start(name: str, args: list[str], env: Mapping[str, str], log: Path) -> Proc:
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Own process group: code servers, run workers and executor children land in it too,
            # so teardown ends them all by group id (never by name).
            start_new_session=True,
        )
    return Proc(name, popen, log)


def stop(proc: Proc, grace_s: float = 20.0) -> None:
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


@dataclass
class Stack:
    """A webserver (and maybe a daemon) on one DAGSTER_HOME."""

    home: Path
    env: dict[str, str]
    url: str = ""
    procs: list[Proc] = field(default_factory=list)
    daemon_started_at: float = 0.0

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

    def start_webserver(self, log: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.procs.append(
            start(
                "dagster-webserver",
                [str(BIN / "dagster-webserver"), "-w", str(WORKSPACE_YAML)]
                + ["-h", "127.0.0.1", "-p", str(port)],
                self.env,
                log,
            )
        )

    def start_daemon(self, log: Path) -> None:
        self.daemon_started_at = time.time()
        self.procs.append(
            start(
                "dagster-daemon",
                [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE_YAML)],
                self.env,
                log,
            )
        )

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            stop(p)

    def wait_for_webserver(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5):  # noqa: S310
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1.0)
        self.fail(f"dagster-webserver did not answer on {self.url} within {timeout_s:.0f} s")

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

    def wait_for_location(self, timeout_s: float) -> str:
        """Wait until the code location is loaded; return its name (for UI URLs)."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                data = self.gql(LOCATIONS_QUERY)["workspaceOrError"]
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = exc
                time.sleep(1.0)
                continue
            last = data
            for entry in data.get("locationEntries", []):
                location = entry["locationOrLoadError"]
                if location and location["__typename"] == "PythonError":
                    self.fail(f"code location {entry['name']} failed to load: {location}")
                if location and location["__typename"] == "RepositoryLocation":
                    return location["name"]
            time.sleep(1.0)
        self.fail(f"code location not loaded within {timeout_s:.0f} s: {last}")
        raise AssertionError  # unreachable

    def runs(self, job: str) -> list[dict]:
        data = self.gql(RUNS_QUERY, {"filter": {"pipelineName": job}})["runsOrError"]
        if data["__typename"] != "Runs":
            self.fail(f"runsOrError: {data}")
        return data["results"]

    def run_errors(self, run_id: str) -> str:
        data = self.gql(RUN_ERRORS_QUERY, {"runId": run_id})["runOrError"]
        if data["__typename"] != "Run":
            return str(data)
        lines = [
            json.dumps(event)[:3000]
            for event in data["eventConnection"]["events"]
            if event.get("error") or event.get("level") in ("ERROR", "CRITICAL")
        ]
        return "\n".join(lines[-20:]) or "(no error events)"

    def wait_for_successful_run(self, job: str, timeout_s: float, since: float) -> dict:
        """Poll GraphQL until a run of ``job`` succeeds; fail at once if one fails."""
        deadline = since + timeout_s
        history: dict[str, list[str]] = {}
        while True:
            self.check_alive()
            if time.time() > deadline:
                self.fail(
                    f"no successful {job} run within {timeout_s:.0f} s; runs seen (status "
                    f"history): {history}"
                )
            try:
                runs = self.runs(job)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1.0)
                continue
            for run in runs:
                seen = history.setdefault(run["runId"], [])
                if not seen or seen[-1] != run["status"]:
                    seen.append(run["status"])
            failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
            if failed:
                self.fail(
                    f"{job} run {failed[0]['runId']} ended {failed[0]['status']}:\n"
                    f"{self.run_errors(failed[0]['runId'])}"
                )
            done = [r for r in runs if r["status"] == "SUCCESS"]
            if done:
                return min(done, key=lambda r: r["creationTime"])
            time.sleep(1.0)


LOCATIONS_QUERY = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation { name repositories { name } }
        }
      }
    }
  }
}
"""

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

CHECKS_QUERY = """
query Checks($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 20) {
    runId
    status
    evaluation { success checkName description }
  }
}
"""
