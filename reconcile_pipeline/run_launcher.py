"""A run launcher for one machine that starts a run without importing Dagster and the code
location again: each run still gets a process of its own, forked from a server process that
imported them once (``multiprocessing``'s forkserver, as the multiprocess executor does for
steps), instead of a freshly spawned interpreter per run (Dagster's DefaultRunLauncher: the code
server spawns one, about 2.4 CPU-s of imports each time).

Configured in ``dagster.yaml`` (docs/DEPLOYMENT.md says where to use which launcher)::

    run_launcher:
      module: reconcile_pipeline.run_launcher
      class: PreloadedRunLauncher

What a launcher owes Dagster, and how this one does it:

- isolation: one process per run; a run that crashes takes nothing else down;
- the run queue: unchanged (the daemon's run coordinator calls ``launch_run``);
- cancellation: the process that launched the run sets the run's termination event; any other
  process (the webserver's Terminate button) sends SIGINT to the run's pid (run tag
  ``reconcile/run_worker_pid``), which Dagster turns into the same graceful interruption;
- run monitoring: ``check_run_worker_health`` looks the pid up on this host: a run still STARTED
  whose process is gone is failed by the monitoring daemon; a run this launcher did not start
  (the CLI's, executed in its own process) is left to the run timeouts.

Runs execute on the machine of the process that launches them (the daemon's): for runs on other
machines use Dagster's own launchers (DefaultRunLauncher with a code server, dagster-k8s, ...).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from reconcile_pipeline.dagster_internals import (
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    DagsterLaunchFailedError,
    ExecuteExternalJobArgs,
    IPCErrorMessage,
    LaunchRunContext,
    RunInSubprocessComplete,
    RunLauncher,
    StartRunInSubprocessSuccessful,
    WorkerStatus,
    recon_job_from_origin,
    serialize_value,
    start_run_in_subprocess,
)

PID_TAG = "reconcile/run_worker_pid"
HOST_TAG = "reconcile/run_worker_host"
DEFAULT_PRELOAD = ("reconcile_pipeline.definitions",)
_START_TIMEOUT_S = 120.0


class PreloadedRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        preload_modules: Sequence[str] = DEFAULT_PRELOAD,
    ) -> None:
        self._inst_data = inst_data
        self.preload_modules = list(preload_modules)
        self._context: Any = None
        self._lock = threading.Lock()
        self._running: dict[str, tuple[Any, Any]] = {}  # run_id -> (process, termination event)
        super().__init__()

    # -- ConfigurableClass -------------------------------------------------------------------

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {
            "preload_modules": dg.Field(
                [str],
                is_required=False,
                default_value=list(DEFAULT_PRELOAD),
                description="Modules the server imports once; every run is forked from it.",
            )
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> PreloadedRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    # -- launching -----------------------------------------------------------------------------

    def _mp(self):
        with self._lock:
            if self._context is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(self.preload_modules)
                self._context = context
            return self._context

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise dg.DagsterInvariantViolationError(f"run {run.run_id} has no job code origin")
        mp = self._mp()
        messages, termination = mp.Queue(), mp.Event()
        args = ExecuteExternalJobArgs(
            job_origin=run.remote_job_origin,
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
        )
        process = mp.Process(
            target=start_run_in_subprocess,
            args=(serialize_value(args), recon_job_from_origin(origin), messages, termination),
        )
        process.start()
        self._instance.add_run_tags(
            run.run_id, {PID_TAG: str(process.pid), HOST_TAG: socket.gethostname()}
        )
        self._wait_until_started(run.run_id, process, messages)
        with self._lock:
            self._running[run.run_id] = (process, termination)
        threading.Thread(
            target=self._reap, args=(run.run_id, process, messages), daemon=True
        ).start()

    def _wait_until_started(self, run_id: str, process, messages) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                message = messages.get(timeout=0.1)
            except queue.Empty:
                if not process.is_alive():
                    raise DagsterLaunchFailedError(
                        f"run worker for {run_id} exited with code {process.exitcode} at start"
                    ) from None
                continue
            if isinstance(message, StartRunInSubprocessSuccessful):
                return
            if isinstance(message, IPCErrorMessage):
                raise DagsterLaunchFailedError(
                    message.message, serializable_error_info=message.serializable_error_info
                )
        raise DagsterLaunchFailedError(f"run worker for {run_id} did not start in time")

    def _reap(self, run_id: str, process, messages) -> None:
        """Drain the worker's last messages (so it can exit) and forget it once it has."""
        while True:
            try:
                if isinstance(messages.get(timeout=1.0), RunInSubprocessComplete):
                    break
            except queue.Empty:
                if not process.is_alive():
                    break
        process.join()
        with self._lock:
            self._running.pop(run_id, None)

    # -- cancelling and monitoring ---------------------------------------------------------------

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        with self._lock:
            launched_here = self._running.get(run_id)
        if launched_here is not None:
            launched_here[1].set()
            return True
        pid = _pid(run)
        if pid is None or run.tags.get(HOST_TAG) != socket.gethostname() or not _alive(pid):
            self._instance.report_engine_event(
                "Cannot reach the run worker to terminate it: no live process on this host.",
                run,
                cls=self.__class__,
            )
            return False
        os.kill(pid, signal.SIGINT)  # Dagster's interrupt handling ends the run as CANCELED
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        pid = _pid(run)
        if pid is None or run.tags.get(HOST_TAG) != socket.gethostname():
            # Not launched here (a `reconcile-pipeline reconcile` or `dg launch` run executes in
            # its own process; or another host's): nothing to look at. Run monitoring fails a run
            # on any status but RUNNING or SUCCESS, so say RUNNING and leave it to the timeouts,
            # as with Dagster's own launcher, which checks no worker health at all.
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, "not launched by this launcher: left to the run timeouts"
            )
        if _alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process {pid} is gone", run_worker_id=str(pid)
        )

    def join(self, timeout: int = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return
            time.sleep(0.1)

    def dispose(self) -> None:
        # Runs are left to finish: a stopping daemon does not cancel them (as with Dagster's own
        # launcher, whose code server outlives a daemon restart).
        with self._lock:
            self._running.clear()


def _pid(run: dg.DagsterRun) -> int | None:
    value = run.tags.get(PID_TAG)
    return int(value) if value and value.isdigit() else None


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a worker that ended but was not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
