"""The preloaded run launcher under a real daemon (run_launcher.py): runs from the queue succeed,
each in its own process forked from the preloaded server; a run is cancelled from another
process (as the webserver's Terminate button does); a run whose worker was killed is seen as
failed by run monitoring's health check."""

from __future__ import annotations

import http.server
import os
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from reconcile_pipeline.demo.build import build_demo_app
from reconcile_pipeline.run_launcher import HOST_TAG, PID_TAG, PreloadedRunLauncher
from reconcile_pipeline_tests.support.processes import (
    BIN,
    Stack,
    dagster_home,
    pipeline_env,
    run_command,
)

pytestmark = pytest.mark.slow

LAUNCHER = (
    "\nrun_launcher:\n  module: reconcile_pipeline.run_launcher\n  class: PreloadedRunLauncher\n"
)
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


class SlowRuntime:
    """A session runtime server that answers after ``delay_s``: the reconcile step waits on it,
    long enough to terminate the run in the middle."""

    def __init__(self, delay_s: float) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                time.sleep(delay_s)
                body = b'{"sessions": {}}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/runtime"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _home(tmp_path: Path, **settings) -> tuple[Path, dict]:
    home = dagster_home(tmp_path / "home", ("dagster-daemon", "reconcile-pipeline"))
    (home / "dagster.yaml").write_text((home / "dagster.yaml").read_text() + LAUNCHER)
    app = build_demo_app(tmp_path / "demo", workspaces=30, seed=4)
    env = pipeline_env(home, RECONCILE_APP_DB_URL=app.app_db_url, **settings)
    run_command([str(BIN / "dagster"), "instance", "migrate"], env)
    return home, env


def _runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(), limit=100)]


def _wait(home: Path, stack: Stack, predicate, timeout_s: float = 180.0) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.check_alive()
        for run in _runs(home):
            if predicate(run):
                return run
        time.sleep(0.5)
    stack.fail("no run in the expected state")
    raise AssertionError


def test_queued_runs_run_in_forked_workers_and_succeed(tmp_path):
    home, env = _home(tmp_path)
    stack = Stack(home=home, env=env)
    try:
        stack.start_daemon(tmp_path / "daemon.log")
        first = _wait(home, stack, lambda r: r.status in FINISHED)
        second = _wait(home, stack, lambda r: r.run_id != first.run_id and r.status in FINISHED)
    finally:
        stack.stop_all()
    for run in (first, second):
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        assert int(run.tags[PID_TAG]) > 0 and run.tags[HOST_TAG]
    assert first.tags[PID_TAG] != second.tags[PID_TAG]  # a process per run
    with dg.DagsterInstance.from_config(str(home)) as instance:
        events = [e.message for e in instance.all_logs(second.run_id) if e.message]
    assert any("Started process for run" in m for m in events)


def test_a_run_is_cancelled_from_another_process_and_a_dead_worker_is_seen(tmp_path):
    runtime = SlowRuntime(delay_s=20)
    home, env = _home(
        tmp_path,
        RECONCILE_SESSION_RUNTIME="http",
        RECONCILE_SESSION_RUNTIME_LOCATION=runtime.url,
    )
    stack = Stack(home=home, env=env)
    try:
        stack.start_daemon(tmp_path / "daemon.log")
        running = _wait(home, stack, lambda r: r.status == dg.DagsterRunStatus.STARTED)
        pid = int(running.tags[PID_TAG])
        time.sleep(2)  # into the run's steps
        with dg.DagsterInstance.from_config(str(home)) as instance:
            launcher = PreloadedRunLauncher()
            launcher.register_instance(instance)
            health = launcher.check_run_worker_health(instance.get_run_by_id(running.run_id))
            assert health.status.value == "RUNNING", health
            # This test process did not launch it: the Terminate path of the webserver.
            assert launcher.terminate(running.run_id)
        cancelled = _wait(home, stack, lambda r: r.run_id == running.run_id and r.is_finished)
        assert cancelled.status == dg.DagsterRunStatus.CANCELED, cancelled.status
        _wait_gone(pid)

        # The next tick's run: its worker is killed outright; the health check sees it gone.
        victim = _wait(
            home,
            stack,
            lambda r: r.run_id != running.run_id and r.status == dg.DagsterRunStatus.STARTED,
        )
        victim_pid = int(victim.tags[PID_TAG])
        os.kill(victim_pid, signal.SIGKILL)
        _wait_gone(victim_pid)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            launcher = PreloadedRunLauncher()
            launcher.register_instance(instance)
            health = launcher.check_run_worker_health(instance.get_run_by_id(victim.run_id))
        assert health.status.value == "FAILED" and str(victim_pid) in health.msg
    finally:
        stack.stop_all()
        runtime.close()


def _wait_gone(pid: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.2)
    raise AssertionError(f"process {pid} still alive")
