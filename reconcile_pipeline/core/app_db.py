"""Read access to the app's database (Prisma schema; SQLite or PostgreSQL by SQLAlchemy URL).

The pipeline never writes here. One run reads everything it needs with ONE statement
(:func:`extract_workspaces`) and shapes it in pandas. The app DB is not trusted: unknown enum
values, NULLs in NOT NULL columns, unparseable DateTimes, out-of-range numbers and non-boolean
booleans never raise; the cell becomes NA and a row in ``AppExtract.problems`` says why, so that
the consumer can treat that cell as unknown instead of writing garbage.

DateTime encodings accepted (DESIGN "Sources and sinks"): integer epoch milliseconds (Prisma's
SQLite connector), ``'YYYY-MM-DD HH:MM:SS[.fff]'`` text (SQL defaults, UTC), ISO-8601 text with
``T``, an optional fraction and ``Z``/``±HH:MM`` (other drivers), and ``datetime`` objects
(PostgreSQL ``TIMESTAMP(3)``: naive, meaning UTC). All become epoch ms UTC, truncated to the ms.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from reconcile_pipeline.core.fields import (
    PR_CI_STATUS,
    PR_STATE,
    RATCHET_STATE,
    RUN_SCRIPT_STATUS,
    WORKSPACE_STATUS,
)

log = logging.getLogger(__name__)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# --------------------------------------------------------------------------------------------
# Schema (DDL equivalent to what `prisma migrate` generates for the app's models)
# --------------------------------------------------------------------------------------------

# (column, prisma type, nullable, default as SQL literal or None). Prisma's @updatedAt has no
# SQL default: the client sets it.
_STRING, _INT, _BOOL, _DATETIME = "String", "Int", "Boolean", "DateTime"
_NOW = "CURRENT_TIMESTAMP"

APP_TABLES: dict[str, tuple[tuple[str, str, bool, str | None], ...]] = {
    "Project": (
        ("id", _STRING, False, None),
        ("name", _STRING, False, None),
        ("slug", _STRING, False, None),
        ("repoPath", _STRING, False, None),
        ("worktreeBasePath", _STRING, False, None),
        ("defaultBranch", _STRING, False, "'main'"),
        ("isArchived", _BOOL, False, "false"),
        ("createdAt", _DATETIME, False, _NOW),
        ("updatedAt", _DATETIME, False, None),
    ),
    "Workspace": (
        ("id", _STRING, False, None),
        ("projectId", _STRING, False, None),
        ("name", _STRING, False, None),
        ("status", _STRING, False, "'NEW'"),
        ("worktreePath", _STRING, True, None),
        ("branchName", _STRING, True, None),
        ("runScriptStatus", _STRING, False, "'IDLE'"),
        ("prUrl", _STRING, True, None),
        ("prNumber", _INT, True, None),
        ("prState", _STRING, False, "'NONE'"),
        ("prCiStatus", _STRING, False, "'UNKNOWN'"),
        ("prUpdatedAt", _DATETIME, True, None),
        ("ratchetEnabled", _BOOL, False, "true"),
        ("ratchetState", _STRING, False, "'IDLE'"),
        ("hasHadSessions", _BOOL, False, "false"),
        ("createdAt", _DATETIME, False, _NOW),
        ("updatedAt", _DATETIME, False, None),
    ),
    "ClaudeSession": (
        ("id", _STRING, False, None),
        ("workspaceId", _STRING, False, None),
        ("status", _STRING, False, "'IDLE'"),
        ("createdAt", _DATETIME, False, _NOW),
        ("updatedAt", _DATETIME, False, None),
    ),
    "TerminalSession": (
        ("id", _STRING, False, None),
        ("workspaceId", _STRING, False, None),
        ("status", _STRING, False, "'IDLE'"),
        ("createdAt", _DATETIME, False, _NOW),
        ("updatedAt", _DATETIME, False, None),
    ),
}

# table -> (fk column, referenced table); all ON DELETE CASCADE as the app's relations.
_FOREIGN_KEYS = {
    "Workspace": ("projectId", "Project"),
    "ClaudeSession": ("workspaceId", "Workspace"),
    "TerminalSession": ("workspaceId", "Workspace"),
}
_INDEXES = {  # Prisma @@index names: <Table>_<column>_idx
    "Workspace": "projectId",
    "ClaudeSession": "workspaceId",
    "TerminalSession": "workspaceId",
}

# SQLite: DATETIME and BOOLEAN are what Prisma declares; both have NUMERIC affinity, so an
# integer epoch-ms, a 'YYYY-MM-DD HH:MM:SS' default and ISO-8601 text are all stored as given,
# and booleans are stored as 0/1.
_TYPES = {
    "sqlite": {_STRING: "TEXT", _INT: "INTEGER", _BOOL: "BOOLEAN", _DATETIME: "DATETIME"},
    "postgresql": {_STRING: "TEXT", _INT: "INTEGER", _BOOL: "BOOLEAN", _DATETIME: "TIMESTAMP(3)"},
}


def app_schema_ddl(dialect: str, *, constraints: bool = True) -> list[str]:
    """DDL statements for the app tables on ``dialect`` ('sqlite' or 'postgresql').

    ``constraints=False`` drops NOT NULL, primary/unique keys and foreign keys (types and
    defaults stay): only for simulating a broken app DB in tests.
    """
    if dialect not in _TYPES:
        raise ValueError(f"unsupported dialect {dialect!r}; expected sqlite or postgresql")
    types = _TYPES[dialect]
    statements = []
    for table, columns in APP_TABLES.items():
        lines = []
        for name, prisma_type, nullable, default in columns:
            line = f'"{name}" {types[prisma_type]}'
            if constraints and not nullable:
                line += " NOT NULL"
            if default is not None:
                line += f" DEFAULT {default}"
            lines.append(line)
        if constraints:
            lines.append(f'CONSTRAINT "{table}_pkey" PRIMARY KEY ("id")')
            if table in _FOREIGN_KEYS:
                col, ref = _FOREIGN_KEYS[table]
                lines.append(
                    f'CONSTRAINT "{table}_{col}_fkey" FOREIGN KEY ("{col}") REFERENCES "{ref}" ("id")'
                    " ON DELETE CASCADE ON UPDATE CASCADE"
                )
        body = ",\n    ".join(lines)
        statements.append(f'CREATE TABLE IF NOT EXISTS "{table}" (\n    {body}\n)')
    if constraints:
        statements.append(
            'CREATE UNIQUE INDEX IF NOT EXISTS "Project_slug_key" ON "Project" ("slug")'
        )
    for table, col in _INDEXES.items():
        statements.append(f'CREATE INDEX IF NOT EXISTS "{table}_{col}_idx" ON "{table}" ("{col}")')
    return statements


def create_app_schema(engine: sa.Engine, *, constraints: bool = True) -> None:
    """Create the app's tables (as the app's Prisma migrations would) if they do not exist."""
    with engine.begin() as conn:
        for statement in app_schema_ddl(engine.dialect.name, constraints=constraints):
            conn.exec_driver_sql(statement)


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------


def describe_url(url: str | sa.URL) -> str:
    """The URL with its password masked, for messages and logs."""
    return sa.make_url(url).render_as_string(hide_password=True)


def app_engine(url: str | sa.URL, *, read_only: bool = True, timeout: float = 30.0) -> sa.Engine:
    """An engine for the app DB.

    SQLite: opened read-only (``mode=ro``; a missing file is an error instead of a new empty
    DB) with a busy ``timeout`` so that the app's writes only delay us. PostgreSQL: read-only
    transactions. ``pool_pre_ping`` because runs are minutes apart and servers drop idle
    connections.
    """
    url = sa.make_url(url)
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
                raise FileNotFoundError(f"app DB not found: {describe_url(url)}")
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
    log.debug("app DB engine for %s", describe_url(url))
    return engine


# --------------------------------------------------------------------------------------------
# DateTime parsing
# --------------------------------------------------------------------------------------------

# The one text grammar both parsers accept: date, optional time (T or space), optional fraction,
# optional Z or ±HH[:MM] offset. No offset means UTC.
_DATETIME_TEXT = (
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?"
)
_DATETIME_RE = re.compile(_DATETIME_TEXT)
_NUMERIC_TEXT = r"[+-]?\d+(?:\.\d*)?"
_NUMERIC_RE = re.compile(_NUMERIC_TEXT)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def _number_to_ms(value: int | float) -> int:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite epoch-ms number: {value!r}")
        value = math.floor(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"epoch ms out of the 64-bit range: {value!r}")
    return int(value)


def parse_datetime_ms(value: object) -> int | None:
    """One app-DB DateTime value as epoch ms UTC; ``None`` for NULL; ``ValueError`` on garbage."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"not a DateTime: {value!r}")
    if isinstance(value, int | np.integer):
        return _number_to_ms(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        return _number_to_ms(float(value))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # PostgreSQL TIMESTAMP(3) comes back naive, in UTC
            value = value.replace(tzinfo=dt.UTC)
        return (value - _EPOCH) // _MS
    if isinstance(value, str):
        text = value.strip()
        if _NUMERIC_RE.fullmatch(text):
            return _number_to_ms(int(text) if text.lstrip("+-").isdigit() else float(text))
        match = _DATETIME_RE.fullmatch(text)
        if not match:
            raise ValueError(f"unparseable DateTime {value!r}")
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        tz = dt.UTC
        if offset and offset != "Z":
            digits = offset[1:].replace(":", "")
            delta = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            tz = dt.timezone(-delta if offset[0] == "-" else delta)  # ValueError if >= 24h
        parsed = dt.datetime(  # ValueError for impossible dates (month 13, Feb 30, ...)
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "")[:3].ljust(3, "0")) * 1000,  # truncate to the ms
            tzinfo=tz,
        )
        return (parsed - _EPOCH) // _MS
    raise ValueError(f"not a DateTime: {value!r} ({type(value).__name__})")


def parse_datetime_series(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Vectorised :func:`parse_datetime_ms`: ``(Int64 epoch ms UTC, bool mask of unparseable)``.

    NULLs are NA and not unparseable. Values are split by kind (numbers, numeric text, date text,
    datetime objects) and each kind is converted in bulk with numpy / ``pd.to_datetime``.
    """
    raw = pd.Series(series, dtype=object, copy=False)
    n = len(raw)
    values = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    null = raw.isna().to_numpy()
    kind = raw.map(type)  # hash-based isin below: a type per value, no per-value parsing

    def _assign(mask: np.ndarray, ms: np.ndarray, good: np.ndarray) -> None:
        idx = np.flatnonzero(mask)[good]
        values[idx] = ms[good]
        ok[idx] = True

    is_int = kind.isin([int, np.int64, np.int32]).to_numpy() & ~null
    if is_int.any():
        objs = raw.to_numpy()[is_int]
        good = np.array([INT64_MIN <= v <= INT64_MAX for v in objs], dtype=bool)
        ints = np.zeros(len(objs), dtype=np.int64)
        ints[good] = objs[good].astype(np.int64)
        _assign(is_int, ints, good)

    is_float = kind.isin([float, np.float64, np.float32]).to_numpy() & ~null
    if is_float.any():
        floats = raw.to_numpy()[is_float].astype(np.float64)
        floats = np.floor(floats)
        # 2**63 is exactly representable; anything >= it does not fit in int64.
        good = np.isfinite(floats) & (floats >= -(2.0**63)) & (floats < 2.0**63)
        ints = np.zeros(len(floats), dtype=np.int64)
        ints[good] = floats[good].astype(np.int64)
        _assign(is_float, ints, good)

    is_str = kind.isin([str]).to_numpy() & ~null
    if is_str.any():
        text = raw[is_str].astype(str).str.strip()
        numeric = text.str.fullmatch(_NUMERIC_TEXT).to_numpy()
        if numeric.any():
            # Rare (Prisma writes integers): reuse the scalar rule for exact int/float handling.
            parsed = [_safe_number_text(t) for t in text[numeric]]
            good = np.array([p is not None for p in parsed], dtype=bool)
            ms = np.array([p if p is not None else 0 for p in parsed], dtype=np.int64)
            _assign(_sub_mask(is_str, numeric), ms, good)
        dated = text.str.fullmatch(_DATETIME_TEXT).to_numpy() & ~numeric
        if dated.any():
            # Truncate fractions to the ms first so that conversion is exact (no rounding).
            trimmed = text[dated].str.replace(r"(\.\d{3})\d+", r"\1", regex=True)
            stamps = pd.to_datetime(trimmed, format="ISO8601", utc=True, errors="coerce")
            ms, good = _timestamps_to_ms(stamps)
            _assign(_sub_mask(is_str, dated), ms, good)

    is_dt = kind.isin([dt.datetime, pd.Timestamp, np.datetime64]).to_numpy() & ~null
    if is_dt.any():
        stamps = pd.to_datetime(raw[is_dt], utc=True, errors="coerce")
        ms, good = _timestamps_to_ms(stamps)
        _assign(is_dt, ms, good)

    result = pd.Series(pd.array(values, dtype="Int64"), index=raw.index)
    result[~ok] = pd.NA
    bad = pd.Series(~ok & ~null, index=raw.index)
    return result, bad


def _safe_number_text(text: str) -> int | None:
    try:
        return parse_datetime_ms(text)
    except ValueError:
        return None


def _sub_mask(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Positions (in the full array) of the ``inner``-selected elements of ``outer``."""
    mask = np.zeros(len(outer), dtype=bool)
    mask[np.flatnonzero(outer)[inner]] = True
    return mask


def _timestamps_to_ms(stamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    good = stamps.notna().to_numpy()
    micros = np.zeros(len(stamps), dtype=np.int64)
    if good.any():
        # Microsecond unit covers years 1..9999 without overflow; floor-divide to the ms.
        as_us = stamps[good].dt.as_unit("us").dt.tz_localize(None)
        micros[good] = as_us.to_numpy().astype("datetime64[us]").astype(np.int64)
    return micros // 1000, good


# --------------------------------------------------------------------------------------------
# Extract
# --------------------------------------------------------------------------------------------

WORKSPACE_COLUMNS: tuple[str, ...] = (
    "workspace_id",
    "project_id",
    "project_slug",
    "default_branch",
    "worktree_path",
    "name",
    "status",
    "created_at",
    "branch_name",
    "has_had_sessions",
    "pr_url",
    "pr_number",
    "pr_state",
    "pr_ci_status",
    "pr_updated_at",
    "ratchet_enabled",
    "ratchet_state",
    "run_script_status",
    "last_activity_at",
)
SESSION_COLUMNS: tuple[str, ...] = (
    "session_id",
    "workspace_id",
    "kind",
    "status",
    "created_at",
    "updated_at",
)
PROBLEM_COLUMNS: tuple[str, ...] = ("workspace_id", "field", "value", "reason")
PROJECT_COLUMNS: tuple[str, ...] = (
    "project_id",
    "slug",
    "name",
    "is_archived",
    "default_branch",
)

# Extract column -> (source column for messages, kind, nullable). Kinds: text, enum values,
# datetime, bool, pr_number.
_WORKSPACE_SOURCES: dict[str, tuple[str, object, bool]] = {
    "workspace_id": ("Workspace.id", "text", False),
    "project_id": ("Workspace.projectId", "text", False),
    "project_slug": ("Project.slug", "text", False),
    "default_branch": ("Project.defaultBranch", "text", False),
    "worktree_path": ("Workspace.worktreePath", "text", True),
    "name": ("Workspace.name", "text", False),
    "status": ("Workspace.status", WORKSPACE_STATUS, False),
    "created_at": ("Workspace.createdAt", "datetime", False),
    "branch_name": ("Workspace.branchName", "text", True),
    "has_had_sessions": ("Workspace.hasHadSessions", "bool", False),
    "pr_url": ("Workspace.prUrl", "text", True),
    "pr_number": ("Workspace.prNumber", "pr_number", True),
    "pr_state": ("Workspace.prState", PR_STATE, False),
    "pr_ci_status": ("Workspace.prCiStatus", PR_CI_STATUS, False),
    "pr_updated_at": ("Workspace.prUpdatedAt", "datetime", True),
    "ratchet_enabled": ("Workspace.ratchetEnabled", "bool", False),
    "ratchet_state": ("Workspace.ratchetState", RATCHET_STATE, False),
    "run_script_status": ("Workspace.runScriptStatus", RUN_SCRIPT_STATUS, False),
}

_P = sa.table(
    "Project",
    *(sa.column(c) for c in ("id", "name", "slug", "defaultBranch", "isArchived")),
)
_W = sa.table(
    "Workspace",
    *(sa.column(c) for c, _, _, _ in APP_TABLES["Workspace"]),
)
_SESSION_TABLES = {
    "agent": sa.table(
        "ClaudeSession", *(sa.column(c) for c, _, _, _ in APP_TABLES["ClaudeSession"])
    ),
    "terminal": sa.table(
        "TerminalSession", *(sa.column(c) for c, _, _, _ in APP_TABLES["TerminalSession"])
    ),
}
_SESSION_SOURCE = {"agent": "ClaudeSession", "terminal": "TerminalSession"}

# SELECT list of the workspace branch: extract column -> Workspace/Project column.
_WORKSPACE_SELECT = {
    "workspace_id": _W.c.id,
    "project_id": _W.c.projectId,
    "project_slug": _P.c.slug,
    "default_branch": _P.c.defaultBranch,
    "worktree_path": _W.c.worktreePath,
    "name": _W.c.name,
    "status": _W.c.status,
    "created_at": _W.c.createdAt,
    "branch_name": _W.c.branchName,
    "has_had_sessions": _W.c.hasHadSessions,
    "pr_url": _W.c.prUrl,
    "pr_number": _W.c.prNumber,
    "pr_state": _W.c.prState,
    "pr_ci_status": _W.c.prCiStatus,
    "pr_updated_at": _W.c.prUpdatedAt,
    "ratchet_enabled": _W.c.ratchetEnabled,
    "ratchet_state": _W.c.ratchetState,
    "run_script_status": _W.c.runScriptStatus,
    "project_is_archived": _P.c.isArchived,
}
_SESSION_SELECT = ("session_id", "session_status", "session_created_at", "session_updated_at")


@dataclass(frozen=True)
class AppExtract:
    """One consistent read of the app DB. See the module docstring for the problem contract.

    - ``workspaces``: one row per non-archived workspace of a non-archived project, columns
      :data:`WORKSPACE_COLUMNS`; text/enum columns ``string``, timestamps and ``pr_number``
      ``Int64`` (epoch ms UTC), booleans ``boolean``; NA = NULL or a problem cell.
    - ``sessions``: agent (ClaudeSession) and terminal (TerminalSession) sessions of those
      workspaces, columns :data:`SESSION_COLUMNS`.
    - ``problems``: one row per bad cell (``workspace_id``, ``field`` = workspaces column,
      ``value`` = raw value as str, ``'NULL'`` for NULL, ``reason``); that cell is NA. Two
      row-level fields are not cells: ``workspace_id`` (duplicate id, first row kept) and
      ``project_is_archived`` (unreadable Project.isArchived, workspace kept).
    """

    workspaces: pd.DataFrame
    sessions: pd.DataFrame
    problems: pd.DataFrame
    live_projects: tuple[str, ...] = ()  # ids of every non-archived project in the app DB


def build_extract_statement(project_ids: Sequence[str] | None = None) -> sa.CompoundSelect:
    """The single statement of :func:`extract_workspaces`.

    Workspace rows and session rows come back as one UNION ALL (column ``row_kind`` tells them
    apart) instead of a join, so a workspace with many sessions is not repeated and genuinely
    duplicated Workspace ids stay visible. Sessions are restricted with a semi-join on the
    selected workspaces, so they are never duplicated either.
    """
    archived = sa.bindparam("archived_status", "ARCHIVED")
    where = [
        sa.or_(_W.c.status.is_(None), _W.c.status != archived),
        sa.or_(_P.c.isArchived.is_(None), _P.c.isArchived != sa.bindparam("archived_true", True)),
    ]
    if project_ids is not None:
        where.append(
            _W.c.projectId.in_(sa.bindparam("project_ids", list(project_ids), expanding=True))
        )
    ws = (
        sa.select(
            sa.bindparam("kind_workspace", "workspace").label("row_kind"),
            *(col.label(name) for name, col in _WORKSPACE_SELECT.items()),
        )
        .select_from(_W.join(_P, _P.c.id == _W.c.projectId))
        .where(*where)
        .cte("ws")
    )
    # The session NULLs belong in the outer SELECT, not the CTE: PostgreSQL types an untyped
    # NULL in a CTE as text, which then cannot UNION with the sessions' TIMESTAMP columns.
    branches = [sa.select(ws, *(sa.null().label(name) for name in _SESSION_SELECT))]
    for kind, table in _SESSION_TABLES.items():
        branches.append(
            sa.select(
                sa.bindparam(f"kind_{kind}", kind).label("row_kind"),
                table.c.workspaceId.label("workspace_id"),
                *(sa.null().label(name) for name in list(_WORKSPACE_SELECT)[1:]),
                table.c.id.label("session_id"),
                table.c.status.label("session_status"),
                table.c.createdAt.label("session_created_at"),
                table.c.updatedAt.label("session_updated_at"),
            ).where(table.c.workspaceId.in_(sa.select(ws.c.workspace_id)))
        )
    # Every project's id and archived flag (all projects, whatever the filter): stale cleanup
    # must know which projects are still live without a second query.
    branches.append(
        sa.select(
            sa.bindparam("kind_project", "project").label("row_kind"),
            *(
                _P.c.id.label(name)
                if name == "project_id"
                else _P.c.isArchived.label(name)
                if name == "project_is_archived"
                else sa.null().label(name)
                for name in _WORKSPACE_SELECT
            ),
            *(sa.null().label(name) for name in _SESSION_SELECT),
        )
    )
    return sa.union_all(*branches)


def extract_workspaces(engine: sa.Engine, project_ids: Sequence[str] | None = None) -> AppExtract:
    """Read all non-archived workspaces (of ``project_ids``, all projects when None) with their
    project and sessions in ONE statement, and shape them into an :class:`AppExtract`."""
    if isinstance(project_ids, str):
        raise TypeError("project_ids must be a sequence of ids, not one string")
    statement = build_extract_statement(project_ids)
    with engine.connect() as conn:
        result = conn.execute(statement)
        columns = list(result.keys())
        rows = result.fetchall()
    # object dtype keeps the raw driver values (ints, text, datetimes) for validation.
    raw = pd.DataFrame([tuple(r) for r in rows], columns=columns, dtype=object)
    ws_raw = raw[raw["row_kind"] == "workspace"].reset_index(drop=True)
    sess_raw = raw[raw["row_kind"].isin(list(_SESSION_TABLES))].reset_index(drop=True)
    project_raw = raw[raw["row_kind"] == "project"]
    # Anything but a clear "archived" counts as live, as for the workspaces above.
    archived, _bad = _bool_values(project_raw["project_is_archived"])
    live_projects = sorted(
        project_raw.loc[~archived.fillna(False).astype(bool).to_numpy(), "project_id"].astype(str)
    )
    problems: list[pd.DataFrame] = []
    workspaces = _shape_workspaces(ws_raw, problems)
    sessions = _shape_sessions(sess_raw)
    workspaces = _add_last_activity(workspaces, sessions, sess_raw, problems)
    problem_frame = (
        pd.concat(problems, ignore_index=True) if problems else _empty(PROBLEM_COLUMNS)
    ).astype("string")
    return AppExtract(
        workspaces=workspaces.sort_values("workspace_id", kind="stable").reset_index(drop=True),
        sessions=sessions.sort_values(
            ["workspace_id", "kind", "session_id"], kind="stable"
        ).reset_index(drop=True),
        problems=problem_frame.reset_index(drop=True),
        live_projects=tuple(live_projects),
    )


def list_projects(engine: sa.Engine) -> pd.DataFrame:
    """All projects (archived too): project_id, slug, name, is_archived, default_branch."""
    statement = sa.select(
        _P.c.id.label("project_id"),
        _P.c.slug.label("slug"),
        _P.c.name.label("name"),
        _P.c.isArchived.label("is_archived"),
        _P.c.defaultBranch.label("default_branch"),
    ).order_by(_P.c.id)
    with engine.connect() as conn:
        rows = conn.execute(statement).fetchall()
    raw = pd.DataFrame([tuple(r) for r in rows], columns=list(PROJECT_COLUMNS), dtype=object)
    out = pd.DataFrame(index=raw.index)
    for col in ("project_id", "slug", "name", "default_branch"):
        out[col] = _text_values(raw[col])[0]
    out["is_archived"] = _bool_values(raw["is_archived"])[0]
    return out[list(PROJECT_COLUMNS)]


# ---- shaping helpers -------------------------------------------------------------------------


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})


def _raw_str(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NULL"
    if isinstance(value, bytes):
        return repr(value)
    text = str(value)
    if isinstance(value, str) and not text.isascii():
        # Bytes that were not UTF-8 (surrogate-escaped): show them as \x.. escapes.
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def _problem_rows(
    ids: pd.Series, raw: pd.Series, mask: np.ndarray | pd.Series, field: str, reason
) -> pd.DataFrame | None:
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    values = raw[mask].map(_raw_str)
    # reason functions get the raw value, so that e.g. 2 and '2' read differently
    reasons = raw[mask].map(reason) if callable(reason) else reason
    return pd.DataFrame(
        {
            "workspace_id": ids[mask].map(_raw_str).to_numpy(),
            "field": field,
            "value": values.to_numpy(),
            "reason": np.asarray(reasons) if callable(reason) else reasons,
        }
    )


def _text_values(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``string`` series; second item: non-null cells that are not text (e.g. a BLOB)."""
    is_str = raw.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    null = raw.isna().to_numpy()
    out = pd.Series(pd.array([None] * len(raw), dtype="string"), index=raw.index)
    out[is_str] = raw[is_str].astype(str)
    return out, ~is_str & ~null


def _not_utf8(values: pd.Series) -> np.ndarray:
    """Cells that held bytes that are not UTF-8 (decoded with surrogateescape by app_engine)."""
    return values.str.contains("[\ud800-\udfff]", regex=True).fillna(False).to_numpy(dtype=bool)


_TRUE = [True, "true", "t", "1"]  # 1 and 1.0 equal True
_FALSE = [False, "false", "f", "0"]


def _bool_values(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``boolean`` series from bool / 0 / 1 / 'true' / 'false'; second item: other values."""
    key = raw.map(lambda v: v.strip().lower() if isinstance(v, str) else v)
    # True == 1 == 1.0 (same hash): isin treats them alike, which is intended.
    true = key.isin(_TRUE).to_numpy()
    false = key.isin(_FALSE).to_numpy()
    null = raw.isna().to_numpy()
    out = pd.Series(pd.array([None] * len(raw), dtype="boolean"), index=raw.index)
    out[true] = True
    out[false] = False
    return out, ~true & ~false & ~null


def _pr_number_values(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``Int64`` PR numbers; second item: reason per bad cell (None where fine)."""

    def check(value: object) -> tuple[int | None, str | None]:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None, None
        if isinstance(value, bool | np.bool_):
            return None, f"prNumber {value!r} is not an integer"
        if isinstance(value, float | np.floating):
            if not (math.isfinite(value) and float(value).is_integer()):
                return None, f"prNumber {value!r} is not an integer"
            value = int(value)
        if not isinstance(value, int | np.integer):
            return None, f"prNumber {value!r} is not an integer"
        if value < 0:
            return None, f"prNumber {value} is negative"
        if value > INT64_MAX:
            return None, f"prNumber {value} does not fit in 64 bits"
        return int(value), None

    checked = raw.map(check)
    values = pd.Series(pd.array([c[0] for c in checked], dtype="Int64"), index=raw.index)
    return values, pd.Series([c[1] for c in checked], index=raw.index, dtype=object)


def _shape_workspaces(ws_raw: pd.DataFrame, problems: list[pd.DataFrame]) -> pd.DataFrame:
    def add(frame: pd.DataFrame | None) -> None:
        if frame is not None:
            problems.append(frame)

    # Project archived flag stored as non-0/1 (e.g. 'true' text on SQLite): SQL could not
    # filter it, so finish the filter here; an unreadable flag keeps the workspace (reported).
    is_archived, bad_archived = _bool_values(ws_raw["project_is_archived"])
    ws_raw = ws_raw[~is_archived.fillna(False).to_numpy(bool)].reset_index(drop=True)
    bad_archived = bad_archived[~is_archived.fillna(False).to_numpy(bool)]
    ids = ws_raw["workspace_id"]
    add(
        _problem_rows(
            ids,
            ws_raw["project_is_archived"],
            bad_archived,
            "project_is_archived",
            lambda v: f"non-boolean Project.isArchived {v!r}; treated as not archived",
        )
    )

    # A row without an id cannot be addressed by the consumer: report it and drop it.
    null_id = ids.isna().to_numpy()
    add(_problem_rows(ids, ids, null_id, "workspace_id", "NULL Workspace.id; row skipped"))
    ws_raw = ws_raw[~null_id].reset_index(drop=True)
    ids = ws_raw["workspace_id"]

    duplicated = ids.duplicated(keep="first").to_numpy()
    add(
        _problem_rows(
            ids,
            ids,
            duplicated,
            "workspace_id",
            lambda v: f"duplicate Workspace.id {v!r}; kept the first row",
        )
    )
    ws_raw = ws_raw[~duplicated].reset_index(drop=True)
    ids = ws_raw["workspace_id"]

    out = pd.DataFrame(index=ws_raw.index)
    for column, (source, kind, nullable) in _WORKSPACE_SOURCES.items():
        raw = ws_raw[column]
        null = raw.isna().to_numpy()
        if kind == "text":
            values, bad = _text_values(raw)
            add(_problem_rows(ids, raw, bad, column, lambda v, s=source: f"{s} {v} is not text"))
            if column != "worktree_path":  # a path may be any bytes; a name must be UTF-8
                invalid = _not_utf8(values)
                add(
                    _problem_rows(
                        ids, raw, invalid, column, lambda v, s=source: f"{s} is not valid UTF-8"
                    )
                )
                values[invalid] = pd.NA
        elif kind == "bool":
            values, bad = _bool_values(raw)
            add(_problem_rows(ids, raw, bad, column, lambda v, s=source: f"non-boolean {s} {v!r}"))
        elif kind == "datetime":
            values, bad = parse_datetime_series(raw)
            add(
                _problem_rows(
                    ids,
                    raw,
                    bad.to_numpy(),
                    column,
                    lambda v, s=source: f"unparseable DateTime {s} {v!r}",
                )
            )
        elif kind == "pr_number":
            values, reasons = _pr_number_values(raw)
            bad = reasons.notna().to_numpy()
            if bad.any():
                frame = _problem_rows(ids, raw, bad, column, "")
                frame["reason"] = reasons[bad].to_numpy()
                add(frame)
        else:  # enum: tuple of allowed values
            allowed = list(kind)
            valid = raw.isin(allowed).to_numpy()
            values = pd.Series(pd.array([None] * len(raw), dtype="string"), index=raw.index)
            values[valid] = raw[valid].astype(str)
            add(
                _problem_rows(
                    ids,
                    raw,
                    ~valid & ~null,
                    column,
                    lambda v, s=source, a=allowed: f"unknown {s} {v!r}; expected one of {a}",
                )
            )
        if not nullable:
            add(_problem_rows(ids, raw, null, column, f"NULL in NOT NULL column {source}"))
        out[column] = values
    out["last_activity_at"] = pd.array([None] * len(out), dtype="Int64")
    return out


def _shape_sessions(sess_raw: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=sess_raw.index)
    out["session_id"] = _text_values(sess_raw["session_id"])[0]
    out["workspace_id"] = _text_values(sess_raw["workspace_id"])[0]
    out["kind"] = pd.array(sess_raw["row_kind"].astype(str).to_numpy(), dtype="string")
    out["status"] = _text_values(sess_raw["session_status"])[0]
    # Session createdAt is informational (not part of the snapshot): NA when unparseable.
    out["created_at"] = parse_datetime_series(sess_raw["session_created_at"])[0]
    out["updated_at"] = parse_datetime_series(sess_raw["session_updated_at"])[0]
    return out[list(SESSION_COLUMNS)]


def _add_last_activity(
    workspaces: pd.DataFrame,
    sessions: pd.DataFrame,
    sess_raw: pd.DataFrame,
    problems: list[pd.DataFrame],
) -> pd.DataFrame:
    """last_activity_at = latest session updatedAt; unknown (NA + problem) if any session of
    the workspace has an unreadable updatedAt, since the true maximum might be that one."""
    if sessions.empty:
        return workspaces
    unreadable = sessions["updated_at"].isna().to_numpy()
    if unreadable.any():
        raw = sess_raw["session_updated_at"]
        kinds = sess_raw["row_kind"].map(_SESSION_SOURCE)
        sids = sess_raw["session_id"].map(_raw_str)
        frame = pd.DataFrame(
            {
                "workspace_id": sessions["workspace_id"][unreadable].astype(object).to_numpy(),
                "field": "last_activity_at",
                "value": raw[unreadable].map(_raw_str).to_numpy(),
                "reason": [
                    f"{'NULL' if pd.isna(v) else 'unparseable'} {k}.updatedAt {v!r} of session {s!r}"
                    for v, k, s in zip(
                        raw[unreadable], kinds[unreadable], sids[unreadable], strict=True
                    )
                ],
            }
        )
        problems.append(frame)
    latest = sessions.groupby("workspace_id", sort=False)["updated_at"].max()
    tainted = set(sessions["workspace_id"][unreadable].dropna())
    mapped = workspaces["workspace_id"].map(latest).astype("Int64")
    mapped[workspaces["workspace_id"].isin(tainted).to_numpy()] = pd.NA
    workspaces = workspaces.copy()
    workspaces["last_activity_at"] = mapped
    return workspaces
