"""Run monitoring with the preloaded run launcher (run_launcher.py), through Dagster's own
monitoring function on a real instance. Dagster fails a STARTED run on any worker health but
RUNNING or SUCCESS (dagster/_daemon/monitoring/run_monitoring.py, ``monitor_started_run``), so:
a run the launcher did not start (the CLI's, executed in its own process beside the daemon) must
be left alone, and one of its own whose worker is gone must be failed."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys

import dagster as dg
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from reconcile_pipeline.run_launcher import HOST_TAG, PID_TAG, PreloadedRunLauncher
from reconcile_pipeline_tests.support.processes import dagster_home

LAUNCHER = (
    "\nrun_launcher:\n  module: reconcile_pipeline.run_launcher\n  class: PreloadedRunLauncher\n"
)


@dg.op
def _noop() -> None:
    return None


@dg.job
def _job() -> None:
    _noop()


def _started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> str:
    run = instance.create_run_for_job(job_def=_job, tags=tags)
    instance.report_dagster_event(
        dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value, job_name=_job.name),
        run.run_id,
    )
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    return run.run_id


def _monitor(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    record = instance.get_run_record_by_id(run_id)
    monitor_started_run(instance, None, record, logging.getLogger("monitoring"))
    return instance.get_run_by_id(run_id).status


def test_monitoring_leaves_other_runs_alone_and_fails_a_dead_worker(tmp_path):
    home = dagster_home(tmp_path / "home")
    (home / "dagster.yaml").write_text((home / "dagster.yaml").read_text() + LAUNCHER)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_launcher, PreloadedRunLauncher)

        # The CLI's run: no worker pid of this launcher.
        cli_run = _started_run(instance, {})
        assert _monitor(instance, cli_run) == dg.DagsterRunStatus.STARTED

        # One of its own, whose worker has exited.
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        dead = _started_run(instance, {PID_TAG: str(gone.pid), HOST_TAG: socket.gethostname()})
        assert _monitor(instance, dead) == dg.DagsterRunStatus.FAILURE
