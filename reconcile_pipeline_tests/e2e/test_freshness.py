"""A tick that never happens is noticed: workspace_snapshot's freshness policy, evaluated by the
real daemon, turns WARN and then FAIL when no run materializes the table (here the sensor is
stopped, as after an operator's mistake or with a stuck queue; windows shortened through the
settings), and the UI's GraphQL API shows the state.
"""

from __future__ import annotations

import os
import subprocess
import time

import dagster as dg
import pytest

from reconcile_pipeline_tests.support.processes import BIN, REPO, WORKSPACE_YAML, Stack
from reconcile_pipeline_tests.support.processes import dagster_home as make_home
from reconcile_pipeline_tests.support.runs import open_instance

pytestmark = pytest.mark.slow

SNAPSHOT = dg.AssetKey("workspace_snapshot")
WARN_S, FAIL_S = 60.0, 90.0  # Dagster's smallest windows are 1 minute
FRESHNESS_QUERY = """
query Freshness {
  assetNodes(assetKeys: [{path: ["workspace_snapshot"]}]) {
    freshnessStatusInfo { freshnessStatus }
  }
}
"""


def test_freshness_warns_then_fails_when_no_tick_comes(tmp_path):
    home = make_home(tmp_path / "home", ("dagster-daemon", "dagster-webserver", "dagster"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
    env.update(
        DAGSTER_HOME=str(home),
        PYTHONUNBUFFERED="1",
        RECONCILE_FRESHNESS_WARN_MINUTES=str(WARN_S / 60),
        RECONCILE_FRESHNESS_FAIL_MINUTES=str(FAIL_S / 60),
        FRESHNESS_DAEMON_INTERVAL_SECONDS="1",  # Dagster's: evaluate every second, not 30 s
    )
    cli = str(BIN / "reconcile-pipeline")
    dagster = str(BIN / "dagster")
    sensor_stop = [dagster, "sensor", "stop", "-w", str(WORKSPACE_YAML), "reconciliation_sensor"]
    for args in (
        [cli, "demo", "--workspaces", "20"],
        [dagster, "instance", "migrate"],
        [cli, "reconcile"],  # the last tick that happened
        sensor_stop,  # no tick will come
    ):
        done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    with open_instance(home) as instance:
        materialized = instance.get_latest_materialization_event(SNAPSHOT).timestamp

    stack = Stack(home=home, env=env)
    seen: list[tuple[float, str]] = []
    try:
        stack.start_daemon(tmp_path / "daemon.log")
        stack.start_webserver(tmp_path / "webserver.log")
        with open_instance(home) as instance:
            deadline = time.monotonic() + FAIL_S + 90
            while time.monotonic() < deadline:
                stack.check_alive()
                record = instance.event_log_storage.get_freshness_state_records([SNAPSHOT])
                if SNAPSHOT in record:
                    state = record[SNAPSHOT].freshness_state.value
                    if not seen or seen[-1][1] != state:
                        seen.append((round(time.time() - materialized, 1), state))
                    if state == "FAIL":
                        break
                time.sleep(0.5)
            assert not instance.get_runs(
                dg.RunsFilter(
                    job_name="reconcile_job",
                    statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED],
                )
            ), "a run was launched: the sensor was meant to be stopped"
        stack.wait_for_webserver(120)
        stack.wait_for_location(120)
        ui = stack.gql(FRESHNESS_QUERY)["assetNodes"][0]["freshnessStatusInfo"]
    finally:
        stack.stop_all()
        print(stack.logs())

    print(f"\nfreshness states (seconds since the last materialization, state): {seen}")
    states = [s for _, s in seen]
    assert states[-1] == "FAIL", seen
    assert "WARN" in states, seen
    age_at = {s: t for t, s in reversed(seen)}
    assert age_at["WARN"] >= WARN_S and age_at["FAIL"] >= FAIL_S, seen
    assert ui["freshnessStatus"] == "DEGRADED", ui  # how the UI names a failed freshness
