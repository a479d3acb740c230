"""Self-test of ``support/expected.py``: its independent 2026-08 derivation and its reading of
the new raw fields and the session runtime, on rows and DBs built by hand.

The expectation code is what the product is checked against, so a bug there would hide a bug in
the product. Cases come from the app's tests (file and commit named at each); the small app DBs
here hold only the columns the expectation queries read.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from reconcile_pipeline_tests.support import expected as ex

PR = "https://github.com/org/repo/pull/1"


def raw(**kw: Any) -> dict[str, Any]:
    """A raw row with the defaults of makeInput in src/backend/lib/workspace-derived-state.test.ts
    @ 6c25f7f9 (idle READY workspace with sessions, no PR, ratchet off)."""
    row: dict[str, Any] = {
        "status": "READY",
        "has_had_sessions": True,
        "mode": "STANDARD",
        "auto_iteration_status": None,
        "pr_url": None,
        "pr_state": "NONE",
        "pr_ci_status": "UNKNOWN",
        "pr_updated_at": None,
        "has_merge_conflict": False,
        "is_working": False,
        "pending_request_type": None,
        "session_summaries": "[]",
        "ratchet_enabled": False,
        "ratchet_state": "IDLE",
        "ratchet_dispatch_outcome": None,
        "ratchet_dispatch_retry_count": 0,
        "ratchet_dispatch_stalled": False,
    }
    row.update(kw)
    return row


def summaries(*phases: str, **kw: Any) -> str:
    items = [
        {"sessionId": f"s-{i}", "runtimePhase": p, "lastExit": None, "errorMessage": None, **kw}
        for i, p in enumerate(phases)
    ]
    return json.dumps(items)


# ---- derive_2026_08 ----------------------------------------------------------------------------

# (app test, row fields, expected code, kanban column).
CODE_CASES = [
    # src/shared/workspace-status-reason.test.ts @ 6c25f7f9
    (
        "lets archiving outrank a merged PR",
        {"status": "ARCHIVING", "pr_state": "MERGED"},
        "ARCHIVING",
        None,
    ),
    (
        "lets a merged PR outrank a pending permission request",
        {"pr_state": "MERGED", "pending_request_type": "permission_request"},
        "MERGED",
        "DONE",
    ),
    (
        "reports a session runtime error ahead of a pending PR flow state",
        {
            "pr_url": PR,
            "pr_state": "OPEN",
            "is_working": True,
            "session_summaries": summaries("error"),
        },
        "SESSION_ERROR",
        "WAITING",
    ),
    (
        "reports a spawning session as starting",
        {"session_summaries": summaries("idle", "starting")},
        "STARTING_SESSION",
        "WORKING",
    ),
    (
        "reports a running auto-iteration loop between sessions as working",
        {"mode": "AUTO_ITERATION", "auto_iteration_status": "RUNNING"},
        "AUTO_ITERATING",
        "WORKING",
    ),
    (
        "reports a conflicted PR as being fixed when the ratchet is on",
        {
            "pr_url": PR,
            "pr_state": "OPEN",
            "pr_ci_status": "SUCCESS",
            "ratchet_enabled": True,
            "ratchet_state": "MERGE_CONFLICT",
            "has_merge_conflict": True,
        },
        "FIXING_MERGE_CONFLICT",
        "WORKING",
    ),
    (
        "reports a conflicted PR as needing a human when the ratchet is off",
        {"pr_url": PR, "pr_state": "OPEN", "pr_ci_status": "SUCCESS", "has_merge_conflict": True},
        "MERGE_CONFLICT",
        "WAITING",
    ),
    (
        "does not let stale PR facts speak for a workspace with no pull request (conflict)",
        {"has_merge_conflict": True},
        "READY_FOR_NEXT_PROMPT",
        "WAITING",
    ),
    (
        "does not let stale PR facts speak for a workspace with no pull request (stalled)",
        {"ratchet_enabled": True, "ratchet_dispatch_stalled": True, "has_had_sessions": False},
        "NO_SESSION_STARTED",
        "WAITING",
    ),
    (
        "marks a reviewable pull request as needing the user",
        {"pr_url": PR, "pr_state": "OPEN", "pr_ci_status": "FAILURE"},
        "READY_FOR_REVIEW",
        "WAITING",
    ),
    (
        "explains PR automation states (review comments)",
        {
            "pr_url": PR,
            "pr_state": "OPEN",
            "pr_ci_status": "SUCCESS",
            "ratchet_enabled": True,
            "ratchet_state": "REVIEW_PENDING",
        },
        "FIXING_REVIEW_COMMENTS",
        "WORKING",
    ),
    # src/shared/kanban-column-projection.test.ts @ 6c25f7f9: PR_CLOSED is DONE.
    ("terminal pull requests in DONE", {"pr_url": PR, "pr_state": "CLOSED"}, "PR_CLOSED", "DONE"),
]


@pytest.mark.parametrize(
    ("kw", "code", "column"),
    [pytest.param(kw, code, col, id=name) for name, kw, code, col in CODE_CASES],
)
def test_derive_2026_08_code_and_column(kw, code, column):
    """Cases of src/shared/workspace-status-reason.test.ts and kanban-column-projection.test.ts
    @ 6c25f7f9, through the expectation's derivation."""
    derived = ex.derive_2026_08(raw(**kw))
    assert (derived["status_reason_code"], derived["kanban_column"]) == (code, column)


def test_derive_2026_08_canonical_shape():
    """'maps flow fields and computed values into canonical derived shape'
    (src/backend/lib/workspace-derived-state.test.ts @ 6c25f7f9), the ratchet on so the real
    flow animates as the test's given flow state does."""
    row = raw(
        pr_url=PR,
        pr_state="OPEN",
        pr_ci_status="PENDING",
        ratchet_enabled=True,
        ratchet_state="REVIEW_PENDING",
    )
    assert ex.derive_2026_08(row) == {
        "flow_phase": "CI_WAIT",
        "ci_observation": "CHECKS_PENDING",
        "ratchet_button_animated": True,
        "kanban_column": "WORKING",
        "sidebar_activity_state": "IDLE",
        "sidebar_ci_state": "RUNNING",
        "status_reason_code": "WAITING_FOR_CI",
        "status_reason_label": "Waiting for CI",
        "status_reason_tone": "waiting",
        "status_reason_needs_user": False,
    }


def test_derive_2026_08_stalled_dispatch_sequence():
    """'moves a stalled Ratchet dispatch to waiting without reporting live agent work'
    (workspace-snapshot-store.service.test.ts @ 6c25f7f9)."""
    row = raw(pr_url=PR, pr_state="OPEN", ratchet_enabled=True, has_had_sessions=False)
    steps = [
        {"pr_ci_status": "PENDING", "ratchet_state": "CI_RUNNING"},
        {"pr_ci_status": "FAILURE", "ratchet_state": "CI_RUNNING"},
        {"ratchet_state": "CI_FAILED", "ratchet_dispatch_outcome": "RUNNING"},
        {"ratchet_dispatch_outcome": "DIED", "ratchet_dispatch_retry_count": 3},
        {"ratchet_dispatch_stalled": True},
    ]
    codes = []
    for step in steps:
        row.update(step)
        codes.append(ex.derive_2026_08(row)["status_reason_code"])
    assert codes == [
        "WAITING_FOR_CI",
        "CHECKING_PR",
        "FIXING_CI_FAILURES",
        "FIXING_CI_FAILURES",
        "RATCHET_STALLED",
    ]


@pytest.mark.parametrize("updated_at", [None, 1_577_836_800_000])
def test_derive_2026_08_unknown_ci_not_fetched(updated_at):
    """'reads an unfetched CI status as not fetched regardless of elapsed time'
    (src/backend/services/workspace/service/state/flow-state.test.ts @ 6c25f7f9)."""
    row = raw(pr_url=PR, pr_state="OPEN", pr_updated_at=updated_at)
    derived = ex.derive_2026_08(row)
    assert (derived["ci_observation"], derived["flow_phase"]) == ("NOT_FETCHED", "CI_WAIT")


def test_derive_2026_08_sidebar_closed_and_session_activity():
    """'treats closed PRs as a terminal closed state' (src/shared/workspace-sidebar-status.test.ts
    @ 6c25f7f9) and 'uses live session activity, not PR flow activity'
    (workspace-derived-state.test.ts @ 6c25f7f9)."""
    closed = ex.derive_2026_08(raw(pr_url=PR, pr_state="CLOSED", pr_ci_status="SUCCESS"))
    waiting = ex.derive_2026_08(raw(pr_url=PR, pr_state="OPEN", pr_ci_status="PENDING"))
    assert closed["sidebar_ci_state"] == "CLOSED"
    assert (waiting["flow_phase"], waiting["sidebar_activity_state"]) == ("CI_WAIT", "IDLE")
    old = ex.derive_2026_02(raw(pr_url=PR, pr_state="CLOSED", pr_ci_status="SUCCESS"))
    assert old["sidebar_ci_state"] == "PASSING"


# ---- session helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "message", "last_exit", "expected"),
    [
        # expectedCases of src/shared/session-runtime.test.ts @ 6c25f7f9
        ("error", "  runtime failed  ", None, "runtime failed"),
        ("error", None, {"code": 42, "unexpected": True}, "Exited unexpectedly (code 42)"),
        ("running", "  process crashed  ", {"code": 42, "unexpected": True}, "process crashed"),
        ("running", None, None, None),
        # src/shared/session-runtime.ts @ 6c25f7f9 l.112 and l.129
        ("idle", None, {"code": None, "unexpected": True}, "Exited unexpectedly"),
        ("error", " ", None, "Session entered an error state"),
    ],
)
def test_summary_error_message(phase, message, last_exit, expected):
    item = {"runtimePhase": phase, "errorMessage": message, "lastExit": last_exit}
    assert ex.summary_error_message(item) == expected


def _requests(*items: tuple[str, dict | None] | None) -> list[dict[str, Any]]:
    out = []
    for item in items:
        request = None if item is None else {"toolName": item[0]}
        if item is not None and item[1] is not None:
            request["input"] = item[1]
        out.append({"pendingRequest": request})
    return out


@pytest.mark.parametrize(
    ("items", "new", "old"),
    [
        # src/backend/services/workspace/service/state/pending-request-type.test.ts @ 6c25f7f9
        ((("ReadFile", None), ("ExitPlanMode", None)), "plan_approval", "plan_approval"),
        (
            (("Review Proposed Plan", {"type": "ExitPlanMode"}), ("ReadFile", None)),
            "plan_approval",
            "permission_request",
        ),
        (
            (("Tool input request", {"questions": [{"question": "Q1"}]}), ("ReadFile", None)),
            "user_question",
            "permission_request",
        ),
        ((("ReadFile", None), ("WriteFile", None)), "permission_request", "permission_request"),
        ((None, None), None, None),
        # order: any plan wins at 6c25f7f9, the first match at bfa803e2
        ((("AskUserQuestion", None), ("ExitPlanMode", None)), "plan_approval", "user_question"),
    ],
)
def test_pending_request_types(items, new, old):
    states = _requests(*items)
    assert ex.pending_request_type_2026_08(states) == new
    assert ex.pending_request_type_2026_02(states) == old


def test_js_iso():
    """Date.toISOString: milliseconds always shown, 'Z' for UTC."""
    assert ex.js_iso(1_767_452_400_000) == "2026-01-03T15:00:00.000Z"
    assert ex.js_iso(1_767_452_400_007) == "2026-01-03T15:00:00.007Z"


@pytest.mark.parametrize(
    "entry",
    [
        None,
        {"isWorking": "yes"},
        {"isWorking": True, "pendingRequest": {"toolName": ""}},
        {"isWorking": True, "pendingRequest": {"toolName": "X", "input": []}},
        {"isWorking": True, "phase": "busy"},
        {"isWorking": True, "activity": "working"},
        {"isWorking": True, "processState": None},
        {"isWorking": True, "updatedAt": 20260801},
        {"isWorking": True, "lastExit": {"code": True, "timestamp": "t", "unexpected": False}},
        {"isWorking": True, "lastExit": {"code": 1, "timestamp": "t"}},
        {"isWorking": True, "errorMessage": 5},
    ],
)
def test_bad_runtime_entries(entry):
    """Spec: a wrong type anywhere in an entry makes it bad."""
    assert not ex.runtime_entry_ok(entry)


def test_good_runtime_entries():
    assert ex.runtime_entry_ok({"isWorking": False})
    assert ex.runtime_entry_ok(
        {
            "isWorking": True,
            "pendingRequest": {"toolName": "ExitPlanMode", "input": {"plan": "p"}},
            "phase": "running",
            "processState": "alive",
            "activity": "WORKING",
            "updatedAt": "2026-08-01T12:00:00.000Z",
            "lastExit": {"code": None, "timestamp": "2026-08-01T11:00:00.000Z", "unexpected": True},
            "errorMessage": None,
            "other": "ignored",
        }
    )


# ---- expected_snapshots on small hand-made app DBs ---------------------------------------------

_T = "2026-01-03T15:00:00.000+00:00"
_PROJECT = '"id" TEXT, "isArchived" BOOLEAN, "defaultBranch" TEXT'
_WS_COMMON = (
    '"id" TEXT, "projectId" TEXT, "name" TEXT, "status" TEXT, "createdAt" DATETIME, '
    '"branchName" TEXT, "hasHadSessions" BOOLEAN, "worktreePath" TEXT'
)
_WS_FLAT_PR = (
    '"prUrl" TEXT, "prNumber" INTEGER, "prState" TEXT, "prCiStatus" TEXT, "prUpdatedAt" DATETIME, '
    '"ratchetEnabled" BOOLEAN, "ratchetState" TEXT, "runScriptStatus" TEXT'
)
_AGENT = (
    '"id" TEXT, "workspaceId" TEXT, "name" TEXT, "workflow" TEXT, "model" TEXT, "status" TEXT, '
    '"provider" TEXT, "createdAt" DATETIME, "updatedAt" DATETIME'
)
_TERMINAL = '"id" TEXT, "workspaceId" TEXT, "createdAt" DATETIME, "updatedAt" DATETIME'


def _make_db(path: Path, tables: dict[str, str], rows: dict[str, list[dict[str, Any]]]) -> Path:
    conn = sqlite3.connect(path)
    for table, columns in tables.items():
        conn.execute(f'CREATE TABLE "{table}" ({columns})')
    for table, items in rows.items():
        for item in items:
            names = ", ".join(f'"{k}"' for k in item)
            conn.execute(
                f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(item))})',
                list(item.values()),
            )
    conn.commit()
    conn.close()
    return path


def _workspace(workspace_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": workspace_id,
        "projectId": "p1",
        "name": f"W {workspace_id}",
        "status": "READY",
        "createdAt": _T,
        "branchName": None,
        "hasHadSessions": 1,
        "worktreePath": None,
        **kw,
    }


def _session(session_id: str, workspace_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": session_id,
        "workspaceId": workspace_id,
        "name": "Chat 1",
        "workflow": "followup",
        "model": "claude-sonnet",
        "status": "IDLE",
        "provider": "CLAUDE",
        "createdAt": _T,
        "updatedAt": _T,
        **kw,
    }


def _gen3_db(path: Path, *, auto_iteration_table: bool, stalled_column: bool) -> Path:
    ratchet = '"workspaceId" TEXT, "enabled" BOOLEAN, "dispatchOutcome" TEXT, '
    ratchet += '"dispatchRetryCount" INTEGER' + (
        ', "dispatchStalled" BOOLEAN' if stalled_column else ""
    )
    workspace = _WS_COMMON + (
        "" if auto_iteration_table else ', "mode" TEXT, "autoIterationStatus" TEXT'
    )
    tables = {
        "Project": _PROJECT,
        "Workspace": workspace,
        "AgentSession": _AGENT,
        "TerminalSession": _TERMINAL,
        "WorkspacePR": '"workspaceId" TEXT, "url" TEXT, "number" INTEGER, "state" TEXT, '
        '"ciStatus" TEXT, "syncedAt" DATETIME, "hasMergeConflict" BOOLEAN, "reviewState" TEXT',
        "WorkspaceRatchet": ratchet,
        "WorkspaceRunScript": '"workspaceId" TEXT, "status" TEXT',
    }
    loop = {"mode": "AUTO_ITERATION", "autoIterationStatus": "RUNNING"}
    w1 = _workspace("w1", **({} if auto_iteration_table else loop))
    w2 = _workspace("w2", **({} if auto_iteration_table else {"mode": "STANDARD"}))
    ratchet_row = {
        "workspaceId": "w1",
        "enabled": 1,
        "dispatchOutcome": "DIED",
        "dispatchRetryCount": 3,
    }
    if stalled_column:
        ratchet_row["dispatchStalled"] = 1
    rows: dict[str, list[dict[str, Any]]] = {
        "Project": [{"id": "p1", "isArchived": 0, "defaultBranch": "main"}],
        "Workspace": [w1, w2],
        "WorkspaceRatchet": [ratchet_row],
    }
    if auto_iteration_table:
        tables["WorkspaceAutoIteration"] = '"workspaceId" TEXT, "mode" TEXT, "status" TEXT'
        rows["WorkspaceAutoIteration"] = [
            {"workspaceId": "w1", "mode": "AUTO_ITERATION", "status": "RUNNING"}
        ]
    return _make_db(path, tables, rows)


NEW_FIELDS = (
    "mode",
    "auto_iteration_status",
    "ratchet_dispatch_outcome",
    "ratchet_dispatch_retry_count",
    "ratchet_dispatch_stalled",
)


def _new_fields(row: dict[str, Any]) -> tuple:
    return tuple(row[f] for f in NEW_FIELDS)


@pytest.mark.parametrize(
    ("auto_iteration_table", "stalled_column", "w1_fields"),
    [
        (True, True, ("AUTO_ITERATION", "RUNNING", "DIED", 3, True)),
        # Before 20260726230000 / 20260728232525: flat mode columns, no stalled flag (unknown).
        (False, False, ("AUTO_ITERATION", "RUNNING", "DIED", 3, False)),
    ],
)
def test_gen3_new_fields(tmp_path, auto_iteration_table, stalled_column, w1_fields):
    """Spec 'Where the new fields come from', gen 3; w2 has no side rows: the app's defaults
    (WORKSPACE_AUTO_ITERATION_DEFAULTS / WORKSPACE_RATCHET_DEFAULTS @ 6c25f7f9)."""
    db = _gen3_db(
        tmp_path / "app.db",
        auto_iteration_table=auto_iteration_table,
        stalled_column=stalled_column,
    )
    rows = ex.expected_snapshots(db, None)
    assert _new_fields(rows["w1"]) == w1_fields
    assert _new_fields(rows["w2"]) == ("STANDARD", None, None, 0, False)
    assert rows["w1"]["rule_set"] == "2026-08"
    assert rows["w1"]["status_reason_code"] == "AUTO_ITERATING"


def _gen2_db(path: Path, *, flat_columns: bool) -> Path:
    extra = ', "mode" TEXT, "autoIterationStatus" TEXT, "ratchetDispatchOutcome" TEXT, '
    extra += '"ratchetDispatchRetryCount" INTEGER'
    tables = {
        "Project": _PROJECT,
        "Workspace": _WS_COMMON + ", " + _WS_FLAT_PR + (extra if flat_columns else ""),
        "AgentSession": _AGENT,
        "TerminalSession": _TERMINAL,
    }
    pr = {
        "prUrl": None,
        "prNumber": None,
        "prState": "NONE",
        "prCiStatus": "UNKNOWN",
        "prUpdatedAt": None,
        "ratchetEnabled": 0,
        "ratchetState": "IDLE",
        "runScriptStatus": "IDLE",
    }
    flat = {
        "mode": "AUTO_ITERATION",
        "autoIterationStatus": "PAUSED",
        "ratchetDispatchOutcome": "COMPLETED",
        "ratchetDispatchRetryCount": 1,
    }
    rows = {
        "Project": [{"id": "p1", "isArchived": 0, "defaultBranch": "main"}],
        "Workspace": [
            _workspace("w1", **pr, **(flat if flat_columns else {})),
            _workspace("w2", **pr),
        ],
        "AgentSession": [
            _session("cs-stale", "w1", name="Stale Chat", status="RUNNING"),
            _session("cs-live", "w2", createdAt="2026-01-03T14:00:00.000+00:00"),
            _session("cs-new", "w2", name=None),
        ],
    }
    return _make_db(path, tables, rows)


@pytest.mark.parametrize(
    ("flat_columns", "fields"),
    [
        (True, ("AUTO_ITERATION", "PAUSED", "COMPLETED", 1, False)),
        (False, ("STANDARD", None, None, 0, False)),
    ],
)
def test_gen2_new_fields(tmp_path, flat_columns, fields):
    """gen 2: the flat columns where its migrations have them (20260401171631, 20260715201522);
    never a stalled flag."""
    rows = ex.expected_snapshots(_gen2_db(tmp_path / "app.db", flat_columns=flat_columns), None)
    assert _new_fields(rows["w1"]) == fields


def _runtime(path: Path, sessions: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"sessions": sessions}))
    return path


def test_session_summaries_from_runtime(tmp_path):
    """'does not treat stale persisted RUNNING sessions as working after restart' and 'includes
    sessionSummaries derived from runtime snapshots' (src/backend/orchestration/snapshot-
    reconciliation.orchestrator.test.ts @ 6c25f7f9); cs-new is absent from the document: the
    initial runtime state (createInitialSessionRuntimeState, src/shared/session-runtime.ts),
    with the DB's updatedAt as the spec says."""
    db = _gen2_db(tmp_path / "app.db", flat_columns=False)
    runtime = _runtime(
        tmp_path / "rt.json",
        {
            "cs-stale": {
                "isWorking": False,
                "phase": "idle",
                "processState": "stopped",
                "activity": "IDLE",
            },
            "cs-live": {
                "isWorking": True,
                "phase": "running",
                "processState": "alive",
                "activity": "WORKING",
            },
        },
    )
    rows = ex.expected_snapshots(db, runtime)
    assert rows["w1"]["session_summaries"] == (
        '[{"activity":"IDLE","errorMessage":null,"lastExit":null,"model":"claude-sonnet",'
        '"name":"Stale Chat","persistedStatus":"RUNNING","processState":"stopped",'
        '"provider":"CLAUDE","runtimePhase":"idle","sessionId":"cs-stale",'
        '"updatedAt":"2026-01-03T15:00:00.000Z","workflow":"followup"}]'
    )
    assert rows["w1"]["is_working"] is False
    live, new = json.loads(rows["w2"]["session_summaries"])
    assert (live["sessionId"], live["runtimePhase"], live["activity"]) == (
        "cs-live",
        "running",
        "WORKING",
    )
    assert (new["runtimePhase"], new["processState"], new["activity"]) == (
        "idle",
        "stopped",
        "IDLE",
    )
    assert rows["w2"]["is_working"] is True


def test_working_rule_differs_by_rule_set(tmp_path):
    """2026-08 reads activity/phase (isSessionSummaryWorking), 2026-02 the isWorking flag."""
    db = _gen2_db(tmp_path / "app.db", flat_columns=False)
    runtime = _runtime(
        tmp_path / "rt.json", {"cs-live": {"isWorking": True, "activity": "IDLE", "phase": "idle"}}
    )
    assert ex.expected_snapshots(db, runtime)["w2"]["is_working"] is False
    old = ex.expected_snapshots(db, runtime, "2026-02")["w2"]
    assert (old["is_working"], old["rule_set"], old["status_reason_code"]) == (
        True,
        "2026-02",
        None,
    )


def test_bad_entry_makes_only_its_workspace_unknown(tmp_path):
    """Spec: a bad entry makes that workspace's session group unknown (never written: the
    defaults); other workspaces are unaffected."""
    db = _gen2_db(tmp_path / "app.db", flat_columns=False)
    runtime = _runtime(
        tmp_path / "rt.json",
        {
            "cs-stale": {"isWorking": "no"},
            "cs-live": {"isWorking": True, "pendingRequest": {"toolName": "AskUserQuestion"}},
        },
    )
    rows = ex.expected_snapshots(db, runtime)
    assert (rows["w1"]["is_working"], rows["w1"]["session_summaries"]) == (False, "[]")
    assert (rows["w2"]["is_working"], rows["w2"]["pending_request_type"]) == (True, "user_question")
    assert rows["w2"]["status_reason_code"] == "NEEDS_ANSWER"


@pytest.mark.parametrize("document", [None, "not json", '{"sessions": []}', "[]"])
def test_unknown_runtime(tmp_path, document):
    """No runtime, or a document that is not {"sessions": {...}}: every session group unknown."""
    db = _gen2_db(tmp_path / "app.db", flat_columns=False)
    runtime = None
    if document is not None:
        runtime = tmp_path / "rt.json"
        runtime.write_text(document)
    for row in ex.expected_snapshots(db, runtime).values():
        assert (row["is_working"], row["pending_request_type"], row["session_summaries"]) == (
            False,
            None,
            "[]",
        )


def test_consistency_problems_uses_each_rows_rule_set():
    """A row is checked against its own rule_set; NULL means 2026-02."""
    base = raw(
        pr_url=PR, pr_state="CLOSED", pr_ci_status="SUCCESS", version=1, source="t", project_id="p"
    )
    base.update({ts: 1 for ts in ex._TS_COLUMNS})
    new = {**base, **ex.derive_2026_08(base), "rule_set": "2026-08"}
    old = {**base, **ex.derive_2026_02(base), "rule_set": None}
    assert ex.consistency_problems({"a": new, "b": old}) == []
    swapped = {**new, "rule_set": "2026-02"}
    assert ex.consistency_problems({"a": swapped}) != []
