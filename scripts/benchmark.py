"""Reconcile benchmark: the floor, the seed's method and this pipeline, side by side in one run.

    .venv/bin/python scripts/benchmark.py --sizes 100,1000,5000 --markdown /tmp/bench.md

For each size it builds a demo app (real git worktrees), then measures, each in a fresh process:
- floor: one DB read, the two necessary git commands per worktree 3 at a time, one batch write;
- seed: the original service's per-worktree sequence (status, merge-base against
  origin/<default> then <default>, numstat, name-only; 3 at a time) and one upsert per row;
- pipeline: `reconcile-pipeline reconcile` (the job the sensor launches, with the executor the
  sensor chooses for the fleet, real instance), first on an empty table, then again with nothing
  changed; on the embedded default instance (SQLite), then on the production instance
  (PostgreSQL, deploy/postgres), in a throwaway database, when a server answers at --postgres;
- pipeline_daemon (at --daemon-sizes): the production path, `dagster-daemon run` started, its
  sensor's tick queued a run, the run queue launched it, it succeeded: wall from the tick's
  start to the run's end, CPU of the daemon's process tree in that window.
Every method runs --repeat times per size, interleaved; the table shows the median run and the
wall time of each. Wall time, CPU time (user+sys of the whole process tree), peak RSS of the
largest process.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_ENV = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
WORKERS = 3


# -- the work being measured (runs in a child process) ---------------------------------------


_READ = (
    'SELECT w."id", w."projectId", w."worktreePath", p."defaultBranch", w."name", w."status", '
    '(SELECT MAX(s."updatedAt") FROM "{sessions}" s WHERE s."workspaceId" = w."id") '
    'FROM "Workspace" w JOIN "Project" p ON p."id" = w."projectId" '
    'WHERE w."status" <> \'ARCHIVED\' AND NOT p."isArchived"'
)
# The agent sessions' table per schema generation of the app (the demo builds the current one).
_READS = {table: _READ.replace("{sessions}", table) for table in ("ClaudeSession", "AgentSession")}


def _read_app_db(app_db: Path) -> list[tuple]:
    """The one DB read: every non-archived workspace with its project's default branch."""
    with sqlite3.connect(f"file:{app_db}?mode=ro", uri=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        return conn.execute(
            _READS["ClaudeSession" if "ClaudeSession" in tables else "AgentSession"]
        ).fetchall()


def _git(path: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", path, *args], capture_output=True, env=GIT_ENV, check=False)


def _has_ref(path: str, ref: str) -> bool:
    common = Path(path) / ".git"
    if common.is_file():  # linked worktree: .git file -> gitdir -> commondir
        gitdir = Path(common.read_text().split(":", 1)[1].strip())
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
    if (common / ref).exists():
        return True
    packed = common / "packed-refs"
    return packed.exists() and f" {ref}\n" in packed.read_text()


def _numstat(out: bytes) -> tuple[int, int, int]:
    files = adds = dels = 0
    for line in out.decode(errors="replace").splitlines():
        a, d, _ = line.split("\t", 2)
        files += 1
        adds += int(a) if a != "-" else 0
        dels += int(d) if d != "-" else 0
    return files, adds, dels


def floor_one(row: tuple) -> tuple[int, tuple | None]:
    _, _, path, branch, *_ = row
    if not path or not os.path.isdir(path):
        return 0, None
    status = _git(path, "status", "--porcelain")
    ref = f"origin/{branch}" if _has_ref(path, f"refs/remotes/origin/{branch}") else branch
    diff = _git(path, "diff", "--numstat", "--merge-base", ref)
    if status.returncode or diff.returncode:
        return 2, None
    return 2, (*_numstat(diff.stdout), bool(status.stdout.strip()))


def seed_one(row: tuple) -> tuple[int, tuple | None]:
    _, _, path, branch, *_ = row
    if not path or not os.path.isdir(path):
        return 0, None
    calls = 1
    status = _git(path, "status", "--porcelain")
    base = None
    for ref in (f"origin/{branch}", branch):
        calls += 1
        mb = _git(path, "merge-base", "HEAD", ref)
        if mb.returncode == 0:
            base = mb.stdout.decode().strip()
            break
    numstat = _git(path, "diff", "--numstat", *([base] if base else []))
    names = _git(path, "diff", "--name-only", *([base] if base else []))
    calls += 2
    if status.returncode or numstat.returncode:
        return calls, None
    _, adds, dels = _numstat(numstat.stdout)
    total = len(names.stdout.decode(errors="replace").splitlines())
    return calls, (total, adds, dels, bool(status.stdout.strip()))


def run_floor(app_db: Path, out_db: Path) -> dict:
    rows = _read_app_db(app_db)
    with cf.ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(floor_one, rows))
    with sqlite3.connect(out_db) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS snap (id TEXT PRIMARY KEY, project TEXT, name TEXT, "
            "status TEXT, total INT, additions INT, deletions INT, dirty INT, activity INT)"
        )
        conn.executemany(
            "INSERT OR REPLACE INTO snap VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r[0], r[1], r[4], r[5], *(g or (None, None, None, None)), r[6])
                for r, (_, g) in zip(rows, results, strict=True)
            ],
        )
    return {"git_processes": sum(c for c, _ in results), "worktrees": len(rows), "rows": len(rows)}


def run_seed(app_db: Path, out_db: Path) -> dict:
    sys.path.insert(0, str(REPO))
    from reconcile_pipeline.core.store import SnapshotStore

    rows = _read_app_db(app_db)
    with cf.ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(seed_one, rows))
    store = SnapshotStore(f"sqlite:///{out_db}")
    ts = store.now_ms()
    for r, (_, g) in zip(rows, results, strict=True):
        total, adds, dels, dirty = g or (None, None, None, None)
        store.upsert(  # one transaction per row, as the original service did
            r[0],
            {
                "project_id": r[1],
                "name": r[4],
                "git_total": total,
                "git_additions": adds,
                "git_deletions": dels,
                "git_has_uncommitted": dirty,
            },
            source="seed",
            ts=ts,
        )
    return {"git_processes": sum(c for c, _ in results), "worktrees": len(rows), "rows": len(rows)}


# -- measurement -----------------------------------------------------------------------------


def env_of(extra: dict) -> dict:
    return {**os.environ, **extra}


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd`` under a fresh measuring process: wall, CPU of the tree, peak RSS. The spec
    goes through stdin: the environment may hold a password, and argv is public."""
    spec = json.dumps({"cmd": cmd, "env": env or {}})
    out = subprocess.run(
        [sys.executable, __file__, "_measure"],
        input=spec,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


CPUACCT = Path("/sys/fs/cgroup/cpuacct")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _own_cpuacct_group() -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return CPUACCT / path.lstrip("/")
    raise OSError("no cpuacct controller")


def _pss(pid: str) -> int:
    """Proportional set size in bytes: shared pages split between the processes sharing them,
    so the sum over a process tree is its real memory (forkserver children share a lot)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no Pss line")


class TreeAccounting:
    """CPU and memory of this process and every descendant, however deep (forkserver step
    processes and their git children included), through a cgroup v1 cpuacct group made inside
    this process's own group: CPU from ``cpuacct.usage`` less this (measuring) process's own,
    memory by sampling the group's processes (RSS of the largest one every 50 ms; PSS summed
    over the tree, which splits shared pages between their processes, every second) unless
    ``memory`` is False. ``usable`` is False where no group can be made; the caller then falls
    back to getrusage, which only sees waited-for children."""

    def __init__(self, memory: bool = True) -> None:
        self.usable = False
        self.memory = memory
        self.peak_process = self.peak_tree = 0
        try:
            self.parent = _own_cpuacct_group()
            self.group = self.parent / f"reconcile_bench_{os.getpid()}"
            self.group.mkdir()
        except (OSError, ValueError):
            return
        try:
            (self.group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            self.group.rmdir()
            return
        self.usable = True
        self._start = self._usage()
        self.series: list[tuple[float, int]] = [(time.time(), self._start)]
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _usage(self) -> int:
        """CPU nanoseconds of the tree, less this process's own (the sampler's walks through
        /proc, the measuring loop): they are the meter's cost, not the measured command's."""
        tree = int((self.group / "cpuacct.usage").read_text())
        return tree - time.process_time_ns()

    def _sample(self) -> None:
        me = os.getpid()
        ticks = 0
        while not self._stop.wait(0.05):
            self.series.append((time.time(), self._usage()))
            if not self.memory:
                continue
            # RSS is cheap to read; PSS makes the kernel walk every page table, which on 2 cores
            # would slow the measured run down: once a second (the pipeline's processes live for
            # seconds), and always on the first tick.
            with_pss = ticks % 20 == 0
            ticks += 1
            rss, pss = [], []
            for pid in (self.group / "cgroup.procs").read_text().split():
                if int(pid) == me:
                    continue
                try:
                    rss.append(int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE)
                    if with_pss:
                        pss.append(_pss(pid))
                except (OSError, IndexError, ValueError):  # gone meanwhile
                    continue
            if rss:
                self.peak_process = max(self.peak_process, max(rss))
            if pss:
                self.peak_tree = max(self.peak_tree, sum(pss))

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds of the tree between two wall-clock times (from the 50 ms samples)."""

        def at(t: float) -> float:
            earlier = [u for ts, u in self.series if ts <= t]
            return earlier[-1] if earlier else self.series[0][1]

        return (at(end) - at(start)) / 1e9

    def finish(self) -> float:
        """CPU seconds of the tree; leaves the group and removes it (best effort: processes the
        command left behind keep it alive, and then it stays, with a warning)."""
        self._stop.set()
        self._sampler.join()
        cpu_s = (self._usage() - self._start) / 1e9
        (self.parent / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(100):
            try:
                self.group.rmdir()
                break
            except OSError:
                time.sleep(0.05)
        else:
            print(f"cgroup {self.group} still has processes; left in place", file=sys.stderr)
        return cpu_s


def _measure_child() -> None:
    spec = json.loads(sys.stdin.read())
    env = {**os.environ, **spec["env"]}
    tree = TreeAccounting()
    try:
        started = time.perf_counter()
        proc = subprocess.run(spec["cmd"], capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - started
    finally:
        tree_cpu = tree.finish() if tree.usable else None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        sys.exit(proc.returncode)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    mib = 1024 * 1024
    # getrusage's largest waited-for child covers a command too short to be sampled.
    largest_child = usage.ru_maxrss * 1024
    result.update(
        wall_s=round(wall, 3),
        cpu_s=round(tree_cpu if tree_cpu is not None else usage.ru_utime + usage.ru_stime, 3),
        cpu_source="cgroup" if tree_cpu is not None else "rusage",
        peak_rss_mib=round(max(tree.peak_process, largest_child) / mib, 1),
        peak_tree_pss_mib=(
            round((tree.peak_tree or largest_child) / mib, 1) if tree.usable else None
        ),
    )
    print(json.dumps(result))


DAEMON_TIMEOUT_S = 600.0


def _daemon_tick_child(home: str) -> None:
    """The production path, once: start ``dagster-daemon run`` (its sensor ticks at once), wait
    for the run that tick launched to finish, stop the daemon. Measured from the tick's start to
    the run's end (sensor evaluation, run queue, run worker, steps): wall, and the CPU of the
    daemon's whole process tree (code server, run worker, step and git processes) in that
    window; the daemon's own start-up is not part of a tick."""
    import dagster as dg
    from dagster._core.scheduler.instigation import InstigatorType

    tree = TreeAccounting()
    env = {**os.environ, "DAGSTER_HOME": home, "PYTHONUNBUFFERED": "1"}
    started = time.time()
    log = open(Path(home) / "daemon-bench.log", "ab")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with dg.DagsterInstance.from_config(home) as instance:
            deadline = time.monotonic() + DAEMON_TIMEOUT_S
            record = None
            while time.monotonic() < deadline and daemon.poll() is None:
                records = instance.get_run_records(
                    dg.RunsFilter(job_name="reconcile_job", created_after=dt_from(started)),
                    limit=1,
                )
                if records and records[0].dagster_run.is_finished:
                    record = records[0]
                    break
                time.sleep(0.2)
            if record is None:
                raise RuntimeError(f"no finished sensor run; see {home}/daemon-bench.log")
            run = record.dagster_run
            tick = None
            for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
                for t in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5):
                    if run.run_id in t.run_ids:
                        tick = t
            if tick is None:
                raise RuntimeError(f"run {run.run_id} came from no sensor tick")
            summary = cli_run_summary(instance, run.run_id)
            ended = record.end_time
            tick_start = tick.timestamp
            timings = {
                "daemon_start_to_tick_s": round(tick_start - started, 3),
                "tick_s": round((tick.end_timestamp or tick_start) - tick_start, 3),
                "queued_s": round(record.start_time - record.create_timestamp.timestamp(), 3),
                "run_s": round(ended - record.start_time, 3),
            }
    finally:
        daemon.send_signal(signal.SIGINT)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
        cpu_total = tree.finish() if tree.usable else None
    if summary["status"] != "SUCCESS":
        raise RuntimeError(f"sensor run {run.run_id} ended {summary['status']}")
    mib = 1024 * 1024
    summary.update(
        timings,
        wall_s=round(ended - tick_start, 3),
        cpu_s=round(tree.cpu_between(tick_start, ended), 3) if cpu_total is not None else None,
        cpu_source="cgroup" if cpu_total is not None else "none",
        peak_rss_mib=round(tree.peak_process / mib, 1),
        peak_tree_pss_mib=round(tree.peak_tree / mib, 1) if tree.usable else None,
    )
    print(json.dumps(summary))


def dt_from(timestamp: float):
    import datetime as dt

    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def cli_run_summary(instance, run_id: str) -> dict:
    from reconcile_pipeline.cli import run_summary

    return run_summary(instance, run_id)


def measure_daemon_tick(env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "_daemon_tick", env["DAGSTER_HOME"]],
        env=env_of(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=DAEMON_TIMEOUT_S + 120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"daemon tick failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pg_connect_args(admin_url: str) -> dict:
    """psycopg2 connection arguments of the admin URL (its database, or ``postgres``)."""
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    return dict(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password or "",
        dbname=url.database or "postgres",
    )


@contextlib.contextmanager
def postgres_instance_env(admin_url: str, name: str):
    """A throwaway database for the Dagster instance; yields the DAGSTER_PG_* variables that
    deploy/postgres/dagster.yaml reads, drops the database afterwards."""
    import psycopg2

    params = _pg_connect_args(admin_url)

    def admin(statement: str) -> None:
        conn = psycopg2.connect(**params)
        conn.autocommit = True
        try:
            conn.cursor().execute(statement)
        finally:
            conn.close()

    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "DAGSTER_PG_USERNAME": params["user"] or "",
            "DAGSTER_PG_PASSWORD": params["password"],
            "DAGSTER_PG_HOST": params["host"],
            "DAGSTER_PG_DB": name,
        }
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_available(admin_url: str | None) -> bool:
    if not admin_url:
        return False
    import psycopg2

    try:
        psycopg2.connect(connect_timeout=3, **_pg_connect_args(admin_url)).close()
    except psycopg2.Error:
        return False
    return True


def _fresh_home(home: Path, demo: Path, instance_yaml: Path, port: int | None = None) -> None:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    if home / "demo_app" != demo:
        (home / "demo_app").symlink_to(demo)
    text = instance_yaml.read_text()
    if port is not None:
        text = text.replace("port: 5432", f"port: {port}")
    (home / "dagster.yaml").write_text(text)


def _remove(*paths: Path) -> None:
    for path in paths:
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            file.unlink(missing_ok=True)


def _sync_partitions(env: dict) -> None:
    # The instance exists before a tick, as on any deployment: creating its tables is not measured.
    subprocess.run(
        [str(BIN / "reconcile-pipeline"), "sync-partitions"],
        env=env_of(env),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _median(runs: list[dict]) -> dict:
    """The run with the median wall time (the lower middle one for an even count), with every
    run's wall time alongside."""
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    return {**ordered[(len(ordered) - 1) // 2], "wall_s_runs": [r["wall_s"] for r in runs]}


def bench_size(
    n: int, root: Path, postgres: str | None = None, repeat: int = 1, daemon: bool = True
) -> dict:
    """Every method ``repeat`` times, interleaved (so a slow spell of the machine hits all of
    them); each pipeline pair starts from an empty snapshot table on an existing instance."""
    work = root / f"n{n}"
    home = work / "dagster_home"
    demo = home / "demo_app"
    if not (demo / "app.db").exists():
        shutil.rmtree(work, ignore_errors=True)
        home.mkdir(parents=True)
        subprocess.run(
            [str(BIN / "reconcile-pipeline"), "demo", "--root", str(demo), "--workspaces", str(n)],
            check=True,
            capture_output=True,
        )
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    for stale in ("storage", "history", "schedules"):
        shutil.rmtree(home / stale, ignore_errors=True)
    app_db = demo / "app.db"
    me = [sys.executable, __file__]
    reconcile = [str(BIN / "reconcile-pipeline"), "reconcile", "--json"]
    instances = [("pipeline", home, {"DAGSTER_HOME": str(home)})]
    out: dict = {"size": n, "repeat": repeat}
    with contextlib.ExitStack() as stack:
        if postgres:
            from sqlalchemy.engine import make_url

            home_pg = work / "dagster_home_pg"
            _fresh_home(
                home_pg,
                demo,
                REPO / "deploy" / "postgres" / "dagster.yaml",
                make_url(postgres).port,
            )
            out["pg_database"] = f"reconcile_bench_{os.getpid()}_{n}"
            pg_env = stack.enter_context(postgres_instance_env(postgres, out["pg_database"]))
            instances.append(("pipeline_pg", home_pg, {"DAGSTER_HOME": str(home_pg), **pg_env}))
        for _, _, env in instances:
            _sync_partitions(env)
        runs: dict[str, list[dict]] = {}
        for _ in range(repeat):
            _remove(home / "floor.db", home / "seed.db")
            runs.setdefault("floor", []).append(
                measure([*me, "_floor", str(app_db), str(home / "floor.db")])
            )
            runs.setdefault("seed", []).append(
                measure([*me, "_seed", str(app_db), str(home / "seed.db")])
            )
            for name, instance_home, env in instances:
                _remove(instance_home / "pipeline.db")  # an empty snapshot table: the seeding run
                runs.setdefault(name, []).append(measure(reconcile, env))
                runs.setdefault(f"{name}_unchanged", []).append(measure(reconcile, env))
                if name == "pipeline":  # the executor's two modes side by side, forced
                    for mode, limit in (("in_process", "1000000000"), ("multiprocess", "0")):
                        forced = {**env, "RECONCILE_IN_PROCESS_MAX_WORKSPACES": limit}
                        runs.setdefault(f"pipeline_{mode}", []).append(measure(reconcile, forced))
                if daemon:  # the production path: a sensor tick on a steady table
                    runs.setdefault(f"{name}_daemon", []).append(measure_daemon_tick(env))
    out.update({method: _median(method_runs) for method, method_runs in runs.items()})
    return out


METHODS = (
    "floor",
    "seed",
    "pipeline",
    "pipeline_unchanged",
    "pipeline_in_process",
    "pipeline_multiprocess",
    "pipeline_daemon",
    "pipeline_pg",
    "pipeline_pg_unchanged",
    "pipeline_pg_daemon",
)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown(results: list[dict], command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "| workspaces | method | wall s (median) | wall s of each run | CPU s | "
        "peak RSS MiB, largest process | peak PSS MiB, whole tree | git procs / worktree | "
        "Dagster steps | event-log rows | rows written |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for name in METHODS:
            if name not in r:
                continue
            m = r[name]
            per = m["git_processes"] / m["worktrees"] if m.get("worktrees") else 0
            lines.append(
                f"| {r['size']} | {name} | {m['wall_s']:.2f} | "
                f"{', '.join(f'{w:.2f}' for w in m.get('wall_s_runs', [m['wall_s']]))} | "
                f"{m['cpu_s']:.2f} | {m['peak_rss_mib']:.0f} | "
                f"{_number(m.get('peak_tree_pss_mib'))} | {per:.2f} | {m.get('steps', '-')} | "
                f"{m.get('event_log_rows', '-')} | "
                f"{m.get('rows_written', m.get('rows'))} |"
            )
    sources = {r[m].get("cpu_source", "rusage") for r in results for m in METHODS if m in r}
    if sources == {"cgroup"}:
        note = (
            "CPU: user+sys of the whole process tree (step processes and their git children "
            "included), from a cgroup cpuacct group. Memory: sampled over the tree's processes; "
            "RSS of the largest one (every 50 ms), and PSS summed over all of them (every second; "
            "shared pages split between their processes: the tree's real footprint)."
        )
    else:
        note = (
            "CPU and peak RSS: from getrusage for at least one row (no cgroup could be made): "
            "waited-for child processes only, a lower bound for the pipeline, whose forkserver "
            "step processes are not all counted."
        )
    lines += ["", note]
    daemon_rows = [(r, m) for r in results for m in METHODS if m.endswith("_daemon") and m in r]
    if daemon_rows:
        lines += [
            "",
            "The daemon's path, per tick (median run): the sensor's evaluation; the run from "
            "its creation to its start (the queue, the launch and the run worker's start-up); "
            "the run from its start to its end; wall is from the tick's start to the run's end.",
            "",
            "| workspaces | instance | tick s | queued s | run s | wall s | CPU s |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r, name in daemon_rows:
            m = r[name]
            lines.append(
                f"| {r['size']} | {name} | {m['tick_s']:.2f} | {m['queued_s']:.2f} | "
                f"{m['run_s']:.2f} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} |"
            )
    pipelines = [m for m in METHODS[2:] if all(m in r for r in results)]
    lines += [
        "",
        "| workspaces | instance | pipeline / floor (wall) | pipeline / seed (wall) |",
        "|---:|---|---:|---:|",
    ]
    for r in results:
        for name in pipelines:
            p = r[name]["wall_s"]
            lines.append(
                f"| {r['size']} | {name} | {p / r['floor']['wall_s']:.2f} | "
                f"{p / r['seed']['wall_s']:.2f} |"
            )
    if len(results) >= 2:
        a, b = results[-2], results[-1]
        span = b["size"] - a["size"]

        def marginal(k):
            return (b[k]["wall_s"] - a[k]["wall_s"]) / span * 1000

        lines += [
            "",
            f"Marginal wall time per extra workspace ({a['size']} → {b['size']}):",
            "",
            "| method | ms per workspace | / floor |",
            "|---|---:|---:|",
        ]
        for name in ("floor", *pipelines):
            lines.append(
                f"| {name} | {marginal(name):.2f} | {marginal(name) / marginal('floor'):.2f} |"
            )
    biggest = results[-1]
    shown = [m for m in ("pipeline", "pipeline_pg") if biggest.get(m, {}).get("phases")]
    if shown:
        phases = {m: dict(biggest[m]["phases"]) for m in shown}
        names = list(dict.fromkeys(n for m in shown for n, _ in biggest[m]["phases"]))
        lines += [
            "",
            f"Where a run's time goes at {biggest['size']} workspaces (seconds, from each run's "
            "event log; a step from its launch to its end, the git shards as one phase):",
            "",
            "| phase | " + " | ".join(shown) + " |",
            "|---|" + "---:|" * len(shown),
        ]
        for name in names:
            cells = [f"{phases[m][name]:.2f}" if name in phases[m] else "-" for m in shown]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # A terminated benchmark still drops its databases and leaves its cgroup (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if argv and argv[0] == "_measure":
        _measure_child()
        return 0
    if argv and argv[0] == "_daemon_tick":
        _daemon_tick_child(argv[1])
        return 0
    if argv and argv[0] in ("_floor", "_seed"):
        fn = run_floor if argv[0] == "_floor" else run_seed
        print(json.dumps(fn(Path(argv[1]), Path(argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--root", type=Path, default=REPO / "bench-results")
    parser.add_argument("--markdown", type=Path, help="write the table into this file")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of every method per size; the median is shown"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("RECONCILE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/"),
        help="admin URL of a PostgreSQL server for the production-instance runs ('' to skip); "
        "the runs use a throwaway database, dropped afterwards",
    )
    parser.add_argument(
        "--daemon-sizes",
        default="100,1000",
        help="sizes at which the daemon's path (sensor tick to successful run) is measured too",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    postgres = args.postgres if postgres_available(args.postgres) else None
    if args.postgres and postgres is None:
        from sqlalchemy.engine import make_url

        shown = make_url(args.postgres).render_as_string(hide_password=True)
        print(f"no PostgreSQL at {shown}: skipping the production-instance runs")
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        daemon_sizes = {int(d) for d in args.daemon_sizes.split(",") if d}
        results.append(bench_size(n, args.root, postgres, args.repeat, n in daemon_sizes))
        print(json.dumps(results[-1]), flush=True)
    command = "python scripts/benchmark.py " + " ".join(argv)
    table = markdown(results, command.strip())
    (args.root / "results.json").write_text(json.dumps(results, indent=2))
    print(table)
    if args.markdown:
        args.markdown.write_text(
            args.markdown.read_text() + "\n" + table if args.markdown.exists() else table
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
