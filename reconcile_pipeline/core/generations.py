"""The app DB's schema generations: which one a database is in, and how each maps onto the one
canonical extract the rest of the pipeline reads.

The app (factory-factory) has moved its schema on since the snapshot contract was written, and
real databases are in any of its three generations (docs/CONTRACT.md §2.1: what each keeps where).

Each :class:`Generation` names every table and column it reads, so detection is one look at the
database's catalogue: the newest generation whose required columns are all there wins. A database
that matches none is an :class:`UnknownSchemaError` naming what is missing; it is permanent
(retrying cannot help), unlike a database that cannot be reached.

Some fields came in the middle of a generation (auto-iteration in April, the ratchet's dispatch
record in July): a generation lists them as *optional* columns, each with the places it has lived
in, newest first. The detected generation is *resolved* against the catalogue: an optional field
is read from the first place the database has, and is unknown (never written, never drift) when
it has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import sqlalchemy as sa

from reconcile_pipeline.core.db import safe_url
from reconcile_pipeline.core.fields import (
    AUTO_ITERATION_STATUS,
    PR_CI_STATUS,
    PR_STATE,
    RATCHET_DISPATCH_OUTCOME,
    RATCHET_STATE,
    RUN_SCRIPT_STATUS,
    WORKSPACE_MODE,
    WORKSPACE_STATUS,
)
from reconcile_pipeline.core.rules.rules_2026_02 import ACTIVE_PR_STATES

Kind = str | tuple[str, ...]  # "text", "bool", "datetime", "count" (an int >= 0), or enum values


@dataclass(frozen=True)
class SourceColumn:
    """One canonical extract column and where a generation reads it."""

    name: str  # canonical extract column
    table: str  # app table
    column: str  # app column
    kind: Kind
    nullable: bool = False
    # The app's value when the row of an optional side table is missing (gen 3).
    default: object = None

    @property
    def source(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class Generation:
    number: int
    since: str  # when the app shipped it
    description: str
    agent_session_table: str
    columns: tuple[SourceColumn, ...]
    # 1:1 tables keyed by "workspaceId" whose row may be missing (the app's defaults apply).
    side_tables: tuple[str, ...] = ()
    has_provider: bool = False  # agent sessions carry a provider (CLAUDE or CODEX)
    # ratchetState is not stored: it is projected from the PR observation (ratchet_state).
    derives_ratchet_state: bool = False
    # Fields added within the generation: per field, the columns it has lived in, newest first.
    optional: tuple[tuple[SourceColumn, ...], ...] = ()

    @property
    def label(self) -> str:
        return f"gen {self.number} ({self.since}: {self.description})"

    @property
    def requires(self) -> dict[str, tuple[str, ...]]:
        """Every table and column this generation's extract reads."""
        need: dict[str, list[str]] = {
            "Project": ["id", "isArchived"],
            "Workspace": ["id", "projectId"],
            self.agent_session_table: [
                *SESSION_SOURCE_COLUMNS,
                *AGENT_SOURCE_COLUMNS,
                *(["provider"] if self.has_provider else []),
            ],
            "TerminalSession": list(SESSION_SOURCE_COLUMNS),
        }
        for table in self.side_tables:
            need.setdefault(table, []).append("workspaceId")
        for column in self.columns:
            need.setdefault(column.table, []).append(column.column)
        return {table: tuple(dict.fromkeys(columns)) for table, columns in need.items()}

    def resolve(self, catalogue: Mapping[str, frozenset[str]]) -> Generation:
        """This generation with each optional field read from the first place ``catalogue``
        (table -> columns) has; a field with none stays unknown."""
        chosen = [
            next((c for c in places if c.column in catalogue.get(c.table, ())), None)
            for places in self.optional
        ]
        found = tuple(c for c in chosen if c is not None)
        # A table that only optional fields read is a 1:1 side table too (its row may be missing).
        extra = tuple(
            dict.fromkeys(
                c.table for c in found if c.table not in ("Workspace", "Project", *self.side_tables)
            )
        )
        return replace(
            self, columns=self.columns + found, side_tables=self.side_tables + extra, optional=()
        )

    @property
    def snapshot_fields(self) -> frozenset[str]:
        """Snapshot fields this generation's columns provide (ratchet_state also when derived)."""
        names = {c.name for c in self.columns}
        if self.derives_ratchet_state:
            names.add("ratchet_state")
        return frozenset(names)


# Columns of a session table the extract reads, in every generation.
SESSION_SOURCE_COLUMNS = ["id", "workspaceId", "status", "name", "createdAt", "updatedAt"]
# What an agent session adds, in every generation (the session summaries show them).
AGENT_SOURCE_COLUMNS = ["workflow", "model"]

# Snapshot fields the app DB provides at its newest generation; older ones lack some.
APP_FIELDS = (
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
    "has_merge_conflict",
    "ratchet_enabled",
    "ratchet_state",
    "run_script_status",
    "mode",
    "auto_iteration_status",
    "ratchet_dispatch_outcome",
    "ratchet_dispatch_retry_count",
    "ratchet_dispatch_stalled",
)

_W, _P = "Workspace", "Project"
_COMMON = (
    SourceColumn("workspace_id", _W, "id", "text"),
    SourceColumn("project_id", _W, "projectId", "text"),
    SourceColumn("project_slug", _P, "slug", "text"),
    SourceColumn("project_name", _P, "name", "text"),
    SourceColumn("default_branch", _P, "defaultBranch", "text"),
    SourceColumn("worktree_path", _W, "worktreePath", "text", nullable=True),
    SourceColumn("name", _W, "name", "text"),
    SourceColumn("status", _W, "status", WORKSPACE_STATUS),
    SourceColumn("created_at", _W, "createdAt", "datetime"),
    SourceColumn("branch_name", _W, "branchName", "text", nullable=True),
    SourceColumn("has_had_sessions", _W, "hasHadSessions", "bool"),
)
_ON_WORKSPACE = (
    SourceColumn("pr_url", _W, "prUrl", "text", nullable=True),
    SourceColumn("pr_number", _W, "prNumber", "count", nullable=True),
    SourceColumn("pr_state", _W, "prState", PR_STATE),
    SourceColumn("pr_ci_status", _W, "prCiStatus", PR_CI_STATUS),
    SourceColumn("pr_updated_at", _W, "prUpdatedAt", "datetime", nullable=True),
    SourceColumn("ratchet_enabled", _W, "ratchetEnabled", "bool"),
    SourceColumn("ratchet_state", _W, "ratchetState", RATCHET_STATE),
    SourceColumn("run_script_status", _W, "runScriptStatus", RUN_SCRIPT_STATUS),
)
_PR, _RATCHET, _RUN_SCRIPT = "WorkspacePR", "WorkspaceRatchet", "WorkspaceRunScript"
_IN_SIDE_TABLES = (
    SourceColumn("pr_url", _PR, "url", "text", nullable=True),
    SourceColumn("pr_number", _PR, "number", "count", nullable=True),
    SourceColumn("pr_state", _PR, "state", PR_STATE, default="NONE"),
    SourceColumn("pr_ci_status", _PR, "ciStatus", PR_CI_STATUS, default="UNKNOWN"),
    # syncedAt is what the app's prUpdatedAt always held: when the PR cache was last written.
    SourceColumn("pr_updated_at", _PR, "syncedAt", "datetime", nullable=True),
    SourceColumn("has_merge_conflict", _PR, "hasMergeConflict", "bool", default=False),
    # Not a snapshot field: an input of the derived ratchet state.
    SourceColumn("pr_review_state", _PR, "reviewState", "text", nullable=True),
    SourceColumn("ratchet_enabled", _RATCHET, "enabled", "bool", default=True),
    SourceColumn("run_script_status", _RUN_SCRIPT, "status", RUN_SCRIPT_STATUS, default="IDLE"),
)

# Fields that came within a generation, with the places they lived in (newest first).
_MODE_ON_WORKSPACE = SourceColumn("mode", _W, "mode", WORKSPACE_MODE)
_AUTO_STATUS_ON_WORKSPACE = SourceColumn(
    "auto_iteration_status", _W, "autoIterationStatus", AUTO_ITERATION_STATUS, nullable=True
)
_DISPATCH_ON_WORKSPACE = (
    SourceColumn(
        "ratchet_dispatch_outcome",
        _W,
        "ratchetDispatchOutcome",
        RATCHET_DISPATCH_OUTCOME,
        nullable=True,
    ),
    SourceColumn("ratchet_dispatch_retry_count", _W, "ratchetDispatchRetryCount", "count"),
)
_AUTO = "WorkspaceAutoIteration"
_OPTIONAL_GEN_2 = (
    (_MODE_ON_WORKSPACE,),  # 2026-04-01
    (_AUTO_STATUS_ON_WORKSPACE,),
    *((c,) for c in _DISPATCH_ON_WORKSPACE),  # 2026-07-15
)
_OPTIONAL_GEN_3 = (
    # 2026-07-26 moved auto-iteration to its own table (a missing row: STANDARD, no status).
    (SourceColumn("mode", _AUTO, "mode", WORKSPACE_MODE, default="STANDARD"), _MODE_ON_WORKSPACE),
    (
        SourceColumn(
            "auto_iteration_status", _AUTO, "status", AUTO_ITERATION_STATUS, nullable=True
        ),
        _AUTO_STATUS_ON_WORKSPACE,
    ),
    (
        SourceColumn(
            "ratchet_dispatch_outcome",
            _RATCHET,
            "dispatchOutcome",
            RATCHET_DISPATCH_OUTCOME,
            nullable=True,
        ),
    ),
    (
        SourceColumn(
            "ratchet_dispatch_retry_count", _RATCHET, "dispatchRetryCount", "count", default=0
        ),
    ),
    # 2026-07-28
    (SourceColumn("ratchet_dispatch_stalled", _RATCHET, "dispatchStalled", "bool", default=False),),
)

GEN_1 = Generation(
    number=1,
    since="2026-02-11",
    description="ClaudeSession; PR, ratchet and run script on Workspace",
    agent_session_table="ClaudeSession",
    columns=_COMMON + _ON_WORKSPACE,
)
GEN_2 = Generation(
    number=2,
    since="2026-02-12 to 2026-07-25",
    description="AgentSession; PR, ratchet and run script on Workspace",
    agent_session_table="AgentSession",
    columns=_COMMON + _ON_WORKSPACE,
    has_provider=True,
    optional=_OPTIONAL_GEN_2,
)
GEN_3 = Generation(
    number=3,
    since="2026-07-26 on",
    description="AgentSession; PR, ratchet and run script in side tables, ratchet state derived",
    agent_session_table="AgentSession",
    columns=_COMMON + _IN_SIDE_TABLES,
    side_tables=(_PR, _RATCHET, _RUN_SCRIPT),
    has_provider=True,
    derives_ratchet_state=True,
    optional=_OPTIONAL_GEN_3,
)
GENERATIONS: tuple[Generation, ...] = (GEN_3, GEN_2, GEN_1)  # newest first: the first match wins
BY_NUMBER: Mapping[int, Generation] = {g.number: g for g in GENERATIONS}


class UnknownSchemaError(Exception):
    """The app DB matches no known schema generation. Permanent: a retry cannot fix it."""


def missing_from(generation: Generation, catalogue: Mapping[str, frozenset[str]]) -> list[str]:
    """What ``generation`` reads that the database lacks: ``table T`` or ``column T.c``."""
    tables = [f"table {t}" for t in generation.requires if t not in catalogue]
    columns = [
        f"column {table}.{c}"
        for table, needed in generation.requires.items()
        if table in catalogue
        for c in needed
        if c not in catalogue[table]
    ]
    return tables + columns  # a missing table says more than its columns


def match_generation(
    catalogue: Mapping[str, frozenset[str]], where: str = "the app DB"
) -> Generation:
    """The newest generation whose required tables and columns are all in ``catalogue`` (table
    -> column names), resolved against it, or an :class:`UnknownSchemaError` that says what each
    one misses."""
    misses = {}
    for generation in GENERATIONS:
        missing = missing_from(generation, catalogue)
        if not missing:
            return generation.resolve(catalogue)
        misses[generation.number] = missing
    if "Project" not in catalogue and "Workspace" not in catalogue:
        raise UnknownSchemaError(
            f"{where} has no Project or Workspace table: it is not the app's database "
            f"({len(catalogue)} tables found)"
        )
    closest = min(GENERATIONS, key=lambda g: (len(misses[g.number]), -g.number))
    others = "; ".join(
        f"gen {g.number} lacks {_shorten(misses[g.number])}" for g in GENERATIONS if g != closest
    )
    raise UnknownSchemaError(
        f"{where} matches no known schema generation of the app. Closest is "
        f"{closest.label}, which needs {_shorten(misses[closest.number], 8)}; {others}"
    )


def _shorten(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def read_catalogue(conn: sa.Connection) -> dict[str, frozenset[str]]:
    """Table -> column names of the database, in one query (SQLite and PostgreSQL)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        sql = (
            "SELECT m.name, p.name FROM sqlite_master AS m "
            "JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table'"
        )
    elif dialect == "postgresql":
        sql = (
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = ANY (current_schemas(false))"
        )
    else:
        inspector = sa.inspect(conn)
        return {
            t: frozenset(c["name"] for c in inspector.get_columns(t))
            for t in inspector.get_table_names()
        }
    tables: dict[str, set[str]] = {}
    for table, column in conn.exec_driver_sql(sql):
        tables.setdefault(table, set()).add(column)
    return {table: frozenset(columns) for table, columns in tables.items()}


def detect_generation(engine: sa.Engine) -> Generation:
    """The schema generation of the app DB behind ``engine`` (see :func:`match_generation`)."""
    with engine.connect() as conn:
        catalogue = read_catalogue(conn)
    return match_generation(catalogue, where=f"app DB {safe_url(engine.url)}")


def ratchet_state(
    *,
    enabled: bool,
    pr_state: str,
    pr_ci_status: str,
    has_merge_conflict: bool,
    review_state: str | None,
) -> str:
    """Gen 3's ratchet state, projected from the cached PR observation by the app's rule
    (src/shared/core/ratchet-state.ts): a failing build outranks a merge conflict, and a conflict
    outranks pending CI."""
    if not enabled:
        return "IDLE"
    if pr_state == "MERGED":
        return "MERGED"
    if pr_state not in ACTIVE_PR_STATES:
        return "IDLE"
    if pr_ci_status == "FAILURE":
        return "CI_FAILED"
    if has_merge_conflict:
        return "MERGE_CONFLICT"
    if pr_ci_status in ("PENDING", "UNKNOWN"):
        return "CI_RUNNING"
    if review_state == "CHANGES_REQUESTED":
        return "REVIEW_PENDING"
    return "READY"
