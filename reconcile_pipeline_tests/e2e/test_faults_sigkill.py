"""Runs SIGKILLed at several moments (real multiprocess runs in a fresh process, in their own
process group): when a git shard step has started, right after the upsert committed, and while
the upsert waits on a row lock (PostgreSQL). The table is untouched or fully updated, never half;
the killed run keeps its pool slots and the sensor waits, naming it, until run monitoring fails
it; then the next run converges (``support.faults``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from reconcile_pipeline.concurrency import POOL_LIMITS
from reconcile_pipeline.defs.reconciliation.sensor import reconciliation_sensor
from reconcile_pipeline.defs.resources import AppDatabase
from reconcile_pipeline_tests.support.databases import (
    PG_ADMIN_URL,
    scalar,
    sql,
)
from reconcile_pipeline_tests.support.expected import (
    consistency_problems,
    expected_snapshots,
    read_table,
)
from reconcile_pipeline_tests.support.faults import (
    assert_converged,
    copy_app,
    file_runtime,
)
from reconcile_pipeline_tests.support.processes import REPO, dagster_home, pipeline_env, wait_for
from reconcile_pipeline_tests.support.runs import (
    SHARD_STEP_PREFIX,
    add_project_partitions,
    open_instance,
    reconcile,
    resources,
)


class KilledRun:
    """A multiprocess reconcile run (support.runs's runner) in its own process group."""

    def __init__(self, env: dict, partition_range: str, log_dir: Path):
        self.out = open(log_dir / "run.out", "ab")  # noqa: SIM115 (closed in kill)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconcile_pipeline_tests.support.runs", "execute"]
            + ["--range", partition_range],
            env=env,
            cwd=REPO,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.proc.pid

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.out.close()
        # Every process of the run (runner, forkserver, step processes) is gone.
        wait_for(lambda: not _group_alive(self.pgid), 30, f"process group {self.pgid} to exit")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies of an exited group still count as members; reap ours, ignore what init reaps.
    return any(_pgid_of(pid) == pgid and not _zombie(pid) for pid in _pids())


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def new_run_id(home: Path, known: set[str]) -> str | None:
    with open_instance(home) as instance:
        runs = [r.run_id for r in instance.get_runs(limit=5) if r.run_id not in known]
    return runs[0] if runs else None


def started_steps(home: Path, run_id: str) -> set[str]:
    with open_instance(home) as instance:
        return {
            e.step_key for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
        }


def run_env(home: Path, app_path: Path, pipeline_url: str, runtime: Path) -> dict:
    return pipeline_env(
        home,
        RECONCILE_APP_DB_URL=f"sqlite:///{app_path}",
        RECONCILE_PIPELINE_DB_URL=pipeline_url,
        RECONCILE_SESSION_RUNTIME="file",
        RECONCILE_SESSION_RUNTIME_LOCATION=runtime,
    )


def _names_updated(url: str, app_path: Path) -> bool:
    conn = sqlite3.connect(app_path)
    names = dict(conn.execute('SELECT "id", "name" FROM "Workspace"'))
    conn.close()
    rows = read_table(url)
    return bool(rows) and all(r["name"] == names[w] for w, r in rows.items())


def check_after_kill(url: str, before: dict, app_path: Path) -> str:
    """Consistent rows; the batch applied entirely or not at all. Returns which."""
    after = read_table(url)
    assert after.keys() == before.keys(), "rows lost or added by a killed run"
    assert consistency_problems(after) == []
    for w, row in after.items():
        assert row["version"] >= before[w]["version"], w
    conn = sqlite3.connect(app_path)
    names = dict(conn.execute('SELECT "id", "name" FROM "Workspace"'))
    conn.close()
    updated = [w for w in after if after[w]["name"] == names[w]]
    if after == before:
        return "untouched"
    assert len(updated) == len(after), f"half a batch: {len(updated)} of {len(after)} rows"
    return "fully updated"


def held_pool_slot_runs(instance: dg.DagsterInstance) -> set[str]:
    return {
        slot.run_id
        for pool in POOL_LIMITS
        for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots
    }


def end_like_run_monitoring(instance: dg.DagsterInstance, run_id: str) -> None:
    """What run monitoring does to a dead worker's run: fail it, then (after
    free_slots_after_run_end_seconds) give back the pool slots it still held."""
    instance.report_run_failed(instance.get_run_by_id(run_id))
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_run_sigkilled_mid_way_leaves_a_consistent_table(demo24, tmp_path, backend, request):
    """SQLite: SIGKILL when a git shard step has started (git processes running), and right
    after the upsert committed (before the step reports its materialization).
    PostgreSQL: SIGKILL while the upsert holds row locks and waits (a psql process holds the
    last row), then release the lock. Then one more run converges."""
    demo = demo24
    url = (
        f"sqlite:///{tmp_path / 'pipeline.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    app_path = copy_app(demo, tmp_path)
    home = dagster_home(tmp_path / "home")
    env = run_env(home, app_path, url, demo.session_runtime_path)
    partition_range = add_project_partitions(home, app_path)
    res = resources(f"sqlite:///{app_path}", url, session_runtime=file_runtime(demo))
    with open_instance(home) as instance:
        assert reconcile(instance, res).success  # seed, in process

    moments = (
        [SHARD_STEP_PREFIX, "upsert_committed"]
        if backend == "sqlite"
        else ["upsert_waiting_on_row_lock"]
    )
    outcomes = []
    known: set[str] = set()
    with open_instance(home) as instance:
        known |= {r.run_id for r in instance.get_runs()}
    for n, moment in enumerate(moments):
        sql(app_path, f'UPDATE "Workspace" SET "name" = "name" || \' k{n}\'')
        before = read_table(url)
        holder = None
        if moment == "upsert_waiting_on_row_lock":
            last = sorted(before)[-1]
            pg = sa.make_url(url)
            holder = subprocess.Popen(
                ["psql", "-h", pg.host, "-p", str(pg.port or 5432), "-U", pg.username]
                + ["-d", pg.database, "-c"]
                + [
                    "BEGIN; SELECT 1 FROM workspace_snapshot "
                    f"WHERE workspace_id = '{last}' FOR UPDATE; SELECT pg_sleep(300);"
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        started = time.monotonic()
        run = KilledRun(env, partition_range, tmp_path)
        try:
            run_id = wait_for(lambda: new_run_id(home, known), 120, "the run to be created")
            known.add(run_id)
            if moment == "upsert_committed":
                # Right after the upsert's commit, before the step reports anything: the table
                # is new, Dagster has not recorded the materialization.
                wait_for(
                    lambda: _names_updated(url, app_path), 120, "the upsert commit", interval=0.01
                )
            elif holder is None:
                wait_for(
                    lambda m=moment, r=run_id: any(s.startswith(m) for s in started_steps(home, r)),
                    120,
                    f"step {moment} to start",
                    interval=0.02,
                )
            else:
                wait_for(
                    lambda: scalar(
                        PG_ADMIN_URL,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                        "AND wait_event_type = 'Lock'",
                        db=sa.make_url(url).database,
                    ),
                    120,
                    "the upsert to wait on the row lock",
                    interval=0.02,
                )
        finally:
            run.kill()
            if holder is not None:
                # Server side: a backend in pg_sleep would not notice its psql dying.
                scalar(
                    PG_ADMIN_URL,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND query LIKE '%pg_sleep(300)%' "
                    "AND pid <> pg_backend_pid()",
                    db=sa.make_url(url).database,
                )
                holder.kill()
                holder.wait(timeout=30)
        if holder is not None:
            # The killed client's backend finishes its lock wait and dies on its dead socket.
            wait_for(
                lambda: (
                    not scalar(
                        PG_ADMIN_URL,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                        "AND pid <> pg_backend_pid() AND state <> 'idle'",
                        db=sa.make_url(url).database,
                    )
                ),
                60,
                "the killed run's backend to go",
            )
        with open_instance(home) as instance:
            status = instance.get_run_by_id(run_id).status
            # A hard-killed worker keeps the pool slots it held: it never reports its end. (On a
            # loaded machine its step may have ended, and given its slot back, just before the
            # kill.) No other run holds one.
            assert held_pool_slot_runs(instance) <= {run_id}
            if n < len(moments) - 1:
                # Else the next run would wait for the killed run's git slots (up to
                # max_runtime_seconds); the last killed run is left for the sensor to see.
                end_like_run_monitoring(instance, run_id)
        outcome = check_after_kill(url, before, app_path)
        outcomes.append((moment, round(time.monotonic() - started, 1), status.value, outcome))

    with open_instance(home) as instance:
        # The killed runs stay STARTED: nothing reports a SIGKILLed run worker, and the default
        # run launcher has no worker health check. The sensor never overlaps a run in flight, so
        # it waits, naming the run, until run monitoring fails it (max_runtime_seconds).
        app_db = {"app_db": AppDatabase(url=f"sqlite:///{app_path}")}
        tick = reconciliation_sensor(dg.build_sensor_context(instance=instance, resources=app_db))
        assert isinstance(tick, dg.SkipReason), tick
        assert run_id in tick.skip_message and "STARTED" in tick.skip_message.upper()
        skip = tick.skip_message
        end_like_run_monitoring(instance, run_id)
        assert held_pool_slot_runs(instance) == set()
        tick = reconciliation_sensor(dg.build_sensor_context(instance=instance, resources=app_db))
        assert isinstance(tick, dg.SensorResult) and len(tick.run_requests) == 1, tick
        next_run = reconcile(instance, res, tags=dict(tick.run_requests[0].tags))
        assert next_run.success  # the next run
    assert_converged(url, expected_snapshots(app_path, demo.session_runtime_path))
    print(f"\nFAULT sigkill[{backend}]: {json.dumps(outcomes)}; sensor meanwhile: {skip!r}")
