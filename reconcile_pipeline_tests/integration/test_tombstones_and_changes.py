"""Removal tombstones and the change feed of workspace_snapshot, on real SQLite and PostgreSQL,
with real concurrent processes where it matters (docs/CONTRACT.md, "The merge rule" and "The
change feed"; the app's store: workspace-snapshot-store.service.ts, removalTimestamps)."""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import select
import time

import psycopg2
import pytest
import sqlalchemy as sa

from reconcile_pipeline.core import change_feed
from reconcile_pipeline.core.store import SnapshotStore

HOUR = 3_600_000


# ---- tombstones -----------------------------------------------------------------------------


def test_a_removal_keeps_older_writes_out_and_lets_newer_ones_in(store):
    store.upsert("w", {"project_id": "p", "name": "a"}, source="event", ts=100)
    assert store.remove("w", source="event", ts=500)
    assert store.tombstone("w")["removed_at"] == 500
    # A run that read the app DB before the removal writes with its poll start: left out.
    late = store.upsert("w", {"project_id": "p", "name": "stale"}, source="reconciliation", ts=400)
    equal = store.upsert("w", {"project_id": "p", "name": "same ms"}, source="event", ts=500)
    assert late.tombstoned == ("w",) and equal.tombstoned == ("w",)
    assert late.written == equal.written == 0 and store.get("w") is None
    # A newer write re-creates it and clears the tombstone.
    fresh = store.upsert("w", {"project_id": "p", "name": "back"}, source="event", ts=501)
    assert fresh.inserted_ids == ("w",) and store.get("w")["name"] == "back"
    assert store.tombstone("w") is None


def test_a_workspace_never_written_gets_a_tombstone_too(store):
    store.remove("ghost", source="event", ts=1_000)
    result = store.upsert("ghost", {"project_id": "p"}, source="reconciliation", ts=900)
    assert result.tombstoned == ("ghost",) and store.get("ghost") is None


def test_a_write_without_ts_is_newer_than_a_removal_before_it(store):
    store.upsert("w", {"project_id": "p"}, source="event")
    store.remove("w", source="event")
    time.sleep(0.01)
    assert store.upsert("w", {"project_id": "p", "name": "again"}, source="event").inserted == 1


def test_stale_cleanup_skips_rows_written_meanwhile_and_marks_the_rest(store):
    store.upsert_many(
        [{"workspace_id": w, "project_id": "p"} for w in ("old", "new")], source="r", ts=100
    )
    store.upsert("new", {"name": "created during the run"}, source="event", ts=300)
    assert store.remove_many(["old", "new"], not_written_after=200, source="reconciliation") == 1
    assert store.get("new") is not None and store.tombstone("new") is None
    assert store.tombstone("old")["source"] == "reconciliation"


def test_tombstones_expire_after_the_grace_and_are_purged(db_url):
    store = SnapshotStore(db_url, tombstone_grace_ms=200)
    try:
        store.upsert("w", {"project_id": "p"}, source="event", ts=100)
        store.remove("w", source="event", ts=1_000)
        assert store.upsert("w", {"project_id": "p"}, source="r", ts=900).tombstoned == ("w",)
        time.sleep(0.3)  # the grace is over: the same stale write re-creates the row
        assert store.upsert("w", {"project_id": "p"}, source="r", ts=900).inserted == 1
        store.remove("x", source="event")
        time.sleep(0.3)
        assert store.purge(changes_before_ms=0)[0] >= 1 and store.tombstone("x") is None
    finally:
        store.engine.dispose()


# A run that read the app DB, then writes with its poll start, while another process removes
# the row in between (orchestrated) or at any moment (raced).


def _run_process(url: str, ids: list[str], go, poll_taken, queue, grace_ms: int) -> None:
    store = SnapshotStore(url, create=False, tombstone_grace_ms=grace_ms)
    results = []
    for workspace_id in ids:
        poll_start = store.now_ms()
        poll_taken.put(workspace_id)
        go.get(timeout=60)  # the remover has done its part (or raced it)
        result = store.upsert_many(
            [{"workspace_id": workspace_id, "project_id": "p", "name": "from the run"}],
            source="reconciliation",
            ts=poll_start,
            skip_unchanged=True,
        )
        results.append((workspace_id, result.tombstoned))
    queue.put(results)
    store.engine.dispose()


def _remove_process(url: str, ids: list[str], poll_taken, go, raced: bool, grace_ms: int):
    store = SnapshotStore(url, create=False, tombstone_grace_ms=grace_ms)
    rng = random.Random(7)
    for workspace_id in ids:
        assert poll_taken.get(timeout=60) == workspace_id
        time.sleep(0.002)  # the removal comes after the run's poll start
        if raced:  # let the run write while the removal is in flight
            go.put(True)
            time.sleep(rng.uniform(0, 0.01))
            store.remove(workspace_id, source="app-archive")
        else:
            store.remove(workspace_id, source="app-archive")
            go.put(True)
    store.engine.dispose()


def _race(url: str, raced: bool, grace_ms: int, rounds: int = 20) -> list[str]:
    """Returns the workspaces that exist at the end: each was removed after the run's poll."""
    seed = SnapshotStore(url)
    ids = [f"w{i:03d}" for i in range(rounds)]
    seed.upsert_many([{"workspace_id": w, "project_id": "p"} for w in ids], source="seed", ts=1)
    ctx = mp.get_context("spawn")
    go, poll_taken, queue = ctx.Queue(), ctx.Queue(), ctx.Queue()
    run = ctx.Process(target=_run_process, args=(url, ids, go, poll_taken, queue, grace_ms))
    remover = ctx.Process(target=_remove_process, args=(url, ids, poll_taken, go, raced, grace_ms))
    run.start()
    remover.start()
    queue.get(timeout=300)
    for p in (run, remover):
        p.join(timeout=60)
        assert p.exitcode == 0
    alive = sorted(seed.workspace_ids())
    seed.engine.dispose()
    return alive


@pytest.mark.parametrize("raced", [False, True], ids=["between", "racing"])
def test_a_row_removed_while_a_run_that_read_it_earlier_writes_stays_removed(db_url, raced):
    assert _race(db_url, raced, grace_ms=600_000) == []


def test_without_tombstones_the_run_would_bring_removed_rows_back(db_url):
    """The control: tombstones that expire at once (grace 0) are no tombstones. The same
    orchestrated sequence then re-creates every removed row: what the test above guards."""
    assert len(_race(db_url, raced=False, grace_ms=0, rounds=5)) == 5


# ---- the change feed --------------------------------------------------------------------------


def test_every_change_is_recorded_once_and_nothing_else(store):
    start = (store.changes(limit=10_000) or [change_feed.Change(0, "", "", 0, "", "", 0)])[-1].seq
    store.upsert("w", {"project_id": "p", "name": "a"}, source="event", ts=10)
    # The pipeline's unchanged write, and a stale one: the row does not change, nothing recorded.
    store.upsert_many([{"workspace_id": "w", "name": "a"}], source="r", ts=30, skip_unchanged=True)
    store.upsert("w", {"name": "old"}, source="event", ts=5)
    store.upsert("w", {"name": "b"}, source="event", ts=40)
    store.remove("w", source="app")
    store.remove("w", source="app")  # nothing left to remove: no change
    got = [(c.workspace_id, c.kind, c.version, c.source) for c in store.changes(after=start)]
    assert got == [
        ("w", "insert", 1, "event"),
        ("w", "update", 2, "event"),
        ("w", "remove", 2, "app"),
    ]
    seqs = [c.seq for c in store.changes(after=start)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert [c.seq for c in store.changes(after=seqs[0])] == seqs[1:]


def test_a_rolled_back_write_leaves_no_change(store):
    store.upsert("w", {"project_id": "p"}, source="event", ts=10)
    before = store.changes(limit=10_000)
    with pytest.raises(RuntimeError, match="abort"), store._write_transaction() as conn:
        store._merge_batch(conn, {"w": {"name": "never"}}, {}, "event", 20, False, None)
        raise RuntimeError("abort")
    assert store.changes(limit=10_000) == before and store.get("w")["name"] is None


def test_old_changes_are_purged_and_their_seqs_never_come_back(store):
    store.upsert("w", {"project_id": "p"}, source="event", ts=10)
    last = store.changes()[-1].seq
    assert store.purge(changes_before_ms=store.now_ms() + HOUR)[1] >= 1
    assert store.changes() == []
    # A reader's cursor still holds after the feed emptied: the next change comes after it.
    store.upsert("w", {"name": "after the purge"}, source="event", ts=20)
    assert [c.seq > last for c in store.changes(after=last)] == [True]


def _feed_writer(url: str, proc: int, queue) -> None:
    store = SnapshotStore(url, create=False)
    rng = random.Random(proc)
    for i in range(40):
        workspace_id = f"w{rng.randrange(6)}"
        if rng.random() < 0.2:
            store.remove(workspace_id, source=f"p{proc}")
        else:
            store.upsert(
                workspace_id, {"project_id": "p", "name": f"{proc}-{i}"}, source=f"p{proc}"
            )
        if i % 10 == 3:  # a write that rolls back: never announced, never recorded
            try:
                with store._write_transaction() as conn:
                    store._merge_batch(
                        conn,
                        {f"rolled-{proc}-{i}": {"name": "x"}},
                        {f"rolled-{proc}-{i}": "p"},
                        f"p{proc}",
                        None,
                        False,
                        None,
                    )
                    raise RuntimeError("rollback")
            except RuntimeError:
                pass
    queue.put(proc)
    store.engine.dispose()


@pytest.mark.postgres
def test_listen_sees_every_committed_change_once_in_commit_order(pg_url):
    store = SnapshotStore(pg_url)
    dsn = sa.make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    listener = psycopg2.connect(dsn)
    listener.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    listener.cursor().execute(f"LISTEN {change_feed.CHANNEL}")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_feed_writer, args=(pg_url, p, queue)) for p in range(4)]
    for p in procs:
        p.start()
    heard: list[dict] = []
    polled: list[change_feed.Change] = []  # a reader following the feed by cursor, meanwhile

    def listen(wait: float) -> None:
        if select.select([listener], [], [], wait)[0]:
            listener.poll()
            while listener.notifies:
                heard.append(json.loads(listener.notifies.pop(0).payload))

    def follow() -> None:
        polled.extend(store.changes(after=polled[-1].seq if polled else 0, limit=10_000))

    done, deadline = 0, time.monotonic() + 300
    while done < len(procs) and time.monotonic() < deadline:
        listen(0.05)
        follow()
        while not queue.empty():
            queue.get()
            done += 1
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for _ in range(5):  # the last notifications, delivered at the last commits
        listen(0.1)
    follow()
    committed = store.changes(limit=10_000)
    listener.close()
    store.engine.dispose()

    assert committed and not [c for c in committed if c.workspace_id.startswith("rolled")]
    # Every committed change heard exactly once, in commit order; nothing else heard.
    assert [h["seq"] for h in heard] == [c.seq for c in committed]
    assert [(h["workspace_id"], h["version"], h["kind"]) for h in heard] == [
        (c.workspace_id, c.version, c.kind) for c in committed
    ]
    # The cursor reader, reading while the writers wrote, skipped nothing and saw nothing twice.
    assert [c.seq for c in polled] == [c.seq for c in committed]
    # Per workspace, the versions follow each other: an insert after a removal starts again.
    by_workspace: dict[str, list] = {}
    for c in committed:
        by_workspace.setdefault(c.workspace_id, []).append(c)
    for changes in by_workspace.values():
        for before, after in zip(changes, changes[1:], strict=False):
            if after.kind == "insert":
                assert before.kind == "remove"
            else:
                assert after.version == before.version + (after.kind == "update")
