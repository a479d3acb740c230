"""Engines for the pipeline DB and the app DB: one place for dialect quirks."""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

# SQLite waits this long for a lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60


# The PostgreSQL driver this package installs. SQLAlchemy 2.1 maps a plain postgresql:// URL to
# psycopg 3; psycopg2 is the driver dagster-postgres uses too, so one driver serves everything.
POSTGRES_DRIVER = "psycopg2"


def normalise_url(url: str | sa.URL) -> sa.URL:
    """``url`` with a plain ``postgresql://`` (or ``postgres://``) given the installed driver;
    any explicit driver is kept."""
    url = sa.make_url(
        str(url).replace("postgres://", "postgresql://", 1) if isinstance(url, str) else url
    )
    if url.drivername == "postgresql":
        url = url.set(drivername=f"postgresql+{POSTGRES_DRIVER}")
    return url


def create_db_engine(url: str | sa.URL, *, read_only: bool = False) -> Engine:
    """An engine with SQLite made safe for several processes (WAL, busy timeout, explicit BEGIN
    so ``execution_options(sqlite_begin="IMMEDIATE")`` can take the write lock up front)."""
    url = normalise_url(url)
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


def id_column(name: str = "id") -> sa.Column:
    """An auto-increment key: BIGINT on PostgreSQL; INTEGER on SQLite, whose autoincrement needs
    exactly that type."""
    return sa.Column(
        name,
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def add_missing_columns(conn: Connection, table: sa.Table) -> list[str]:
    """Migrate ``table`` in place: add the columns an older version of it lacks (each with its
    server default, so existing rows keep a value). Returns the columns added."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    added = []
    for column in table.columns:
        if column.name not in have:
            ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
            added.append(column.name)
    return added


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
    """A URL fit for logs and metadata: the password hidden; a SQLite file opened read-only
    (the ``file:...?mode=ro`` form of :func:`app_engine`) shown as its plain path."""
    try:
        url = sa.make_url(url)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database.startswith("file:"):
        path = urllib.parse.unquote(database.removeprefix("file:"))
        return f"sqlite:///{path}"
    return url.render_as_string(hide_password=True)


def app_engine(url: str | sa.URL, *, read_only: bool = True, timeout: float = 30.0) -> Engine:
    """An engine for the app DB.

    SQLite: opened read-only (``mode=ro``; a missing file is an error instead of a new empty
    DB) with a busy ``timeout`` so that the app's writes only delay us. PostgreSQL: read-only
    transactions. ``pool_pre_ping`` because runs are minutes apart and servers drop idle
    connections.
    """
    url = normalise_url(url)
    kwargs: dict = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": timeout}
        # No pool: a pooled connection would keep reading a file that was since replaced or
        # deleted (a restore, a rebuilt demo); opening a SQLite file costs well under a ms.
        kwargs["poolclass"] = sa.pool.NullPool
        database = url.database or ""
        if read_only and database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"app DB not found: {safe_url(url)}")
            # URI filename so that sqlite3 honours mode=ro; quote the path for odd characters.
            url = url.set(
                database=f"file:{urllib.parse.quote(str(path))}",
                query={**url.query, "mode": "ro", "uri": "true"},
            )
    elif url.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": max(1, int(timeout))}
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _decode_leniently(dbapi_connection, _record):  # pragma: no cover - driver hook
            # SQLite stores whatever bytes the app wrote: decode them without failing the whole
            # read, so that a non-UTF-8 cell becomes a per-row problem, not a failed run.
            dbapi_connection.text_factory = lambda b: b.decode("utf-8", "surrogateescape")

    if read_only and engine.dialect.name == "postgresql":
        engine = engine.execution_options(postgresql_readonly=True)
    log.debug("app DB engine for %s", safe_url(url))
    return engine
