"""The one comparison: the scalar drift rule, the vectorised comparison giving the same answer on
random frames, and drift, rows to write and convergence as three answers drawn from it."""

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile_pipeline.core.compare import (
    DIFF_COLUMNS,
    Drift,
    convergence,
    detect_drift,
    diff_fields,
    drift_records,
    drifts_to_frame,
    known_mask,
    rows_to_write,
)
from reconcile_pipeline.core.fields import DRIFT_FIELDS, ENUMS


def test_detect_drift_reports_changed_known_fields_only():
    stored = {
        "workspace_id": "w",
        "project_id": "p",
        "status": "READY",
        "name": "a",
        "is_working": 0,
        "pr_number": 3,
        "branch_name": None,
    }
    truth = {
        "workspace_id": "w",
        "project_id": "p",
        "status": "FAILED",
        "name": "a",
        "is_working": False,
        "pr_number": 3.0,
        "branch_name": "b",
    }
    assert detect_drift(stored, truth) == [
        Drift("w", "p", "status", "workspace", "READY", "FAILED"),
        Drift("w", "p", "branch_name", "workspace", None, "b"),
    ]
    # isWorking unknown (session runtime 'none'): never drift even when the stored value differs.
    assert detect_drift({**stored, "is_working": True}, {"status": "READY", "name": "a"}) == []


def detect_drift_frame(existing, authoritative, unknown=None):
    """Drift of whole frames: a field absent from ``authoritative`` or listed in ``unknown``
    (workspace_id, field) is unknown."""
    known = known_mask(authoritative, unknown)
    return drift_records(diff_fields(authoritative, known, existing))[DIFF_COLUMNS]


def test_frame_honours_unknown_cells_and_new_workspaces():
    existing = pd.DataFrame(
        [{"workspace_id": "w1", "project_id": "p", "status": "READY", "name": "x"}]
    )
    auth = pd.DataFrame(
        [
            {"workspace_id": "w1", "project_id": "p", "status": "FAILED", "name": "y"},
            {"workspace_id": "new", "project_id": "p", "status": "FAILED", "name": "y"},
        ]
    )
    unknown = pd.DataFrame([{"workspace_id": "w1", "field": "status"}])
    out = detect_drift_frame(existing, auth, unknown)
    assert out[["workspace_id", "field"]].values.tolist() == [["w1", "name"]]


def test_drift_rows_and_convergence_are_three_answers_of_one_comparison():
    stored = pd.DataFrame(
        [
            {"workspace_id": "same", "project_id": "p", "name": "a", "status": "READY"},
            {"workspace_id": "drifted", "project_id": "p", "name": "old", "status": "READY"},
            {"workspace_id": "unknown", "project_id": "p", "name": "x", "status": "READY"},
        ]
    ).assign(ts_workspace=10)
    auth = pd.DataFrame(
        [
            {"workspace_id": "same", "project_id": "p", "name": "a", "status": "READY"},
            {"workspace_id": "drifted", "project_id": "p", "name": "new", "status": "READY"},
            {"workspace_id": "unknown", "project_id": "p", "name": "x", "status": "FAILED"},
            {"workspace_id": "fresh", "project_id": "p", "name": "f", "status": "NEW"},
        ]
    )
    known = known_mask(auth, pd.DataFrame([{"workspace_id": "unknown", "field": "status"}]))
    diffs = diff_fields(auth, known, stored)
    assert diffs.missing == ("fresh",) and diffs.compared == 3
    assert drift_records(diffs)[["workspace_id", "field"]].values.tolist() == [["drifted", "name"]]
    rows, unchanged = rows_to_write(auth, known, diffs)
    assert [r["workspace_id"] for r in rows] == ["drifted", "fresh"] and unchanged == 2
    # The unknown cell is left out of a payload; "unknown" itself differs only there: not sent.
    assert all(r["workspace_id"] != "unknown" for r in rows)

    # After the write: "drifted" kept an event written after the poll start (ts 20 >= 15),
    # "fresh" is still missing (a lost insert): one won, one mismatch.
    after = stored.copy()
    after.loc[after["workspace_id"] == "drifted", ["name", "ts_workspace"]] = ["event", 20]
    result = convergence(diff_fields(auth, known, after), poll_start_ts=15)
    assert result.events_won[["workspace_id", "field"]].values.tolist() == [["drifted", "name"]]
    assert result.mismatches[["workspace_id", "field"]].values.tolist() == [["fresh", "*"]]


VALUES = {
    "status": st.sampled_from(ENUMS["status"]),
    "name": st.sampled_from(["a", "b", None]),
    "branch_name": st.sampled_from(["main", "feat", None]),
    "pr_state": st.sampled_from(ENUMS["pr_state"]),
    "pr_ci_status": st.sampled_from(ENUMS["pr_ci_status"]),
    "pr_number": st.sampled_from([None, 1, 2]),
    "has_merge_conflict": st.booleans(),
    "ratchet_enabled": st.booleans(),
    "ratchet_state": st.sampled_from(ENUMS["ratchet_state"]),
    "ratchet_dispatch_outcome": st.sampled_from([None, *ENUMS["ratchet_dispatch_outcome"]]),
    "ratchet_dispatch_retry_count": st.sampled_from([0, 1, 3]),
    "run_script_status": st.sampled_from(ENUMS["run_script_status"]),
    "is_working": st.booleans(),
    "pending_request_type": st.sampled_from(
        [None, "plan_approval", "user_question", "permission_request"]
    ),
    # Canonical JSON text (the store's form): equal text is an equal set of summaries.
    "session_summaries": st.sampled_from(["[]", '[{"sessionId":"s1"}]', '[{"sessionId":"s2"}]']),
}
ROW = st.fixed_dictionaries({f: VALUES[f] for f in DRIFT_FIELDS})


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(ROW, ROW, st.booleans()), min_size=1, max_size=12),
    session_known=st.booleans(),
)
def test_vectorised_equals_scalar(pairs, session_known):
    existing, auth, expected = [], [], []
    for i, (stored, truth, has_snapshot) in enumerate(pairs):
        wid = f"w{i:02d}"
        if not session_known:
            truth = {
                k: v
                for k, v in truth.items()
                if k not in ("is_working", "pending_request_type", "session_summaries")
            }
        truth = {"workspace_id": wid, "project_id": "p", **truth}
        auth.append(truth)
        if has_snapshot:
            existing.append({"workspace_id": wid, "project_id": "p", **stored})
            expected.extend(detect_drift(existing[-1], truth))
    existing_frame = pd.DataFrame(existing, columns=["workspace_id", "project_id", *DRIFT_FIELDS])
    got = detect_drift_frame(existing_frame, pd.DataFrame(auth))
    want = drifts_to_frame(expected)
    assert got.astype(object).values.tolist() == want.astype(object).values.tolist()
