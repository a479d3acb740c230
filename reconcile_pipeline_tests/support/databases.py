"""Real databases for the tests: throwaway PostgreSQL databases on the local server, a private
PostgreSQL cluster a test may stop and start, plain engines, an audit trail of the snapshot table
kept by triggers, and a PostgreSQL copy of a SQLite app DB."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reconcile_pipeline.core.db import normalise_url
from reconcile_pipeline.core.fields import TS_COLUMNS
from reconcile_pipeline_tests.support.paths import REPO
from reconcile_pipeline_tests.support.processes import free_port

# The local server (trust auth). Override to point the suite at another server.
PG_ADMIN_URL = os.environ.get(
    "RECONCILE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pg_available() -> bool:
    try:
        engine = make_engine(PG_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False


def create_pg_database(prefix: str = "rp_test") -> str:
    """Create a fresh database on the local server and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def sql(db: str | os.PathLike[str], statement: str, params: tuple = ()) -> list[tuple]:
    """One statement on a SQLite file with plain sqlite3, committed; its rows."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:
            return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def fetch_rows(url: str, statement: str, **params: Any) -> list[dict[str, Any]]:
    """The rows of one query on any database URL, as dicts."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(statement), params)]
    finally:
        engine.dispose()


def scalar(url: str, statement: str, **params: Any) -> Any:
    """The one value of one query, on a connection of its own."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(statement), params).scalar()
    finally:
        engine.dispose()


def make_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """``sa.create_engine`` for the URLs users write: a plain ``postgresql://`` gets the
    installed driver, as everywhere in the product."""
    return sa.create_engine(normalise_url(url), **kwargs)


def psycopg2_url(url: str) -> str:
    """``url`` with the driver dagster-postgres is installed with (psycopg2), password kept."""
    parsed = sa.make_url(url)
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def engine_for(url: str) -> sa.Engine:
    """A plain engine without pooling: test reads never keep connections around."""
    kwargs: dict[str, Any] = {"poolclass": sa.pool.NullPool}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    return make_engine(url, **kwargs)


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


PG_YAML = REPO / "deploy" / "postgres" / "dagster.yaml"
# Under trust auth the server ignores the password, but the yaml reads it from the environment.
PG_PASSWORD = "unused-under-trust-auth"


def production_home(home: Path, instance_url: str) -> dict[str, str]:
    """DAGSTER_HOME at ``home`` with deploy/postgres/dagster.yaml as shipped (the port aside, when
    the test server is not on 5432), its storage in the database of ``instance_url``; returns the
    DAGSTER_PG_* variables it reads."""
    home.mkdir()
    assert home.resolve() != (REPO / "dagster_home").resolve()
    admin = sa.make_url(PG_ADMIN_URL)
    yaml_text = PG_YAML.read_text()
    if (admin.port or 5432) != 5432:
        yaml_text = yaml_text.replace("port: 5432", f"port: {admin.port}")
    (home / "dagster.yaml").write_text(yaml_text)
    return {
        "DAGSTER_PG_USERNAME": admin.username or "postgres",
        "DAGSTER_PG_PASSWORD": admin.password or PG_PASSWORD,
        "DAGSTER_PG_HOST": admin.host or "127.0.0.1",
        "DAGSTER_PG_DB": sa.make_url(instance_url).database,
    }


PG_BIN = Path("/usr/lib/postgresql/15/bin")


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
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = make_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
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


def copy_app_db_to(sqlite_path: Path, target_url: str) -> dict[str, int]:
    """Create the app schema of the SQLite app DB's generation on ``target_url`` (as the app's
    migrations would on PostgreSQL: DateTime columns are ``TIMESTAMP(3)``, booleans ``BOOLEAN``)
    and copy every row into it, converting the SQLite encodings (epoch-ms integers or text, 0/1)
    to PostgreSQL values. Paths (worktreePath, repoPath) are kept. Returns rows per table."""
    import datetime as dt

    import sqlalchemy as sa

    from reconcile_pipeline.demo.app_schema import TABLES, column_names, create_app_schema

    epoch = dt.datetime(1970, 1, 1)

    def convert(declared: str, value: Any) -> Any:
        if value is None:
            return None
        if declared == "DATETIME" and isinstance(value, int):
            return epoch + dt.timedelta(milliseconds=value)  # naive UTC, as TIMESTAMP(3) holds
        if declared == "BOOLEAN":
            assert value in (0, 1), f"demo boolean not 0/1: {value!r}"
            return bool(value)
        return value  # text: PostgreSQL parses DateTime text itself

    source = sqlite3.connect(f"{sqlite_path.resolve().as_uri()}?mode=ro", uri=True)
    tables = {r[0] for r in source.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    generation = 3 if "WorkspacePR" in tables else 2 if "AgentSession" in tables else 1
    engine = make_engine(target_url)
    counts: dict[str, int] = {}
    try:
        create_app_schema(engine, generation)
        with engine.begin() as conn:
            for table in TABLES[generation]:  # parents first (foreign keys)
                names = column_names(generation, table)
                declared = {r[1]: r[2] for r in source.execute(f'PRAGMA table_info("{table}")')}
                select = ", ".join(f'"{c}"' for c in names)
                rows = source.execute(f'SELECT {select} FROM "{table}"').fetchall()
                records = [
                    {
                        name: convert(declared[name], value)
                        for name, value in zip(names, row, strict=True)
                    }
                    for row in rows
                ]
                if records:
                    conn.execute(sa.table(table, *(sa.column(c) for c in names)).insert(), records)
                counts[table] = len(records)
    finally:
        source.close()
        engine.dispose()
    return counts
