"""Engines for the pipeline DB and the app DB: one place for dialect quirks."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

# SQLite waits this long for a lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60


def create_db_engine(url: str | sa.URL, *, read_only: bool = False) -> Engine:
    """An engine with SQLite made safe for several processes (WAL, busy timeout, explicit BEGIN
    so ``execution_options(sqlite_begin="IMMEDIATE")`` can take the write lock up front)."""
    url = sa.make_url(url)
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):  # pragma: no cover - driver hook
        # Let SQLAlchemy's "begin" event emit BEGIN instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection):  # pragma: no cover - driver hook
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def db_now_ms(conn: Connection) -> int:
    """The database server's clock, epoch ms."""
    if conn.dialect.name == "sqlite":
        sql = "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
    elif conn.dialect.name == "postgresql":
        # clock_timestamp(), not now(): now() is frozen at the start of the transaction.
        sql = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    else:
        raise ValueError(f"unsupported database dialect {conn.dialect.name!r}")
    return int(conn.exec_driver_sql(sql).scalar_one())


def is_retryable(exc: sa.exc.DBAPIError) -> bool:
    """Deadlocks, serialization failures and SQLite lock time-outs are worth another try."""
    code = getattr(exc.orig, "pgcode", None)
    if code in ("40P01", "40001"):
        return True
    return "database is locked" in str(exc.orig)


def safe_url(url: str | sa.URL) -> str:
    """A URL fit for logs and metadata: the password hidden."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"
