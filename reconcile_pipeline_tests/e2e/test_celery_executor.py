"""Real runs on dagster-celery: a real broker, separate ``dagster-celery worker start`` processes,
the git shard steps on their own queue served by one worker with 3 slots. (How the executor is
chosen by configuration is ``unit/test_executors.py``.)

Twice: SQLite instance + Redis broker/backend, and PostgreSQL instance (deploy/postgres/dagster.yaml) + RabbitMQ with rpc://
  results. A 30-workspace demo app, a fresh DAGSTER_HOME, two real workers (default queue, 2
  slots; git queue, 3 slots), a git that sleeps 0.2 s a call and logs which worker process ran
  it, 6 shards. The run succeeds, the snapshot table equals independently computed expectations,
  every git shard step ran in the git worker (Dagster's "in celery worker" engine events, the git
  calls' parent processes) and nothing else did, the shard steps' windows in the event log
  overlap 2 or 3 deep, and the git pool let no more than 3 shards be queued or running at once.

Per test run: unique queue and worker names (and a random Redis DB, 1-15), queues purged before
the run and deleted after; the workers are killed (their process groups) in teardown.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from reconcile_pipeline.concurrency import GIT_LIMIT
from reconcile_pipeline.demo.build import build_demo_app, demo_session_runtime
from reconcile_pipeline_tests.support.expected import (
    expected_snapshots,
    read_table,
    table_differences,
)
from reconcile_pipeline_tests.support.processes import BIN, REPO, dagster_home, pipeline_env
from reconcile_pipeline_tests.support.runs import (
    CHECK_NAMES,
    SHARD_STEP_PREFIX,
    add_project_partitions,
    check_evaluations,
    execute,
    max_overlap,
    open_instance,
    step_windows,
)

REAL_GIT = shutil.which("git")
REDIS_BASE_URL = os.environ.get("RECONCILE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
RABBITMQ_URL = os.environ.get(
    "RECONCILE_TEST_RABBITMQ_URL", "pyamqp://guest:guest@127.0.0.1:5672//"
)
WORKER_READY_TIMEOUT_S = 90.0
GIT_WORKER_SLOTS = 3


@dataclass
class Worker:
    role: str
    node: str  # Celery node name (name@host), as in the "in celery worker" engine events
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start_worker(
    role: str, queue: str, slots: int, config_yaml: Path, env: dict[str, str], logs: Path
) -> Worker:
    name = f"reconcile-{role}-{uuid.uuid4().hex[:8]}"
    log = logs / f"worker-{role}.log"
    args = [
        str(BIN / "dagster-celery"),
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(config_yaml),
        "-q",
        queue,
        "-n",
        name,
        # Imported once in the worker's main process, before the pool forks.
        "-i",
        "reconcile_pipeline.definitions",
        "-i",
        "reconcile_pipeline_tests.support.runs",
        "-l",
        "INFO",
        "--",
        "--concurrency",
        str(slots),
        "--pool",
        "prefork",
        "--without-mingle",
        "--without-gossip",
    ]
    worker_env = {**env, "RECONCILE_TEST_WORKER": role}
    with log.open("wb") as out:
        popen = subprocess.Popen(
            args,
            env=worker_env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown kills the whole tree
        )
    return Worker(role, f"{name}@{os.uname().nodename}", popen, log)


def wait_ready(workers: list[Worker], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(workers)
    while pending:
        for worker in list(pending):
            if worker.popen.poll() is not None:
                pytest.fail(f"{worker.role} worker exited early:\n{worker.tail()}")
            if f"{worker.node} ready." in worker.log.read_text(errors="replace"):
                pending.remove(worker)
        if pending and time.monotonic() > deadline:
            pytest.fail(
                "workers not ready in time:\n"
                + "\n".join(f"--- {w.role}\n{w.tail()}" for w in pending)
            )
        time.sleep(0.2)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_worker(worker: Worker, grace_s: float = 15.0) -> None:
    """SIGTERM to the worker's process group (CLI, celery main, pool: warm shutdown), then
    SIGKILL to whatever of the group is left after ``grace_s``."""
    pgid = worker.popen.pid  # start_new_session: the group id is the CLI's pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_alive(pgid) and time.monotonic() < deadline:
        worker.popen.poll()  # reap the CLI, so it does not linger as a zombie
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.popen.wait(timeout=5)


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state


def ancestors(pid: int) -> list[int]:
    chain = []
    while (parent := parent_pid(pid)) not in (None, 0):
        chain.append(parent)
        pid = parent
    return chain


def logging_slow_git(directory: Path) -> tuple[Path, Path]:
    """A git that sleeps 0.2 s a call and logs '<subcommand> <worker role> <parent pid>'."""
    directory.mkdir()
    log = directory / "calls.log"
    script = directory / "git"
    script.write_text(
        "#!/bin/bash\nsleep 0.2\n"
        f'echo "$1 ${{RECONCILE_TEST_WORKER:-none}} $PPID" >> "{log}"\n'
        f'exec "{REAL_GIT}" "$@"\n'
    )
    script.chmod(0o755)
    return script, log


@contextlib.contextmanager
def broker_queues(url: str, queues: list[str]) -> Iterator[None]:
    """Purge the queues before the test and delete them afterwards (kombu: Redis or AMQP)."""
    from kombu import Connection

    def each(operation: str) -> None:
        with Connection(url, connect_timeout=5) as conn:
            for queue in queues:
                # A fresh channel each time: AMQP closes the channel on a missing queue.
                with contextlib.suppress(conn.channel_errors), conn.channel() as channel:
                    getattr(channel, operation)(queue)

    try:
        with Connection(url, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the broker is not reachable at {url}: {exc}")
        pytest.skip(f"the broker is not reachable at {url}")
    each("queue_purge")
    try:
        yield
    finally:
        each("queue_delete")
        if url.startswith("redis"):  # kombu's Redis transport also keeps binding sets per queue
            import redis

            with redis.Redis.from_url(url, socket_timeout=5) as client:
                for queue in queues:
                    client.delete(
                        f"_kombu.binding.{queue}",
                        f"_kombu.binding_permanent.{queue}",
                        *client.scan_iter(match=f"{queue}*"),  # its priority lists
                    )


def executions_by_step(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """step key -> Celery worker node, from the "Executing steps ... in celery worker" events
    that the worker itself writes."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        metadata = entry.dagster_event.event_specific_data.metadata or {}
        if "Celery worker" in metadata:
            out[entry.step_key] = metadata["Celery worker"].value
    return out


def submissions_by_step(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[str, float]]:
    """step key -> (queue, time), from the executor's "Submitting celery task" events."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        message = entry.dagster_event.message or ""
        if message.startswith("Submitting celery task for step"):
            queue = message.rsplit('to queue "', 1)[1].rstrip('".')
            out[entry.step_key] = (queue, entry.timestamp)
    return out


def instance_home(tmp_path: Path, storage: str, request, monkeypatch) -> tuple[Path, dict]:
    """A fresh DAGSTER_HOME: the embedded SQLite instance (dagster_home/dagster.yaml), or the
    production one (deploy/postgres/dagster.yaml) on a throwaway PostgreSQL database. Returns the
    home and the environment its dagster.yaml reads (also set in this process)."""
    if storage == "sqlite":
        return dagster_home(tmp_path / "home"), {}
    import sqlalchemy as sa

    url = sa.engine.make_url(request.getfixturevalue("pg_url"))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    pg_env = {
        "DAGSTER_PG_USERNAME": url.username or "",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_DB": url.database or "",
    }
    for key, value in pg_env.items():
        monkeypatch.setenv(key, value)
    return home, pg_env


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("instance_storage", "broker_kind"),
    [("sqlite", "redis"), ("postgres", "rabbitmq")],  # the embedded shape, the production shape
)
def test_celery_run_routes_git_shards_to_the_git_worker(
    tmp_path, instance_storage, broker_kind, request, monkeypatch
):
    run_id = uuid.uuid4().hex[:10]
    if broker_kind == "redis":
        broker = backend = f"{REDIS_BASE_URL}/{random.randint(1, 15)}"
    else:
        broker, backend = RABBITMQ_URL, "rpc://"
    git_queue = f"reconcile_git_{run_id}"
    default_queue = f"reconcile_default_{run_id}"

    app = build_demo_app(tmp_path / "demo", workspaces=30)
    demo_session_runtime(app)
    expected = expected_snapshots(app.app_db_path, app.session_runtime_path)
    git, calls_log = logging_slow_git(tmp_path / "slowbin")

    home, instance_env = instance_home(tmp_path, instance_storage, request, monkeypatch)
    db = tmp_path / "pipeline.db"
    env = pipeline_env(
        home,
        **instance_env,
        RECONCILE_APP_DB_URL=app.app_db_url,
        RECONCILE_PIPELINE_DB_URL=f"sqlite:///{db}",
        RECONCILE_SESSION_RUNTIME="file",
        RECONCILE_SESSION_RUNTIME_LOCATION=app.session_runtime_path,
        RECONCILE_GIT_MAX_SHARDS="6",
        RECONCILE_GIT_MIN_SHARD_SIZE="1",
        RECONCILE_EXECUTOR="celery",
        RECONCILE_CELERY_BROKER=broker,
        RECONCILE_CELERY_BACKEND=backend,
        RECONCILE_CELERY_GIT_QUEUE=git_queue,
        RECONCILE_CELERY_DEFAULT_QUEUE=default_queue,
        GIT_PYTHON_GIT_EXECUTABLE=git,
        # The venv's bin first: the dagster-celery CLI starts `celery` from PATH.
        PATH=os.pathsep.join([str(git.parent), str(BIN), os.environ["PATH"]]),
    )
    partition_range = add_project_partitions(home, app.app_db_path)
    # The worker config: the same block as the executor's run config (`execution: config:`).
    config_yaml = tmp_path / "celery.yaml"
    # Results are read within a second of being written: let them expire soon after.
    config_yaml.write_text(
        f"execution:\n  config:\n    broker: {broker}\n    backend: {backend}\n"
        "    config_source:\n      result_expires: 300\n"
    )

    workers: list[Worker] = []
    with broker_queues(broker, [git_queue, default_queue]):
        try:
            default_worker = start_worker("default", default_queue, 2, config_yaml, env, tmp_path)
            workers.append(default_worker)
            git_worker = start_worker(
                "git", git_queue, GIT_WORKER_SLOTS, config_yaml, env, tmp_path
            )
            workers.append(git_worker)
            started = time.perf_counter()
            wait_ready(workers, WORKER_READY_TIMEOUT_S)
            ready_s = time.perf_counter() - started

            result = execute({**env, "RECONCILE_TEST_WORKER": "orchestrator"}, partition_range)
            assert result["success"], result["stderr"][-5000:] + "".join(
                f"\n--- {w.role} worker\n{w.tail()}" for w in workers
            )

            # Which worker processes ran git (while the workers are still alive).
            calls = [line.split() for line in calls_log.read_text().splitlines()]
            # Every git call but `git version` (GitPython probes it when imported, anywhere).
            git_calls = [c for c in calls if c[0] != "version"]
            git_pids = {int(c[2]) for c in git_calls}
            lineage = {pid: ancestors(pid) for pid in git_pids}
        finally:
            for worker in workers:
                stop_worker(worker)

    with open_instance(home) as instance:
        run = instance.get_run_by_id(result["run_id"])
        windows = step_windows(instance, result["run_id"])
        ran_on = executions_by_step(instance, result["run_id"])
        queued_on = submissions_by_step(instance, result["run_id"])
        checks = check_evaluations(instance, result["run_id"])
        events = len(instance.all_logs(result["run_id"]))

    shard_steps = sorted(k for k in windows if k.startswith(SHARD_STEP_PREFIX))
    other_steps = sorted(k for k in windows if not k.startswith(SHARD_STEP_PREFIX))
    overlap = max_overlap([windows[k] for k in shard_steps])
    shard_s = max(windows[k][1] for k in shard_steps) - min(windows[k][0] for k in shard_steps)
    print(
        f"\ncelery run ({instance_storage} instance, {broker_kind} broker): "
        f"execute_job {result['duration_s']} s, whole process {result['process_s']} s, "
        f"workers ready in {ready_s:.1f} s; steps {len(windows)} "
        f"(shards {len(shard_steps)}), max shard overlap {overlap}, shard phase {shard_s:.2f} s, "
        f"git calls {len(git_calls)} from {len(git_pids)} git-worker processes, "
        f"event-log rows {events}"
    )

    # The run, its table and its checks.
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.job_name == "reconcile_job"
    stored = read_table(db)
    assert len(stored) == len(expected) == app.active_workspaces
    assert table_differences(stored, expected) == []
    assert set(checks) == CHECK_NAMES
    assert checks["table_matches_authoritative"].passed and checks["no_stale_entries"].passed

    # Routing: shard steps were queued on the git queue and executed by the git worker; every
    # other step on the default queue and worker.
    assert len(shard_steps) == 6
    assert {queued_on[k][0] for k in shard_steps} == {git_queue}
    assert {queued_on[k][0] for k in other_steps} == {default_queue}
    assert {ran_on[k] for k in shard_steps} == {git_worker.node}
    assert {ran_on[k] for k in other_steps} == {default_worker.node}
    # ...and the git processes were children of the git worker's pool processes only.
    assert {c[1] for c in git_calls} == {"git"}, sorted({c[1] for c in git_calls})
    assert sum(c[0] in ("status", "diff") for c in git_calls) >= 2 * app.worktrees
    assert 1 <= len(git_pids) <= GIT_WORKER_SLOTS
    for pid, chain in lineage.items():
        assert git_worker.popen.pid in chain, (pid, chain)
        assert default_worker.popen.pid not in chain, (pid, chain)

    # The cap: 3 git slots in total, and they were used in parallel. The celery executor has no
    # step limit of its own; the git pool (3 slots, shared by every run of the instance) is what
    # lets a shard be queued: never more than 3 shards queued or running at once.
    assert 2 <= overlap <= GIT_WORKER_SLOTS, overlap
    for k in shard_steps:
        at = queued_on[k][1]
        in_flight = [j for j in shard_steps if queued_on[j][1] <= at < windows[j][1]]
        assert len(in_flight) <= GIT_LIMIT, (k, in_flight)
    assert max(queued_on[k][1] for k in shard_steps) > min(windows[k][1] for k in shard_steps)
