"""No lost update: real writer processes hammer the same rows on PostgreSQL and on SQLite."""

from __future__ import annotations

import multiprocessing as mp
import random

import pytest

from reconcile_pipeline.core.store import SnapshotStore

WORKSPACES = [f"w{i}" for i in range(4)]
PROCESSES = 4
WRITES = 60


def _writer_clock(url: str, proc: int, queue) -> None:
    """ts=None writes (database clock), each with a unique name; report (id, name, version)."""
    store = SnapshotStore(url, create=False)
    rng = random.Random(proc)
    out = []
    for i in range(WRITES):
        workspace_id = rng.choice(WORKSPACES)
        name = f"p{proc}-{i}"
        result = store.upsert(workspace_id, {"name": name}, source=f"proc{proc}")
        out.append((workspace_id, name, result.versions[workspace_id]))
    queue.put(out)


def _writer_explicit(url: str, proc: int, queue) -> None:
    """Batches with explicit, globally unique timestamps in random order across groups."""
    store = SnapshotStore(url, create=False)
    rng = random.Random(100 + proc)
    out = []
    for i in range(WRITES):
        ts = 1_000 + rng.randrange(10_000) * PROCESSES + proc  # unique per process
        batch = []
        for workspace_id in rng.sample(WORKSPACES, 2):
            group = rng.choice(["workspace", "pr", "run_script"])
            update = {
                "workspace": {"name": f"{proc}-{i}", "branch_name": f"b{ts}"},
                "pr": {"pr_number": ts, "pr_url": f"u{ts}"},
                "run_script": {"run_script_status": rng.choice(["IDLE", "RUNNING", "FAILED"])},
            }[group]
            batch.append({"workspace_id": workspace_id, **update})
            out.append((workspace_id, group, ts, update))
        store.upsert_many(batch, source=f"proc{proc}", ts=ts)
    queue.put(out)


def _run(target, url):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, p, queue)) for p in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return [r for chunk in results for r in chunk]


@pytest.mark.parametrize("writer", ["clock", "explicit"])
def test_concurrent_writers_lose_nothing(db_url, writer):
    store = SnapshotStore(db_url)
    store.upsert_many(
        [{"workspace_id": w, "project_id": "p"} for w in WORKSPACES], source="seed", ts=1
    )
    if writer == "clock":
        writes = _run(_writer_clock, db_url)
        for workspace_id in WORKSPACES:
            mine = sorted((v, n) for w, n, v in writes if w == workspace_id)
            # Every write saw the previous one: versions 2..k+1, no two alike, no gap.
            assert [v for v, _ in mine] == list(range(2, len(mine) + 2))
            row = store.get(workspace_id)
            assert row["version"] == len(mine) + 1
            assert row["name"] == mine[-1][1]  # the last committed write holds
    else:
        writes = _run(_writer_explicit, db_url)
        for workspace_id in WORKSPACES:
            row = store.get(workspace_id)
            for group in ("workspace", "pr", "run_script"):
                mine = [(ts, u) for w, g, ts, u in writes if w == workspace_id and g == group]
                if not mine:
                    continue
                ts, update = max(mine, key=lambda t: t[0])
                assert row[f"ts_{group}"] == ts, (workspace_id, group)
                assert {k: row[k] for k in update} == update, (workspace_id, group)
    store.engine.dispose()
