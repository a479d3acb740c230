"""The change feed of ``workspace_snapshot``: what changed, in commit order, for readers that
want to follow the table instead of polling it (docs/CONTRACT.md, "The change feed").

Every change of a row (an insert, an update that bumps its version, a removal) is one row of
``workspace_snapshot_change``, written by the store in the same transaction as the change
itself: a rolled-back write leaves none, a write that changes nothing leaves none. ``seq``
increases in commit order: on PostgreSQL the store takes a transaction lock just before it
appends (the last statement before the commit, so writers wait only for each other's commits);
on SQLite the database write lock already orders every writer. A reader keeps the last ``seq``
it saw as its cursor and asks for what came after it (:func:`changes_after`); nothing committed
later can get a smaller ``seq``, so no change is skipped and none is seen twice.

On PostgreSQL each change is also announced with ``NOTIFY workspace_snapshot_changes`` and a JSON
payload ``{"seq", "workspace_id", "project_id", "version", "kind"}``, delivered at commit (never
for a rolled-back write), in commit order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconcile_pipeline.core.db import id_column

CHANNEL = "workspace_snapshot_changes"
KINDS = ("insert", "update", "remove")
# pg_advisory_xact_lock key that orders the appends of concurrent writers (any constant that
# no other lock of the pipeline DB uses).
_APPEND_LOCK = 0x72656364  # "recd"


def change_table(schema: sa.MetaData) -> sa.Table:
    return sa.Table(
        "workspace_snapshot_change",
        schema,
        id_column("seq"),
        sa.Column("workspace_id", sa.String(191), nullable=False, index=True),
        sa.Column("project_id", sa.String(191), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("changed_at", sa.BigInteger(), nullable=False, index=True),
        # SQLite: AUTOINCREMENT, or a purge that empties the table would hand out old seqs again.
        sqlite_autoincrement=True,
    )


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    workspace_id: str
    project_id: str
    version: int  # the row's version after the change (its last one for a removal)
    kind: str  # insert | update | remove
    source: str  # the writer
    changed_at: int  # pipeline DB clock, epoch ms


def append(
    conn: Connection,
    table: sa.Table,
    changes: Sequence[tuple[str, str, int, str]],
    *,
    source: str,
    now: int,
) -> None:
    """Append (workspace_id, project_id, version, kind) changes inside the writer's transaction;
    call it last, just before the commit."""
    if not changes:
        return
    postgres = conn.dialect.name == "postgresql"
    if postgres:  # commit order = seq order: one appender at a time, until its commit
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK})
    rows = [
        {
            "workspace_id": w,
            "project_id": p,
            "version": v,
            "kind": k,
            "source": source,
            "changed_at": now,
        }
        for w, p, v, k in changes
    ]
    if not postgres:
        conn.execute(table.insert(), rows)
        return
    seqs = conn.execute(table.insert().returning(table.c.seq, sort_by_parameter_order=True), rows)
    payloads = [
        json.dumps(
            {"seq": seq, "workspace_id": w, "project_id": p, "version": v, "kind": k},
            separators=(",", ":"),
        )
        for seq, (w, p, v, k) in zip(seqs.scalars(), changes, strict=True)
    ]
    conn.execute(
        sa.text(
            "SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) payload"
        ),
        {"channel": CHANNEL, "payloads": payloads},
    )


def changes_after(conn: Connection, table: sa.Table, cursor: int, limit: int) -> list[Change]:
    rows = conn.execute(
        sa.select(table).where(table.c.seq > cursor).order_by(table.c.seq).limit(limit)
    )
    return [Change(**r._mapping) for r in rows]


def purge(conn: Connection, table: sa.Table, before_ms: int) -> int:
    """Drop changes older than ``before_ms`` (the feed's retention); returns how many."""
    return conn.execute(table.delete().where(table.c.changed_at < before_ms)).rowcount
