"""End to end: `reconcile-pipeline dev` (what `make dev` runs) starts the UI and the daemon over
one code server of its own, the sensor's run succeeds through it, and stopping the command
stops every process it started: none is left behind to keep costing CPU."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from reconcile_pipeline_tests.support.processes import (
    BIN,
    Stack,
    dagster_home,
    free_port,
    pipeline_env,
    run_command,
    start,
    stop,
    wait_for,
)

pytestmark = pytest.mark.slow

JOB = "reconcile_job"
DEMO_WORKSPACES = 12


def _session(sid: int) -> dict[int, str]:
    """pid -> command line of every live process in session ``sid``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found[int(entry)] = cmdline
    return found


def test_dev_serves_the_sensor_from_one_code_server_and_stops_everything(tmp_path):
    home = dagster_home(tmp_path / "dagster_home", ("dagster", "reconcile-pipeline"))
    env = pipeline_env(home)
    run_command(
        [str(BIN / "reconcile-pipeline"), "demo", "--workspaces", str(DEMO_WORKSPACES)], env
    )
    run_command([str(BIN / "dagster"), "instance", "migrate"], env)

    port = free_port()
    started = time.time()
    dev = start(
        "reconcile-pipeline dev",
        [str(BIN / "reconcile-pipeline"), "dev", "-p", str(port)],
        env,
        tmp_path / "dev.log",
    )
    stack = Stack(home=home, env=env, url=f"http://127.0.0.1:{port}", procs=[dev])
    try:
        stack.wait_for_webserver(180)
        assert stack.wait_for_location(120) == "reconcile_pipeline"
        # The sensor is on by default: its first tick's run goes through the code server.
        stack.wait_for_successful_run(JOB, 240, since=started)
        with sqlite3.connect(home / "pipeline.db") as db:
            (rows,) = db.execute("SELECT count(*) FROM workspace_snapshot").fetchone()
        assert rows > 0

        commands = list(_session(dev.popen.pid).values())
        servers = [c for c in commands if " api grpc " in c]
        assert len(servers) == 1, commands
        assert "--socket" in servers[0]
        assert not [c for c in commands if "code-server start" in c], commands
        assert [c for c in commands if "dagster_webserver" in c], commands
        assert [c for c in commands if "dagster._daemon run" in c], commands

        # SIGTERM to the command alone (a supervisor stopping it): it stops what it started.
        os.kill(dev.popen.pid, signal.SIGTERM)
        assert dev.popen.wait(timeout=120) == 0
        # dg dev's shutdown is graceful first (30 s), then its process group is killed.
        wait_for(lambda: not _session(dev.popen.pid), 90, "every process to end", 0.5)
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stop(dev)
