"""The workspace snapshot store: the ``workspace_snapshot`` table, the merge rule, removal
tombstones and the change feed (docs/CONTRACT.md, "The merge rule").

Every write, single or batch, is one transaction that first locks the workspaces it touches
(a transaction-level advisory lock per workspace and ``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), merges in Python and writes back only rows that changed, with
their changes appended to the feed. So the per-group rule "strictly newer timestamp wins" and
the tombstone rule "a write stamped at or before a removal does not bring the row back" hold
whatever the interleaving of writers in other processes: no lost update, no resurrection.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from reconcile_pipeline.core import change_feed, rules, session_summaries
from reconcile_pipeline.core import fields as F
from reconcile_pipeline.core.datetimes import parse_datetime_ms
from reconcile_pipeline.core.db import (
    add_missing_columns,
    create_db_engine,
    db_now_ms,
    is_retryable,
)
from reconcile_pipeline.core.values import plain

TABLE_NAME = "workspace_snapshot"
# How long a removal keeps a write stamped at or before it from re-creating the row (the app's
# workspaceSnapshotRemovalGrace): longer than any run that read the app DB before the removal.
DEFAULT_TOMBSTONE_GRACE_MS = 10 * 60 * 1000
# Rows per statement for IN lists and batches: well under SQLite's and PostgreSQL's bind limits.
CHUNK = 2000
_MAX_ATTEMPTS = 5

_RAW_TYPES: dict[str, sa.types.TypeEngine] = {
    f: (sa.Boolean() if f in F.BOOL_FIELDS else sa.BigInteger() if f in F.INT_FIELDS else sa.Text())
    for f in F.RAW_FIELDS
}


def _server_default(value: Any) -> Any:
    # The default an added column gives the rows already there (an in-place migration).
    # SQLAlchemy renders a plain string server default as a quoted literal.
    if value is False:
        return sa.false()
    if isinstance(value, str | int):
        return str(value)
    return None


schema = sa.MetaData()
workspace_snapshot = sa.Table(
    TABLE_NAME,
    schema,
    sa.Column("workspace_id", sa.String(191), primary_key=True),
    sa.Column("project_id", sa.String(191), nullable=False, index=True),
    sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("source", sa.Text(), nullable=False, server_default=""),
    sa.Column("computed_at", sa.BigInteger(), nullable=False, server_default="0"),
    *[
        sa.Column(
            f,
            _RAW_TYPES[f],
            nullable=f not in F.NOT_NULL_FIELDS,
            server_default=_server_default(F.DEFAULTS[f]),
        )
        for f in F.RAW_FIELDS
    ],
    sa.Column("flow_phase", sa.Text()),
    sa.Column("ci_observation", sa.Text()),
    sa.Column("ratchet_button_animated", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("kanban_column", sa.Text()),
    sa.Column("sidebar_activity_state", sa.Text()),
    sa.Column("sidebar_ci_state", sa.Text()),
    sa.Column("status_reason_code", sa.Text()),
    sa.Column("status_reason_label", sa.Text()),
    sa.Column("status_reason_tone", sa.Text()),
    sa.Column("status_reason_needs_user", sa.Boolean()),
    # The rule set that derived the row (core/rules); NULL in rows older than rule sets.
    sa.Column("rule_set", sa.Text()),
    *[sa.Column(ts, sa.BigInteger(), nullable=False, server_default="0") for ts in F.TS_COLUMNS],
    *[sa.Column(c, sa.Text(), nullable=False, server_default="") for c in F.SOURCE_COLUMNS],
)
# A removed workspace: writes stamped at or before ``removed_at`` do not re-create it, until
# ``expires_at``.
tombstones = sa.Table(
    "workspace_snapshot_tombstone",
    schema,
    sa.Column("workspace_id", sa.String(191), primary_key=True),
    sa.Column("project_id", sa.String(191)),
    sa.Column("removed_at", sa.BigInteger(), nullable=False),
    sa.Column("expires_at", sa.BigInteger(), nullable=False, index=True),
    sa.Column("source", sa.Text(), nullable=False, server_default=""),
)
changes = change_feed.change_table(schema)
COLUMNS: tuple[str, ...] = tuple(c.name for c in workspace_snapshot.columns)
# Columns whose change makes a new version (everything but the write's own bookkeeping).
_CONTENT_COLUMNS = tuple(c for c in COLUMNS if c not in ("version", "source", "computed_at"))


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What one batch did. ``stale_groups`` lists (workspace_id, group) left alone because the
    stored group timestamp was not older than the write's: a fresher write won."""

    inserted_ids: tuple[str, ...] = ()
    updated_ids: tuple[str, ...] = ()
    unchanged: int = 0
    stale_groups: tuple[tuple[str, str], ...] = ()
    versions: Mapping[str, int] = field(default_factory=dict)
    # Workspaces left alone: removed at or after the write's timestamp (a live tombstone).
    tombstoned: tuple[str, ...] = ()

    @property
    def inserted(self) -> int:
        return len(self.inserted_ids)

    @property
    def updated(self) -> int:
        return len(self.updated_ids)

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    @property
    def written_ids(self) -> tuple[str, ...]:
        return self.inserted_ids + self.updated_ids


def validate_update(update: Mapping[str, Any]) -> dict[str, Any]:
    """Clean and validate the raw fields of an update; ``project_id`` is passed through.

    DateTime fields take what writers send: epoch ms, a ``datetime`` (naive means UTC) or
    ISO-8601 text (no offset means UTC); they are stored as epoch ms. Session summaries take a
    list of summaries or its JSON text; they are stored as canonical JSON."""
    clean: dict[str, Any] = {}
    for key, raw in update.items():
        if key in ("workspace_id", "project_id"):
            continue
        value = plain(raw)
        if key in F.TIMESTAMP_FIELDS and not isinstance(value, bool):
            try:
                value = parse_datetime_ms(value)
            except ValueError as exc:
                raise ValueError(f"field {key!r}: {exc}") from None
        if key in F.JSON_FIELDS and value is not None:
            try:  # a list of summaries or its JSON text, stored as canonical JSON
                value = session_summaries.canonical(value)
            except ValueError as exc:
                raise ValueError(f"field {key!r}: {exc}") from None
        F.validate_value(key, value)
        clean[key] = value
    return clean


def _row_dict(row: sa.Row) -> dict[str, Any]:
    out = dict(row._mapping)
    for f in (*F.BOOL_FIELDS, *F.DERIVED_BOOL_FIELDS):
        if out.get(f) is not None:
            out[f] = bool(out[f])
    return out


def _defaults(workspace_id: str, project_id: str, rule_set: str) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(F.DEFAULTS)
    row.update({ts: 0 for ts in F.TS_COLUMNS})
    row.update({c: "" for c in F.SOURCE_COLUMNS})
    row.update(workspace_id=workspace_id, project_id=project_id, version=0, source="")
    row.update(computed_at=0, rule_set=rule_set)
    row.update(rules.derive(row, rule_set))
    return row


def merge(
    stored: Mapping[str, Any],
    update: Mapping[str, Any],
    *,
    ts: int | None,
    now: int,
    skip_unchanged: bool = False,
    rule_set: str | None = None,
    source: str = "",
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Apply the merge rule to one stored row. Returns (row, written groups, stale groups).

    ``ts=None`` stamps each group with the database clock ``now``, or one past the stored group
    timestamp when that is not older, so the later of two writes in the same millisecond wins.
    With ``skip_unchanged`` a group whose present values already equal the stored ones is left
    alone (its timestamp is not advanced): the pipeline's way to write nothing when nothing changed.
    ``rule_set`` (None: keep the row's) names the rules the derived fields follow; they are
    recomputed on every merge, so a row is always its rule set's derivation of its raw fields.
    A written group records ``source`` as its writer.
    """
    row = dict(stored)
    if rule_set is not None:
        row["rule_set"] = rule_set
    written, stale = [], []
    for group, group_fields in F.GROUPS.items():
        present = [f for f in group_fields if f in update]
        if not present:
            continue
        ts_col = F.TS_COLUMN[group]
        group_ts = max(now, row[ts_col] + 1) if ts is None else ts
        if group_ts <= row[ts_col]:
            stale.append(group)
            continue
        if skip_unchanged and all(row[f] == update[f] for f in present):
            continue
        for f in present:
            row[f] = update[f]
        row[ts_col] = group_ts
        row[F.SOURCE_COLUMN[group]] = source
        written.append(group)
    row.update(rules.derive(row, row.get("rule_set")))
    return row, written, stale


class SnapshotStore:
    """The ``workspace_snapshot`` table in the pipeline DB (any SQLAlchemy URL).

    ``rule_set`` is the rule set of rows this store creates when a write names none (the app's
    current rules by default); a write that names one moves the row to it."""

    def __init__(
        self,
        url: str | sa.URL | Engine,
        *,
        create: bool = True,
        rule_set: str = rules.LATEST,
        tombstone_grace_ms: int = DEFAULT_TOMBSTONE_GRACE_MS,
    ) -> None:
        if rule_set not in rules.RULE_SETS:
            raise ValueError(f"unknown rule set {rule_set!r}; expected one of {list(rules.NAMES)}")
        if tombstone_grace_ms < 0:
            raise ValueError(f"tombstone_grace_ms must be >= 0, got {tombstone_grace_ms!r}")
        self.engine = url if isinstance(url, Engine) else create_db_engine(url)
        self.rule_set = rule_set
        self.tombstone_grace_ms = tombstone_grace_ms
        if create:
            self.migrate()

    # -- schema ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create the table, or add the columns an older version of it lacks."""
        with self.engine.begin() as conn:
            schema.create_all(conn, tables=[workspace_snapshot, tombstones, changes])
            add_missing_columns(conn, workspace_snapshot)

    def now_ms(self) -> int:
        """The pipeline DB's clock in epoch ms: the one clock every writer should stamp with."""
        with self.engine.connect() as conn:
            return db_now_ms(conn)

    # -- writes ---------------------------------------------------------------------------

    def upsert(
        self,
        workspace_id: str,
        update: Mapping[str, Any],
        *,
        source: str,
        ts: int | None = None,
        rule_set: str | None = None,
    ) -> UpsertResult:
        """Merge one workspace's update (raw fields, plus ``project_id`` on first insert)."""
        return self.upsert_many(
            [{**update, "workspace_id": workspace_id}], source=source, ts=ts, rule_set=rule_set
        )

    def upsert_many(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        source: str,
        ts: int | None,
        skip_unchanged: bool = False,
        rule_set: str | None = None,
    ) -> UpsertResult:
        """Merge a batch of updates (each with ``workspace_id``) in one transaction; with
        ``rule_set`` every row of the batch is derived by those rules from now on."""
        if rule_set is not None and rule_set not in rules.RULE_SETS:
            raise ValueError(f"unknown rule set {rule_set!r}; expected one of {list(rules.NAMES)}")
        if ts is not None and (isinstance(ts, bool) or not isinstance(plain(ts), int) or ts <= 0):
            raise ValueError(f"ts must be a positive epoch-ms int or None, got {ts!r}")
        ts = None if ts is None else int(plain(ts))
        updates: dict[str, dict[str, Any]] = {}
        projects: dict[str, str] = {}
        for raw in rows:
            workspace_id = raw.get("workspace_id")
            if not isinstance(workspace_id, str) or not workspace_id:
                raise ValueError(
                    f"each row needs a non-empty str workspace_id, got {workspace_id!r}"
                )
            if workspace_id in updates:
                raise ValueError(f"workspace_id {workspace_id!r} appears twice in one batch")
            updates[workspace_id] = validate_update(raw)
            project_id = plain(raw.get("project_id"))
            if project_id is not None:
                if not isinstance(project_id, str) or not project_id:
                    raise ValueError(f"bad project_id {project_id!r} for {workspace_id!r}")
                projects[workspace_id] = project_id
        if not updates:
            return UpsertResult()
        return self._retrying(
            lambda conn: self._merge_batch(
                conn, updates, projects, source, ts, skip_unchanged, rule_set
            )
        )

    @contextmanager
    def _write_transaction(self) -> Iterator[Connection]:
        # SQLite: BEGIN IMMEDIATE takes the write lock up front (see db.create_db_engine).
        with self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def _retrying(self, work):
        """Run ``work(conn)`` in a write transaction; deadlocks, serialization failures and
        "database is locked" are retried."""
        for attempt in range(_MAX_ATTEMPTS):
            try:
                with self._write_transaction() as conn:
                    return work(conn)
            except sa.exc.DBAPIError as exc:
                if attempt + 1 == _MAX_ATTEMPTS or not is_retryable(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    @staticmethod
    def _lock_workspaces(conn: Connection, ids: Sequence[str]) -> None:
        """Serialize writers per workspace until the commit, whether its row exists or not (a
        row lock cannot hold a row that is not there: an insert racing a removal). PostgreSQL
        only: SQLite's BEGIN IMMEDIATE already holds the whole database. Sorted ids: every
        writer takes the locks in the same order, so writers do not deadlock."""
        if conn.dialect.name != "postgresql" or not ids:
            return
        conn.execute(
            sa.text(
                "SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) "
                "FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS t(id, n) ORDER BY n"
            ),
            {"ids": sorted(ids)},
        )

    @staticmethod
    def _live_tombstones(conn: Connection, ids: Sequence[str], now: int) -> dict[str, int]:
        """workspace_id -> removed_at of every tombstone of ``ids`` that has not expired."""
        found: dict[str, int] = {}
        for start in range(0, len(ids), CHUNK):
            query = sa.select(tombstones.c.workspace_id, tombstones.c.removed_at).where(
                tombstones.c.workspace_id.in_(ids[start : start + CHUNK]),
                tombstones.c.expires_at > now,
            )
            found.update((w, r) for w, r in conn.execute(query))
        return found

    def _lock_rows(self, conn: Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), CHUNK):
            query = (
                sa.select(workspace_snapshot)
                .where(workspace_snapshot.c.workspace_id.in_(ids[start : start + CHUNK]))
                .order_by(workspace_snapshot.c.workspace_id)
            )
            if conn.dialect.name != "sqlite":
                query = query.with_for_update()
            found.update((r.workspace_id, _row_dict(r)) for r in conn.execute(query))
        return found

    def _merge_batch(
        self,
        conn: Connection,
        updates: dict[str, dict[str, Any]],
        projects: dict[str, str],
        source: str,
        ts: int | None,
        skip_unchanged: bool,
        rule_set: str | None,
    ) -> UpsertResult:
        # Sorted ids: every writer locks rows in the same order, so batches do not deadlock.
        ids = sorted(updates)
        self._lock_workspaces(conn, ids)
        now = db_now_ms(conn)
        # A workspace removed at or after this write's time stays removed (its tombstone); a
        # newer write re-creates it and clears the tombstone.
        removed = self._live_tombstones(conn, ids, now)
        tombstoned = [w for w in ids if w in removed and (now if ts is None else ts) <= removed[w]]
        if tombstoned:
            ids = [w for w in ids if w not in set(tombstoned)]
        revived = [w for w in ids if w in removed]
        stored = self._lock_rows(conn, ids)
        missing = [w for w in ids if w not in stored]
        no_project = [w for w in missing if w not in projects]
        if no_project:
            raise ValueError(
                f"project_id is required on the first upsert of a workspace: {no_project[:5]}"
            )
        inserted: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        stale: list[tuple[str, str]] = []
        versions: dict[str, int] = {}
        unchanged = 0

        def apply(workspace_id: str, base: dict[str, Any], is_new: bool) -> None:
            nonlocal unchanged
            row, written, stale_groups = merge(
                base,
                updates[workspace_id],
                ts=ts,
                now=now,
                skip_unchanged=skip_unchanged and not is_new,  # a new row stamps every group
                rule_set=rule_set,
                source=source,
            )
            stale.extend((workspace_id, g) for g in stale_groups)
            if workspace_id in projects and row["project_id"] != projects[workspace_id]:
                row["project_id"] = projects[workspace_id]  # a workspace moved project
            if not is_new and all(row[c] == base[c] for c in _CONTENT_COLUMNS):
                unchanged += 1
                versions[workspace_id] = base["version"]
                return
            row.update(version=base["version"] + 1, source=source, computed_at=now)
            versions[workspace_id] = row["version"]
            (inserted if is_new else changed).append(row)

        for workspace_id in ids:
            if workspace_id in stored:
                apply(workspace_id, stored[workspace_id], is_new=False)
            else:
                base = _defaults(workspace_id, projects[workspace_id], rule_set or self.rule_set)
                apply(workspace_id, base, is_new=True)

        if inserted:
            inserted = self._insert_new(conn, inserted, updates, projects, apply_existing=apply)
        if changed:
            stmt = (
                workspace_snapshot.update()
                .where(workspace_snapshot.c.workspace_id == sa.bindparam("b_workspace_id"))
                .values({c: sa.bindparam(f"b_{c}") for c in COLUMNS if c != "workspace_id"})
            )
            for start in range(0, len(changed), CHUNK):
                conn.execute(
                    stmt,
                    [{f"b_{k}": v for k, v in r.items()} for r in changed[start : start + CHUNK]],
                )
        if revived:
            conn.execute(tombstones.delete().where(tombstones.c.workspace_id.in_(revived)))
        change_feed.append(
            conn,
            changes,
            [(r["workspace_id"], r["project_id"], r["version"], "insert") for r in inserted]
            + [(r["workspace_id"], r["project_id"], r["version"], "update") for r in changed],
            source=source,
            now=now,
        )
        return UpsertResult(
            inserted_ids=tuple(r["workspace_id"] for r in inserted),
            updated_ids=tuple(r["workspace_id"] for r in changed),
            unchanged=unchanged,
            stale_groups=tuple(stale),
            versions=versions,
            tombstoned=tuple(tombstoned),
        )

    def _insert_new(self, conn, rows, updates, projects, *, apply_existing) -> list[dict]:
        """Insert rows that did not exist when locked. On PostgreSQL another writer may have
        inserted one since: those conflict, get locked and merged like existing rows."""
        if conn.dialect.name == "sqlite":
            # BEGIN IMMEDIATE holds the database write lock: nobody inserted since we looked.
            for start in range(0, len(rows), CHUNK):
                conn.execute(workspace_snapshot.insert(), rows[start : start + CHUNK])
            return rows
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        done: set[str] = set()
        for start in range(0, len(rows), CHUNK):
            stmt = (
                pg_insert(workspace_snapshot)
                .values(rows[start : start + CHUNK])
                .on_conflict_do_nothing(index_elements=["workspace_id"])
                .returning(workspace_snapshot.c.workspace_id)
            )
            done.update(conn.execute(stmt).scalars())
        lost = sorted(r["workspace_id"] for r in rows if r["workspace_id"] not in done)
        if lost:
            # Re-merge against what the concurrent writer committed (now locked by us).
            for workspace_id, base in self._lock_rows(conn, lost).items():
                apply_existing(workspace_id, base, False)
        return [r for r in rows if r["workspace_id"] in done]

    def remove(self, workspace_id: str, *, source: str = "", ts: int | None = None) -> bool:
        return self.remove_many([workspace_id], source=source, ts=ts) == 1

    def remove_many(
        self,
        ids: Iterable[str],
        *,
        not_written_after: int | None = None,
        source: str = "",
        ts: int | None = None,
    ) -> int:
        """Delete snapshots and leave a tombstone for each: a write stamped at or before the
        removal (``ts``, default the pipeline DB's clock) does not re-create the row for the
        grace period. With ``not_written_after`` (epoch ms, the poll start) a row any of whose
        groups was written at or after it survives, without a tombstone: a workspace created
        while the pipeline ran is not stale. A workspace that has no row gets its tombstone too
        (a run that read the app DB before the removal must not create it)."""
        ids = sorted(set(ids))
        if not ids:
            return 0
        return self._retrying(lambda conn: self._remove(conn, ids, not_written_after, source, ts))

    def _remove(self, conn, ids, not_written_after, source, ts) -> int:
        self._lock_workspaces(conn, ids)
        now = db_now_ms(conn)
        removed_at = now if ts is None else int(ts)
        gone: list[tuple[str, str, int]] = []
        for start in range(0, len(ids), CHUNK):
            cond = workspace_snapshot.c.workspace_id.in_(ids[start : start + CHUNK])
            if not_written_after is not None:
                cond = sa.and_(
                    cond, *[workspace_snapshot.c[ts] < not_written_after for ts in F.TS_COLUMNS]
                )
            stmt = (
                workspace_snapshot.delete()
                .where(cond)
                .returning(
                    workspace_snapshot.c.workspace_id,
                    workspace_snapshot.c.project_id,
                    workspace_snapshot.c.version,
                )
            )
            gone.extend(tuple(r) for r in conn.execute(stmt))
        still = set(self._lock_rows(conn, ids))  # rows that survived (written meanwhile)
        marked = [w for w in ids if w not in still]
        previous = self._live_tombstones(conn, marked, now)
        project_of = {w: p for w, p, _ in gone}
        conn.execute(tombstones.delete().where(tombstones.c.workspace_id.in_(marked)))
        if marked:
            conn.execute(
                tombstones.insert(),
                [
                    {
                        "workspace_id": w,
                        "project_id": project_of.get(w),
                        "removed_at": max(removed_at, previous.get(w, removed_at)),
                        "expires_at": now + self.tombstone_grace_ms,
                        "source": source,
                    }
                    for w in marked
                ],
            )
        change_feed.append(
            conn, changes, [(w, p, v, "remove") for w, p, v in gone], source=source, now=now
        )
        return len(gone)

    # -- the change feed and tombstones ------------------------------------------------------

    def changes(self, after: int = 0, limit: int = 1000) -> list[change_feed.Change]:
        """Changes committed after the cursor ``after`` (a ``seq``), oldest first."""
        with self.engine.connect() as conn:
            return change_feed.changes_after(conn, changes, after, limit)

    def purge(self, *, changes_before_ms: int) -> tuple[int, int]:
        """Drop expired tombstones and changes older than ``changes_before_ms`` (the feed's
        retention). Returns (tombstones, changes) dropped."""

        def work(conn: Connection) -> tuple[int, int]:
            now = db_now_ms(conn)
            dropped = conn.execute(tombstones.delete().where(tombstones.c.expires_at <= now))
            return dropped.rowcount, change_feed.purge(conn, changes, changes_before_ms)

        return self._retrying(work)

    def tombstone(self, workspace_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(tombstones).where(tombstones.c.workspace_id == workspace_id)
            ).first()
        return None if row is None else dict(row._mapping)

    # -- reads ----------------------------------------------------------------------------

    def get(self, workspace_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(workspace_snapshot).where(
                    workspace_snapshot.c.workspace_id == workspace_id
                )
            ).first()
        return None if row is None else _row_dict(row)

    def by_project(self, project_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(workspace_snapshot)
                .where(workspace_snapshot.c.project_id == project_id)
                .order_by(workspace_snapshot.c.workspace_id)
            )
            return [_row_dict(r) for r in rows]

    def workspace_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(workspace_snapshot.c.workspace_id)).scalars())

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(workspace_snapshot)
            ).scalar_one()

    def read_frame(self, project_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """All snapshots (of some projects) as a frame with nullable dtypes, in one query."""
        query = sa.select(workspace_snapshot).order_by(workspace_snapshot.c.workspace_id)
        if project_ids is not None:
            query = query.where(workspace_snapshot.c.project_id.in_(list(project_ids)))
        with self.engine.connect() as conn:
            result = conn.execute(query)
            # object first: a float64 detour would round integers beyond 2**53.
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()), dtype=object)
        return snapshot_dtypes(frame)


def snapshot_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable pandas dtypes per column kind, so frames from SQLite and PostgreSQL compare equal."""
    frame = frame.copy()
    for column in frame.columns:
        if column in F.BOOL_FIELDS or column in F.DERIVED_BOOL_FIELDS:
            frame[column] = frame[column].astype("boolean")
        elif (
            column in F.INT_FIELDS
            or column in F.TS_COLUMNS
            or column
            in (
                "version",
                "computed_at",
            )
        ):
            frame[column] = frame[column].astype("Int64")
        else:
            frame[column] = frame[column].astype("object").where(frame[column].notna(), None)
    return frame
