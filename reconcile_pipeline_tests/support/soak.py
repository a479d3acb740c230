"""The soak's writer and reader processes (``multiprocessing`` spawn targets): the app's event
writers, each writing whole field groups through the store, and a reader of row versions."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from reconcile_pipeline.core.fields import (
    AUTO_ITERATION_STATUS,
    GROUPS,
    PENDING_REQUEST_TYPE,
    PR_CI_STATUS,
    PR_STATE,
    RATCHET_DISPATCH_OUTCOME,
    RATCHET_STATE,
    RUN_SCRIPT_STATUS,
    WORKSPACE_MODE,
    WORKSPACE_STATUS,
)
from reconcile_pipeline.core.store import SnapshotStore
from reconcile_pipeline_tests.support.databases import engine_for

# Groups the app's event-driven writers own (reconciliation is the pipeline's).
EVENT_GROUPS = ("workspace", "pr", "session", "ratchet", "run_script")
# Live statuses only: an ARCHIVED row would be pruned.
LIVE_STATUS = tuple(s for s in WORKSPACE_STATUS if s != "ARCHIVED")
PENDING = (None, *PENDING_REQUEST_TYPE)


def event_values(group: str, truth: Mapping[str, Any], writer: int, i: int, rng: random.Random):
    """Values for one event write of ``group``: every field of the group, deliberately not the
    authoritative (app DB) combination, so a later reconciliation has something to repair."""
    tag = f"{writer}-{i}"
    if group == "workspace":
        return {
            "name": f"event name {tag}",
            "status": rng.choice([s for s in LIVE_STATUS if s != truth["status"]]),
            "created_at": 1_600_000_000_000 + writer * 1_000_000 + i,
            "branch_name": f"event/{tag}",
            "has_had_sessions": not truth["has_had_sessions"],
            "mode": rng.choice(WORKSPACE_MODE),
            "auto_iteration_status": rng.choice((None, *AUTO_ITERATION_STATUS)),
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
        summaries = [] if rng.random() < 0.5 else [_summary(tag, working)]
        return {
            "is_working": working,
            "pending_request_type": pending,
            "session_summaries": json.dumps(summaries, sort_keys=True, separators=(",", ":")),
        }
    if group == "ratchet":
        combos = [
            (e, s)
            for e in (False, True)
            for s in RATCHET_STATE
            if (e, s) != (truth["ratchet_enabled"], truth["ratchet_state"])
        ]
        enabled, state = rng.choice(combos)
        return {
            "ratchet_enabled": enabled,
            "ratchet_state": state,
            "ratchet_dispatch_outcome": rng.choice((None, *RATCHET_DISPATCH_OUTCOME)),
            "ratchet_dispatch_retry_count": rng.randrange(4),
            "ratchet_dispatch_stalled": rng.random() < 0.3,
        }
    if group == "run_script":
        return {
            "run_script_status": rng.choice(
                [s for s in RUN_SCRIPT_STATUS if s != truth["run_script_status"]]
            )
        }
    raise ValueError(group)


def _summary(tag: str, working: bool) -> dict[str, Any]:
    return {
        "sessionId": f"event-session-{tag}",
        "name": None,
        "workflow": "implement",
        "model": "sonnet",
        "persistedStatus": "RUNNING" if working else "IDLE",
        "runtimePhase": "running" if working else "idle",
        "processState": "alive",
        "activity": "WORKING" if working else "IDLE",
        "updatedAt": "2026-08-01T00:00:00.000Z",
        "lastExit": None,
        "errorMessage": None,
    }


def soak_writer(url: str, writer: int, truth: dict, stop, queue, pause_s: float) -> None:
    """An event-driven writer of the app: upserts one whole group of a random workspace with
    ``ts = store.now_ms()`` (the pipeline DB's clock), until ``stop`` is set. Reports every
    write: (workspace, group, ts, values, applied, committed_by), the last one the DB clock
    read right after the commit."""

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


def group_values(row: Mapping[str, Any], group: str) -> dict[str, Any]:
    return {f: row[f] for f in GROUPS[group]}
