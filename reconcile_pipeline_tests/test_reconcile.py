"""The pure reconciliation steps on frames, against a real store for the round trip."""

import pandas as pd
import pytest

from reconcile_pipeline.core.git_stats import COLUMNS as GIT_COLUMNS
from reconcile_pipeline.core.reconcile import (
    build_authoritative,
    convergence,
    rows_to_write,
    stale_ids,
)
from reconcile_pipeline.core.store import SnapshotStore


def workspaces(n=3, **over):
    rows = []
    for i in range(n):
        row = dict(
            workspace_id=f"w{i}",
            project_id="p1" if i < 2 else "p2",
            name=f"ws {i}",
            status="READY",
            created_at=1_000 + i,
            branch_name=f"b{i}",
            has_had_sessions=True,
            pr_url=None,
            pr_number=None,
            pr_state="NONE",
            pr_ci_status="UNKNOWN",
            pr_updated_at=None,
            has_merge_conflict=False,
            ratchet_enabled=True,
            ratchet_state="IDLE",
            run_script_status="IDLE",
            last_activity_at=None,
        )
        row.update(over.get(i, {}))
        rows.append(row)
    frame = pd.DataFrame(rows)
    for c in ("created_at", "pr_number", "pr_updated_at", "last_activity_at"):
        frame[c] = frame[c].astype("Int64")
    return frame


def git(ids):
    frame = pd.DataFrame(
        {
            "workspace_id": ids,
            "git_total": 1,
            "git_additions": 2,
            "git_deletions": 3,
            "git_has_uncommitted": True,
            "git_reason": None,
            "git_base": "main",
            "git_processes": 2,
        }
    )
    return frame[list(GIT_COLUMNS)]


NO_PROBLEMS = pd.DataFrame(columns=["workspace_id", "field", "value", "reason"])


def test_authoritative_marks_session_group_unknown_without_runtime():
    auth = build_authoritative(workspaces(), NO_PROBLEMS, None, git(["w0", "w1"]))
    assert not auth.session_known
    assert sorted(set(auth.unknown["field"])) == ["is_working", "pending_request_type"]
    assert len(auth.unknown) == 6
    snaps = auth.snapshots.set_index("workspace_id")
    assert snaps.loc["w0", "git_total"] == 1 and pd.isna(snaps.loc["w2", "git_total"])
    assert snaps.loc["w0", "kanban_column"] == "WAITING"


def test_rows_to_write_skips_unchanged_and_unknown_cells(tmp_path):
    store = SnapshotStore(f"sqlite:///{tmp_path / 'p.db'}")
    sessions = pd.DataFrame(
        {"workspace_id": ["w0"], "is_working": [True], "pending_request_type": ["plan_approval"]}
    )
    problems = pd.DataFrame(
        [{"workspace_id": "w1", "field": "status", "value": "WEIRD", "reason": "unknown status"}]
    )
    ws = workspaces(over={1: {"status": pd.NA}})
    auth = build_authoritative(ws, problems, sessions, git(["w0", "w1", "w2"]))
    rows, unchanged = rows_to_write(auth, store.read_frame())
    assert unchanged == 0 and [r["workspace_id"] for r in rows] == ["w0", "w1", "w2"]
    assert "status" not in rows[1] and rows[0]["status"] == "READY"
    assert rows[0]["is_working"] is True and rows[2]["is_working"] is False
    store.upsert_many(rows, source="rec", ts=10, skip_unchanged=True)
    assert store.get("w1")["status"] == "NEW"  # unknown: default kept, never garbage

    rows, unchanged = rows_to_write(auth, store.read_frame())
    assert (rows, unchanged) == ([], 3)

    # An event changes one field: exactly that workspace is sent again.
    store.upsert("w2", {"name": "renamed by event"}, source="event", ts=5)  # older: loses
    store.upsert("w0", {"branch_name": "moved"}, source="event", ts=11)
    rows, unchanged = rows_to_write(auth, store.read_frame())
    assert [r["workspace_id"] for r in rows] == ["w0"] and unchanged == 2


def test_convergence_separates_fresher_events_from_mismatches(tmp_path):
    store = SnapshotStore(f"sqlite:///{tmp_path / 'p.db'}")
    auth = build_authoritative(workspaces(), NO_PROBLEMS, None, git(["w0", "w1", "w2"]))
    rows, _ = rows_to_write(auth, store.read_frame())
    store.upsert_many(rows, source="rec", ts=90)  # an earlier run
    store.upsert("w0", {"name": "event after poll"}, source="event", ts=150)
    with store.engine.begin() as conn:  # simulate a lost write: value differs, old timestamp
        conn.exec_driver_sql(
            "UPDATE workspace_snapshot SET branch_name='x' WHERE workspace_id='w1'"
        )
    mismatches, won = convergence(store.read_frame(), auth, poll_start_ts=100)
    assert won[["workspace_id", "field"]].values.tolist() == [["w0", "name"]]
    assert mismatches[["workspace_id", "field"]].values.tolist() == [["w1", "branch_name"]]


@pytest.mark.parametrize(
    ("covered", "expected"),
    [(None, ["gone-p1", "gone-p9"]), (["p1"], ["gone-p1"]), (["p2"], [])],
)
def test_stale_ids_respect_coverage(covered, expected):
    stored = pd.DataFrame(
        {"workspace_id": ["w0", "gone-p1", "gone-p9"], "project_id": ["p1", "p1", "p9"]}
    )
    auth = pd.DataFrame({"workspace_id": ["w0"], "project_id": ["p1"]})
    assert stale_ids(stored, auth, covered) == expected


def test_a_field_the_generation_lacks_is_never_written_and_never_drifts(tmp_path):
    """gen 1/2 have no merge-conflict flag: unknown for every row, so an event's value stays and
    is no drift; gen 3 has it: compared and written like any pr field."""
    from reconcile_pipeline.core.drift import detect_drift_frame

    store = SnapshotStore(f"sqlite:///{tmp_path / 'p.db'}")
    lacking = workspaces(over={0: {"has_merge_conflict": pd.NA}})
    auth = build_authoritative(
        lacking, NO_PROBLEMS, None, git(["w0"]), unknown_fields={"has_merge_conflict"}
    )
    rows, _ = rows_to_write(auth, store.read_frame())
    assert all("has_merge_conflict" not in r for r in rows)
    store.upsert_many(rows, source="rec", ts=10)
    store.upsert("w0", {"has_merge_conflict": True}, source="event", ts=20)
    stored = store.read_frame()
    assert detect_drift_frame(stored, auth.snapshots, auth.unknown).empty
    assert rows_to_write(auth, stored) == ([], 3)

    knowing = build_authoritative(workspaces(), NO_PROBLEMS, None, git(["w0"]))
    drift = detect_drift_frame(stored, knowing.snapshots, knowing.unknown)
    assert drift[["workspace_id", "field", "group"]].values.tolist() == [
        ["w0", "has_merge_conflict", "pr"]
    ]
    rows, _ = rows_to_write(knowing, stored)
    assert [(r["workspace_id"], r["has_merge_conflict"]) for r in rows] == [("w0", False)]
    store.engine.dispose()
