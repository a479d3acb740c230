"""Helpers of the reliability tests (soak, faults, bad input, safety): real processes, real
databases, real faults. No mocks.

- Reading the snapshot table with plain SQLAlchemy (no product code) and checking that every row
  is self-consistent: derived fields equal the contract's derivation of its raw fields
  (``support.expected.derive``, written from the text), versions and timestamps sane.
- An audit trail of ``workspace_snapshot`` kept by database triggers (PostgreSQL and SQLite): every
  insert, update and delete, with the version, source and group timestamps it produced. Test-side
  instrumentation of a throwaway database; the product does not know it is there.
- The soak's writer and reader processes (``multiprocessing`` spawn targets).
- A private PostgreSQL cluster (initdb into a temp dir as the ``postgres`` OS user) that a test
  may stop and start; the machine's main cluster is never touched.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    "workspace": ("name", "status", "created_at", "branch_name", "has_had_sessions"),
    "pr": (
        "pr_url",
        "pr_number",
        "pr_state",
        "pr_ci_status",
        "pr_updated_at",
        "has_merge_conflict",
    ),
    "session": ("is_working", "pending_request_type"),
    "ratchet": ("ratchet_enabled", "ratchet_state"),
    "run_script": ("run_script_status",),
    "reconciliation": (
        "git_total",
        "git_additions",
        "git_deletions",
        "git_has_uncommitted",
        "last_activity_at",
    ),
}
TS_COLUMNS = tuple(f"ts_{g}" for g in GROUP_FIELDS)
RAW_FIELDS = tuple(f for fields in GROUP_FIELDS.values() for f in fields)
DERIVED_FIELDS = (
    "flow_phase",
    "ci_observation",
    "ratchet_button_animated",
    "kanban_column",
    "sidebar_activity_state",
    "sidebar_ci_state",
)
BOOL_COLUMNS = {
    "has_had_sessions",
    "has_merge_conflict",
    "is_working",
    "ratchet_enabled",
    "git_has_uncommitted",
    "ratchet_button_animated",
}
# Groups the app's event-driven writers own (reconciliation is the pipeline's).
EVENT_GROUPS = ("workspace", "pr", "session", "ratchet", "run_script")

# not ARCHIVED: it would be pruned
WORKSPACE_STATUS = ("NEW", "PROVISIONING", "READY", "FAILED", "ARCHIVING")
PR_STATE = ("NONE", "DRAFT", "OPEN", "CHANGES_REQUESTED", "APPROVED", "MERGED", "CLOSED")
PR_CI_STATUS = ("UNKNOWN", "PENDING", "SUCCESS", "FAILURE")
RATCHET_STATE = (
    "IDLE",
    "CI_RUNNING",
    "CI_FAILED",
    "MERGE_CONFLICT",
    "REVIEW_PENDING",
    "READY",
    "MERGED",
)
RUN_SCRIPT_STATUS = ("IDLE", "STARTING", "RUNNING", "STOPPING", "COMPLETED", "FAILED")
PENDING = (None, "plan_approval", "user_question", "permission_request")


def engine_for(url: str) -> sa.Engine:
    """A plain engine without pooling: test reads never keep connections around."""
    kwargs: dict[str, Any] = {"poolclass": sa.pool.NullPool}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    return sa.create_engine(url, **kwargs)


# --------------------------------------------------------------------------------------------
# Reading and checking the snapshot table
# --------------------------------------------------------------------------------------------


def read_rows(url: str) -> dict[str, dict[str, Any]]:
    """workspace_id -> stored row of workspace_snapshot (booleans as bool), plain SQL."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            rows = [
                dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM workspace_snapshot"))
            ]
    finally:
        engine.dispose()
    for row in rows:
        for column in BOOL_COLUMNS & set(row):
            if row[column] is not None:
                row[column] = bool(row[column])
    return {r["workspace_id"]: r for r in rows}


def consistency_problems(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every way a stored row is not self-consistent: derived fields that are not the contract's
    derivation of the raw fields, a version below 1, a negative group timestamp, no source."""
    from reconcile_pipeline_tests.support.expected import derive

    problems = []
    for workspace_id, row in sorted(rows.items()):
        want = derive(row)
        for column, value in want.items():
            if row[column] != value:
                problems.append(f"{workspace_id}: {column}={row[column]!r}, derive gives {value!r}")
        if row["version"] is None or row["version"] < 1:
            problems.append(f"{workspace_id}: version {row['version']!r}")
        for ts in TS_COLUMNS:
            if row[ts] is None or row[ts] < 0:
                problems.append(f"{workspace_id}: {ts}={row[ts]!r}")
        if not row["source"] or not row["project_id"]:
            problems.append(
                f"{workspace_id}: source={row['source']!r} project={row['project_id']!r}"
            )
    return problems


def group_values(row: Mapping[str, Any], group: str) -> dict[str, Any]:
    return {f: row[f] for f in GROUP_FIELDS[group]}


# --------------------------------------------------------------------------------------------
# Audit trail by triggers
# --------------------------------------------------------------------------------------------

_AUDIT_COLUMNS = ("op", "workspace_id", "version", "source", *TS_COLUMNS)


def install_audit(url: str) -> None:
    """Create ``snapshot_audit`` and triggers that log every change of workspace_snapshot."""
    engine = engine_for(url)
    ts_decl = ", ".join(f"{c} BIGINT" for c in TS_COLUMNS)
    new_ts = ", ".join(f"NEW.{c}" for c in TS_COLUMNS)
    ts_list = ", ".join(TS_COLUMNS)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(
                    "CREATE TABLE snapshot_audit (id BIGSERIAL PRIMARY KEY, op TEXT NOT NULL, "
                    f"workspace_id TEXT NOT NULL, version BIGINT, source TEXT, {ts_decl})"
                )
                conn.exec_driver_sql(
                    "CREATE FUNCTION snapshot_audit_fn() RETURNS trigger AS $$ BEGIN "
                    "IF TG_OP = 'DELETE' THEN "
                    "INSERT INTO snapshot_audit (op, workspace_id, version, source) "
                    "VALUES ('D', OLD.workspace_id, OLD.version, OLD.source); RETURN OLD; END IF; "
                    f"INSERT INTO snapshot_audit (op, workspace_id, version, source, {ts_list}) "
                    f"VALUES (left(TG_OP, 1), NEW.workspace_id, NEW.version, NEW.source, {new_ts}); "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
                conn.exec_driver_sql(
                    "CREATE TRIGGER snapshot_audit_trg AFTER INSERT OR UPDATE OR DELETE ON "
                    "workspace_snapshot FOR EACH ROW EXECUTE FUNCTION snapshot_audit_fn()"
                )
            else:
                conn.exec_driver_sql(
                    "CREATE TABLE snapshot_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                    f"op TEXT NOT NULL, workspace_id TEXT NOT NULL, version BIGINT, source TEXT, "
                    f"{ts_decl})"
                )
                for op, when in (("I", "INSERT"), ("U", "UPDATE")):
                    conn.exec_driver_sql(
                        f"CREATE TRIGGER snapshot_audit_{op} AFTER {when} ON workspace_snapshot "
                        f"BEGIN INSERT INTO snapshot_audit (op, workspace_id, version, source, "
                        f"{ts_list}) VALUES ('{op}', NEW.workspace_id, NEW.version, NEW.source, "
                        f"{new_ts}); END"
                    )
                conn.exec_driver_sql(
                    "CREATE TRIGGER snapshot_audit_D AFTER DELETE ON workspace_snapshot BEGIN "
                    "INSERT INTO snapshot_audit (op, workspace_id, version, source) "
                    "VALUES ('D', OLD.workspace_id, OLD.version, OLD.source); END"
                )
    finally:
        engine.dispose()


def read_audit(url: str) -> list[dict[str, Any]]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            result = conn.execute(
                sa.text(f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM snapshot_audit ORDER BY id")
            )
            return [dict(r._mapping) for r in result]
    finally:
        engine.dispose()


def audit_problems(audit: Sequence[Mapping[str, Any]], final: Mapping[str, Mapping]) -> list[str]:
    """Lost or duplicated updates and timestamps going back, from the audit trail: per workspace
    the versions must be exactly 1..final version, each produced once, and no group timestamp
    may ever decrease."""
    problems = []
    by_ws: dict[str, list[Mapping[str, Any]]] = {}
    for entry in audit:
        if entry["op"] == "D":
            problems.append(f"{entry['workspace_id']}: deleted at version {entry['version']}")
            continue
        by_ws.setdefault(entry["workspace_id"], []).append(entry)
    for workspace_id, entries in sorted(by_ws.items()):
        versions = [e["version"] for e in entries]
        want = list(range(1, len(entries) + 1))
        if sorted(versions) != want:
            problems.append(
                f"{workspace_id}: versions {versions[:12]}... not exactly 1..{len(want)}"
            )
        if workspace_id in final and final[workspace_id]["version"] != len(entries):
            problems.append(
                f"{workspace_id}: final version {final[workspace_id]['version']} but "
                f"{len(entries)} changes"
            )
        ordered = sorted(entries, key=lambda e: e["version"])
        for before, after in zip(ordered, ordered[1:], strict=False):
            for ts in TS_COLUMNS:
                if after[ts] < before[ts]:
                    problems.append(
                        f"{workspace_id}: {ts} went back {before[ts]} -> {after[ts]} "
                        f"(v{before['version']} {before['source']} -> v{after['version']} "
                        f"{after['source']})"
                    )
    return problems


# --------------------------------------------------------------------------------------------
# Soak processes (spawn targets)
# --------------------------------------------------------------------------------------------


def event_values(group: str, truth: Mapping[str, Any], writer: int, i: int, rng: random.Random):
    """Values for one event write of ``group``: every field of the group, deliberately not the
    authoritative (app DB) combination, so a later reconciliation has something to repair."""
    tag = f"{writer}-{i}"
    if group == "workspace":
        return {
            "name": f"event name {tag}",
            "status": rng.choice([s for s in WORKSPACE_STATUS if s != truth["status"]]),
            "created_at": 1_600_000_000_000 + writer * 1_000_000 + i,
            "branch_name": f"event/{tag}",
            "has_had_sessions": not truth["has_had_sessions"],
        }
    if group == "pr":
        return {
            "pr_url": f"https://events.example.invalid/{tag}",
            "pr_number": 500_000 + writer * 100_000 + i,
            "pr_state": rng.choice([s for s in PR_STATE if s != truth["pr_state"]]),
            "pr_ci_status": rng.choice(PR_CI_STATUS),
            "pr_updated_at": 1_700_000_000_000 + writer * 1_000_000 + i,
            "has_merge_conflict": not truth["has_merge_conflict"],
        }
    if group == "session":
        combos = [
            (w, p)
            for w in (False, True)
            for p in PENDING
            if (w, p) != (truth["is_working"], truth["pending_request_type"])
        ]
        working, pending = rng.choice(combos)
        return {"is_working": working, "pending_request_type": pending}
    if group == "ratchet":
        combos = [
            (e, s)
            for e in (False, True)
            for s in RATCHET_STATE
            if (e, s) != (truth["ratchet_enabled"], truth["ratchet_state"])
        ]
        enabled, state = rng.choice(combos)
        return {"ratchet_enabled": enabled, "ratchet_state": state}
    if group == "run_script":
        return {
            "run_script_status": rng.choice(
                [s for s in RUN_SCRIPT_STATUS if s != truth["run_script_status"]]
            )
        }
    raise ValueError(group)


def soak_writer(url: str, writer: int, truth: dict, stop, queue, pause_s: float) -> None:
    """An event-driven writer of the app: upserts one whole group of a random workspace with
    ``ts = store.now_ms()`` (the pipeline DB's clock), until ``stop`` is set. Reports every
    write: (workspace, group, ts, values, applied, committed_by), the last one the DB clock
    read right after the commit."""
    from reconcile_pipeline.core.store import SnapshotStore

    store = SnapshotStore(url, create=False)
    rng = random.Random(1000 + writer)
    workspaces = sorted(truth)
    out = []
    i = 0
    error = None
    try:
        while not stop.is_set():
            workspace_id = rng.choice(workspaces)
            group = rng.choice(EVENT_GROUPS)
            values = event_values(group, truth[workspace_id], writer, i, rng)
            ts = store.now_ms()
            result = store.upsert(workspace_id, values, source=f"event-{writer}", ts=ts)
            applied = (workspace_id, group) not in set(result.stale_groups)
            committed_by = store.now_ms()  # the write is committed at or before this
            out.append((workspace_id, group, ts, values, applied, committed_by))
            i += 1
            time.sleep(rng.uniform(0, pause_s))
    except Exception as exc:  # report, the test fails on it
        error = f"{type(exc).__name__}: {exc}"
    finally:
        store.engine.dispose()
    queue.put(("writer", writer, out, error))


def version_reader(url: str, stop, queue, pause_s: float = 0.02) -> None:
    """Samples every row's version until ``stop``; reports samples and any decrease seen."""
    engine = engine_for(url)
    last: dict[str, int] = {}
    samples = 0
    decreases: list[str] = []
    error = None
    try:
        while not stop.is_set():
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text("SELECT workspace_id, version FROM workspace_snapshot")
                ).all()
            samples += 1
            for workspace_id, version in rows:
                if version < last.get(workspace_id, 0):
                    decreases.append(f"{workspace_id}: {last[workspace_id]} -> {version}")
                last[workspace_id] = version
            time.sleep(pause_s)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        engine.dispose()
    queue.put(("reader", samples, decreases, error))


# --------------------------------------------------------------------------------------------
# A private PostgreSQL cluster
# --------------------------------------------------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_cluster_unavailable() -> str | None:
    """Why a private cluster cannot be started here, or None."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        return f"no initdb/pg_ctl under {PG_BIN}"
    if os.geteuid() != 0:
        return "not root: cannot run initdb as the postgres OS user"
    if shutil.which("runuser") is None:
        return "runuser is not installed"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres OS user"
    return None


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of its own (trust auth, 127.0.0.1:``port``), owned by this test."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def _pg(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def init(self) -> None:
        proc = self._pg(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed: {proc.stderr[-2000:]}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=50 -c shared_buffers=16MB"
        )
        proc = self._pg(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {proc.stdout}{proc.stderr}{self.tail()}")

    def stop(self, mode: str = "fast") -> None:
        proc = self._pg(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"
        )
        if proc.returncode != 0 and "is the server running" not in proc.stderr:
            raise RuntimeError(f"pg_ctl stop failed: {proc.stdout}{proc.stderr}")

    def running(self) -> bool:
        proc = self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status")
        return proc.returncode == 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = sa.create_engine(
            self.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
        )
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """initdb + start a private cluster in a fresh temp dir (owned by postgres: pytest's own
    tmp dirs are 0700 root), stop it (immediate) and delete it afterwards."""
    root = Path(tempfile.mkdtemp(prefix="rp_private_pg_"))
    shutil.chown(root, user="postgres")
    cluster = PrivateCluster(root=root, port=free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            if cluster.running():
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


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
