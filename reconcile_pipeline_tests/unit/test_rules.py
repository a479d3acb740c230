"""The two rule sets (2026-02 and 2026-08), with cases taken from the app's own tests.

Every case below names the factory-factory test (file and commit) it was translated from; where a
case comes from the app's source instead (a branch its tests do not reach), the source file and
lines are named. 2026-08 = HEAD 6c25f7f9, 2026-02 = bfa803e2 plus the contract's additions
(/work/shared/DESIGN.md, "Derived fields" and "New values").

The app's tests feed its functions camelCase inputs; the rule sets take the snapshot's snake_case
raw row (``derive``) or keyword inputs (``status_reason``), so each case is translated, not copied.
Where an app test mocks ``deriveFlowState`` the row is given the PR fields that make the real
flow produce the mocked phase (said at the case).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from reconcile_pipeline.core import rules
from reconcile_pipeline.core.rules import rules_2026_02 as r02
from reconcile_pipeline.core.rules import rules_2026_08 as r08

PR = "https://github.com/acme/repo/pull/1"

# The app's status reasons, code -> (label, tone, needsUser):
# src/shared/workspace-status-reason.ts @ 6c25f7f9, lines 111-263 (the `reason(...)` calls).
REASONS: dict[str, tuple[str, str, bool]] = {
    "NEEDS_PERMISSION": ("Needs permission", "attention", True),
    "NEEDS_PLAN_APPROVAL": ("Needs plan approval", "attention", True),
    "NEEDS_ANSWER": ("Needs your answer", "attention", True),
    "SESSION_ERROR": ("Session error", "danger", True),
    "SETTING_UP": ("Setting up workspace", "working", False),
    "SETUP_FAILED": ("Setup failed", "danger", True),
    "ARCHIVING": ("Archiving", "working", False),
    "ARCHIVED": ("Archived", "neutral", False),
    "AGENT_WORKING": ("Agent working", "working", False),
    "STARTING_SESSION": ("Starting session", "working", False),
    "AUTO_ITERATING": ("Auto-iterating", "working", False),
    "WAITING_FOR_CI": ("Waiting for CI", "waiting", False),
    "FIXING_CI_FAILURES": ("Fixing CI failures", "working", False),
    "FIXING_REVIEW_COMMENTS": ("Fixing review comments", "working", False),
    "FIXING_MERGE_CONFLICT": ("Fixing merge conflict", "working", False),
    "MERGE_CONFLICT": ("Merge conflict", "attention", True),
    "RATCHET_STALLED": ("Auto-fix stalled", "attention", True),
    "CHECKING_PR": ("Checking PR", "working", False),
    "MERGED": ("Merged", "success", False),
    "PR_CLOSED": ("PR closed", "neutral", False),
    "READY_TO_MERGE": ("Ready to merge", "success", True),
    "READY_FOR_REVIEW": ("Ready for review", "neutral", True),
    "NO_SESSION_STARTED": ("No session started", "neutral", True),
    "READY_FOR_NEXT_PROMPT": ("Ready for next prompt", "neutral", True),
}

DERIVED = (
    "flow_phase",
    "ci_observation",
    "ratchet_button_animated",
    "kanban_column",
    "sidebar_activity_state",
    "sidebar_ci_state",
    "status_reason_code",
    "status_reason_label",
    "status_reason_tone",
    "status_reason_needs_user",
)


# ---- builders ----------------------------------------------------------------------------------


def raw(**kw: Any) -> dict[str, Any]:
    """A complete raw snapshot row: the defaults of the app's test helpers (makeInput of
    workspace-status-reason.test.ts / workspace-derived-state.test.ts), snake_case."""
    row: dict[str, Any] = {
        "workspace_id": "ws-1",
        "project_id": "project-1",
        "name": "Test Workspace",
        "status": "READY",
        "created_at": 1_767_225_600_000,
        "branch_name": "feature/test",
        "has_had_sessions": True,
        "mode": "STANDARD",
        "auto_iteration_status": None,
        "pr_url": None,
        "pr_number": None,
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
        "run_script_status": "IDLE",
        "git_total": None,
        "git_additions": None,
        "git_deletions": None,
        "git_has_uncommitted": None,
        "last_activity_at": None,
    }
    row.update(kw)
    return row


def summary(**kw: Any) -> dict[str, Any]:
    """One session summary: makeSessionSummary of
    src/backend/services/workspace/service/snapshot/workspace-snapshot-store.service.test.ts."""
    base: dict[str, Any] = {
        "sessionId": "session-1",
        "name": "Chat 1",
        "workflow": "followup",
        "model": "claude-sonnet",
        "provider": "CLAUDE",
        "persistedStatus": "IDLE",
        "runtimePhase": "idle",
        "processState": "alive",
        "activity": "IDLE",
        "updatedAt": "2026-01-01T00:00:00.000Z",
        "lastExit": {"code": 0, "timestamp": "2026-01-01T00:00:00.000Z", "unexpected": False},
        "errorMessage": None,
    }
    base.update(kw)
    return base


def summaries_text(*items: dict[str, Any]) -> str:
    """The canonical JSON text of a summary list (spec: sorted by sessionId, sorted keys)."""
    ordered = sorted(items, key=lambda s: s["sessionId"])
    return json.dumps(ordered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def reason_input(**kw: Any) -> dict[str, Any]:
    """makeInput of src/shared/workspace-status-reason.test.ts @ 6c25f7f9, snake_case."""
    base: dict[str, Any] = {
        "lifecycle": "READY",
        "has_had_sessions": True,
        "is_working": False,
        "is_session_starting": False,
        "pending_request_type": None,
        "has_session_runtime_error": False,
        "flow_phase": "NO_PR",
        "ci_observation": "CHECKS_UNKNOWN",
        "pr_state": "NONE",
        "pr_ci_status": "UNKNOWN",
        "ratchet_state": "IDLE",
        "ratchet_enabled": False,
        "has_merge_conflict": False,
        "dispatch_stalled": False,
        "mode": "STANDARD",
        "auto_iteration_status": None,
    }
    base.update(kw)
    return base


def reason_tuple(reason: Any) -> tuple[str, str, str, bool]:
    return (reason.code, reason.label, reason.tone, reason.needs_user)


def full_reason(code: str) -> tuple[str, str, str, bool]:
    return (code, *REASONS[code])


def derived_reason(derived: dict[str, Any]) -> tuple[str, str, str, bool]:
    return (
        derived["status_reason_code"],
        derived["status_reason_label"],
        derived["status_reason_tone"],
        derived["status_reason_needs_user"],
    )


UNEXPECTED_EXIT = {"code": 42, "timestamp": "2026-02-20T00:00:00.000Z", "unexpected": True}

# ---- 2026-08: status reason --------------------------------------------------------------------

# (app test name, inputs, expected code): src/shared/workspace-status-reason.test.ts @ 6c25f7f9.
STATUS_REASON_CASES = [
    (
        "prioritizes pending user action",
        {"pending_request_type": "permission_request"},
        "NEEDS_PERMISSION",
    ),
    (
        "names every kind of pending request (plan)",
        {"pending_request_type": "plan_approval"},
        "NEEDS_PLAN_APPROVAL",
    ),
    (
        "names every kind of pending request (question)",
        {"pending_request_type": "user_question"},
        "NEEDS_ANSWER",
    ),
    (
        "reports a session runtime error ahead of a pending PR flow state",
        {"has_session_runtime_error": True, "is_working": True, "flow_phase": "CI_WAIT"},
        "SESSION_ERROR",
    ),
    ("lifecycle NEW", {"lifecycle": "NEW"}, "SETTING_UP"),
    ("lifecycle FAILED", {"lifecycle": "FAILED"}, "SETUP_FAILED"),
    ("lifecycle ARCHIVING", {"lifecycle": "ARCHIVING"}, "ARCHIVING"),
    ("lifecycle ARCHIVED", {"lifecycle": "ARCHIVED"}, "ARCHIVED"),
    ("terminal: prState MERGED", {"pr_state": "MERGED"}, "MERGED"),
    ("terminal: ratchetState MERGED", {"ratchet_state": "MERGED"}, "MERGED"),
    ("terminal: flowPhase MERGED", {"flow_phase": "MERGED"}, "MERGED"),
    ("terminal: prState CLOSED", {"pr_state": "CLOSED"}, "PR_CLOSED"),
    (
        "reports an unverified pull request as being checked",
        {"flow_phase": "RATCHET_VERIFY", "pr_state": "OPEN", "ratchet_enabled": True},
        "CHECKING_PR",
    ),
    ("falls back to awaiting the next prompt", {}, "READY_FOR_NEXT_PROMPT"),
    (
        "labels idle empty workspaces as no session started",
        {"has_had_sessions": False},
        "NO_SESSION_STARTED",
    ),
    ("explains PR automation states (CI wait)", {"flow_phase": "CI_WAIT"}, "WAITING_FOR_CI"),
    (
        "explains PR automation states (review)",
        {"flow_phase": "RATCHET_FIXING", "ratchet_state": "REVIEW_PENDING"},
        "FIXING_REVIEW_COMMENTS",
    ),
    (
        "shows active agent work before passive PR state",
        {"is_working": True, "flow_phase": "CI_WAIT"},
        "AGENT_WORKING",
    ),
    ("reports a spawning session as starting", {"is_session_starting": True}, "STARTING_SESSION"),
    (
        "lets a pending request outrank a starting session",
        {"is_session_starting": True, "pending_request_type": "permission_request"},
        "NEEDS_PERMISSION",
    ),
    (
        "lets provisioning outrank a starting session",
        {"is_session_starting": True, "lifecycle": "PROVISIONING"},
        "SETTING_UP",
    ),
    (
        "reports a running auto-iteration loop between sessions as working",
        {"mode": "AUTO_ITERATION", "auto_iteration_status": "RUNNING"},
        "AUTO_ITERATING",
    ),
    (
        "prefers the live session over the loop when both are active",
        {"mode": "AUTO_ITERATION", "auto_iteration_status": "RUNNING", "is_working": True},
        "AGENT_WORKING",
    ),
    (
        "reports a conflicted PR as being fixed when the ratchet is on",
        {
            "has_merge_conflict": True,
            "ratchet_enabled": True,
            "ratchet_state": "MERGE_CONFLICT",
            "flow_phase": "RATCHET_VERIFY",
            "pr_state": "OPEN",
        },
        "FIXING_MERGE_CONFLICT",
    ),
    (
        "reports a conflicted PR as needing a human when the ratchet is off",
        {
            "has_merge_conflict": True,
            "flow_phase": "READY",
            "ci_observation": "CHECKS_PASSED",
            "pr_state": "OPEN",
        },
        "MERGE_CONFLICT",
    ),
    (
        "does not let stale PR facts speak for a workspace with no PR (conflict)",
        {"flow_phase": "NO_PR", "has_merge_conflict": True},
        "READY_FOR_NEXT_PROMPT",
    ),
    (
        "does not let stale PR facts speak for a workspace with no PR (stalled)",
        {"ratchet_enabled": True, "dispatch_stalled": True, "has_had_sessions": False},
        "NO_SESSION_STARTED",
    ),
    (
        "reports a stalled auto-fix ahead of the fixing states",
        {
            "ratchet_enabled": True,
            "dispatch_stalled": True,
            "ratchet_state": "CI_FAILED",
            "flow_phase": "RATCHET_FIXING",
            "pr_state": "OPEN",
        },
        "RATCHET_STALLED",
    ),
    (
        "lets a merged PR outrank a pending permission request",
        {"pr_state": "MERGED", "pending_request_type": "permission_request"},
        "MERGED",
    ),
    (
        "lets a merged PR outrank a FAILED lifecycle",
        {"pr_state": "MERGED", "lifecycle": "FAILED"},
        "MERGED",
    ),
    (
        "lets a merged PR outrank a session runtime error",
        {"pr_state": "MERGED", "has_session_runtime_error": True},
        "MERGED",
    ),
    (
        "lets archiving outrank a merged PR",
        {"lifecycle": "ARCHIVING", "pr_state": "MERGED"},
        "ARCHIVING",
    ),
    (
        "marks a reviewable pull request as needing the user (passed)",
        {"flow_phase": "READY", "ci_observation": "CHECKS_PASSED", "pr_state": "OPEN"},
        "READY_TO_MERGE",
    ),
    (
        "marks a reviewable pull request as needing the user (failed)",
        {"flow_phase": "READY", "ci_observation": "CHECKS_FAILED", "pr_state": "OPEN"},
        "READY_FOR_REVIEW",
    ),
]


@pytest.mark.parametrize(
    ("inputs", "code"),
    [pytest.param(i, c, id=name) for name, i, c in STATUS_REASON_CASES],
)
def test_status_reason_app_cases(inputs, code):
    """src/shared/workspace-status-reason.test.ts @ 6c25f7f9; the label, tone and needsUser
    checked for every case come from src/shared/workspace-status-reason.ts @ 6c25f7f9."""
    assert reason_tuple(r08.status_reason(**reason_input(**inputs))) == full_reason(code)


# Branches the app's test file does not reach, from src/shared/workspace-status-reason.ts
# @ 6c25f7f9 (line numbers of the branch).
STATUS_REASON_SOURCE_CASES = [
    # l.239: RATCHET_FIXING without REVIEW_PENDING is fixing CI.
    ({"flow_phase": "RATCHET_FIXING", "ratchet_state": "CI_FAILED"}, "FIXING_CI_FAILURES"),
    # l.147: PROVISIONING is setting up like NEW.
    ({"lifecycle": "PROVISIONING"}, "SETTING_UP"),
    # l.112-123: a pending request is checked before the session error.
    ({"pending_request_type": "user_question", "has_session_runtime_error": True}, "NEEDS_ANSWER"),
    # l.162-166: starting outranks the auto-iteration loop.
    (
        {"is_session_starting": True, "mode": "AUTO_ITERATION", "auto_iteration_status": "RUNNING"},
        "STARTING_SESSION",
    ),
    # l.166: only a RUNNING loop in AUTO_ITERATION mode counts.
    ({"mode": "AUTO_ITERATION", "auto_iteration_status": "PAUSED"}, "READY_FOR_NEXT_PROMPT"),
    ({"mode": "STANDARD", "auto_iteration_status": "RUNNING"}, "READY_FOR_NEXT_PROMPT"),
    # l.194: a stalled dispatch speaks only while the ratchet is on.
    (
        {"dispatch_stalled": True, "flow_phase": "RATCHET_VERIFY", "pr_state": "OPEN"},
        "CHECKING_PR",
    ),
    # l.194-202: stalled is checked before the merge conflict.
    (
        {
            "ratchet_enabled": True,
            "dispatch_stalled": True,
            "has_merge_conflict": True,
            "flow_phase": "RATCHET_VERIFY",
            "pr_state": "OPEN",
        },
        "RATCHET_STALLED",
    ),
    # l.223: a closed PR is terminal even with a pending request (terminal runs before blocking).
    ({"pr_state": "CLOSED", "pending_request_type": "plan_approval"}, "PR_CLOSED"),
    # l.216-223: MERGED is checked before CLOSED.
    ({"pr_state": "CLOSED", "ratchet_state": "MERGED"}, "MERGED"),
]


@pytest.mark.parametrize(("inputs", "code"), STATUS_REASON_SOURCE_CASES)
def test_status_reason_source_branches(inputs, code):
    """src/shared/workspace-status-reason.ts @ 6c25f7f9 (the line is at each case)."""
    assert reason_tuple(r08.status_reason(**reason_input(**inputs))) == full_reason(code)


# One trigger per stage of the chain (src/shared/workspace-status-reason.ts @ 6c25f7f9,
# lines 99-108), highest first, with the code the stage gives alone.
STAGES = [
    ("archive", {"lifecycle": "ARCHIVING"}, "ARCHIVING"),
    ("terminal PR", {"ratchet_state": "MERGED"}, "MERGED"),
    ("blocking", {"pending_request_type": "permission_request"}, "NEEDS_PERMISSION"),
    ("lifecycle", {"lifecycle": "FAILED"}, "SETUP_FAILED"),
    ("active", {"is_working": True}, "AGENT_WORKING"),
    (
        "ratchet trouble",
        {"has_merge_conflict": True, "flow_phase": "CI_WAIT", "pr_state": "OPEN"},
        "MERGE_CONFLICT",
    ),
    ("PR flow", {"flow_phase": "CI_WAIT", "pr_state": "OPEN"}, "WAITING_FOR_CI"),
    ("idle", {"has_had_sessions": False}, "NO_SESSION_STARTED"),
]


def _stage_pairs():
    for (hi, hi_in, hi_code), (lo, lo_in, _) in itertools.combinations(STAGES, 2):
        shared = hi_in.keys() & lo_in.keys()
        if any(hi_in[k] != lo_in[k] for k in shared):
            continue  # archive and lifecycle share `lifecycle`: they cannot both hold
        yield pytest.param({**lo_in, **hi_in}, hi_code, id=f"{hi} > {lo}")


@pytest.mark.parametrize(("inputs", "code"), list(_stage_pairs()))
def test_status_reason_stage_precedence(inputs, code):
    """Every pair of stages of deriveWorkspaceStatusReason's chain, both triggered: the higher
    stage wins (src/shared/workspace-status-reason.ts @ 6c25f7f9, lines 96-109)."""
    assert r08.status_reason(**reason_input(**inputs)).code == code


@pytest.mark.parametrize(("name", "inputs", "code"), STAGES)
def test_status_reason_stage_alone(name, inputs, code):
    """Each stage trigger alone gives its own code, so the pair test above means something."""
    assert r08.status_reason(**reason_input(**inputs)).code == code


def test_precedence_pairs_cover_the_chain():
    """27 of the 28 stage pairs can be built (archive/lifecycle share the lifecycle field)."""
    assert len(list(_stage_pairs())) == 27


# ---- 2026-08: kanban projection ----------------------------------------------------------------

# src/shared/kanban-column-projection.test.ts @ 6c25f7f9: every code -> its column.
KANBAN = {
    **dict.fromkeys(
        [
            "SETTING_UP",
            "STARTING_SESSION",
            "AGENT_WORKING",
            "AUTO_ITERATING",
            "WAITING_FOR_CI",
            "FIXING_CI_FAILURES",
            "FIXING_REVIEW_COMMENTS",
            "FIXING_MERGE_CONFLICT",
            "CHECKING_PR",
        ],
        "WORKING",
    ),
    **dict.fromkeys(
        [
            "NEEDS_PERMISSION",
            "NEEDS_PLAN_APPROVAL",
            "NEEDS_ANSWER",
            "SESSION_ERROR",
            "SETUP_FAILED",
            "MERGE_CONFLICT",
            "RATCHET_STALLED",
            "READY_TO_MERGE",
            "READY_FOR_REVIEW",
            "NO_SESSION_STARTED",
            "READY_FOR_NEXT_PROMPT",
        ],
        "WAITING",
    ),
    "MERGED": "DONE",
    "PR_CLOSED": "DONE",
    "ARCHIVING": None,
    "ARCHIVED": None,
}


def test_kanban_table_maps_every_code():
    """'maps every status reason code' (kanban-column-projection.test.ts @ 6c25f7f9): the
    table here has the 24 codes of WORKSPACE_STATUS_REASON_CODES."""
    assert set(KANBAN) == set(REASONS) and len(REASONS) == 24


@pytest.mark.parametrize(("code", "column"), sorted(KANBAN.items()))
def test_kanban_column_for_code(code, column):
    """src/shared/kanban-column-projection.test.ts @ 6c25f7f9 (WORKING / WAITING / DONE / off
    the board)."""
    assert r08.kanban_column(code) == column


# ---- 2026-08: every code through derive --------------------------------------------------------

_ACTIVE = {"pr_url": PR, "pr_state": "OPEN"}
_RATCHET = {**_ACTIVE, "ratchet_enabled": True}

# One raw row per code: the assembly (flow -> reason -> column, summaries -> starting/error)
# of src/backend/lib/workspace-derived-state.ts and workspace-snapshot-store.service.ts
# (recomputeDerivedState) @ 6c25f7f9.
ROW_FOR_CODE = {
    "NEEDS_PERMISSION": {"pending_request_type": "permission_request"},
    "NEEDS_PLAN_APPROVAL": {"pending_request_type": "plan_approval"},
    "NEEDS_ANSWER": {"pending_request_type": "user_question"},
    "SESSION_ERROR": {"session_summaries": summaries_text(summary(runtimePhase="error"))},
    "SETTING_UP": {"status": "NEW"},
    "SETUP_FAILED": {"status": "FAILED"},
    "ARCHIVING": {"status": "ARCHIVING"},
    "ARCHIVED": {"status": "ARCHIVED"},
    "AGENT_WORKING": {"is_working": True},
    "STARTING_SESSION": {"session_summaries": summaries_text(summary(runtimePhase="starting"))},
    "AUTO_ITERATING": {"mode": "AUTO_ITERATION", "auto_iteration_status": "RUNNING"},
    "WAITING_FOR_CI": {**_ACTIVE, "pr_ci_status": "PENDING"},
    "FIXING_CI_FAILURES": {**_RATCHET, "pr_ci_status": "FAILURE", "ratchet_state": "CI_FAILED"},
    "FIXING_REVIEW_COMMENTS": {
        **_RATCHET,
        "pr_ci_status": "SUCCESS",
        "ratchet_state": "REVIEW_PENDING",
    },
    "FIXING_MERGE_CONFLICT": {
        **_RATCHET,
        "pr_ci_status": "SUCCESS",
        "ratchet_state": "MERGE_CONFLICT",
        "has_merge_conflict": True,
    },
    "MERGE_CONFLICT": {**_ACTIVE, "pr_ci_status": "SUCCESS", "has_merge_conflict": True},
    "RATCHET_STALLED": {
        **_RATCHET,
        "pr_ci_status": "FAILURE",
        "ratchet_state": "CI_FAILED",
        "ratchet_dispatch_outcome": "DIED",
        "ratchet_dispatch_retry_count": 3,
        "ratchet_dispatch_stalled": True,
    },
    "CHECKING_PR": {**_RATCHET, "pr_ci_status": "SUCCESS", "ratchet_state": "IDLE"},
    "MERGED": {"pr_url": PR, "pr_state": "MERGED"},
    "PR_CLOSED": {"pr_url": PR, "pr_state": "CLOSED"},
    "READY_TO_MERGE": {**_ACTIVE, "pr_ci_status": "SUCCESS"},
    "READY_FOR_REVIEW": {**_ACTIVE, "pr_ci_status": "FAILURE"},
    "NO_SESSION_STARTED": {"has_had_sessions": False},
    "READY_FOR_NEXT_PROMPT": {},
}


def test_every_code_has_a_row():
    assert set(ROW_FOR_CODE) == set(REASONS)


@pytest.mark.parametrize(("code", "kw"), sorted(ROW_FOR_CODE.items()))
def test_every_code_reachable_through_derive(code, kw):
    """Each of the 24 codes of WORKSPACE_STATUS_REASON_CODES (src/shared/workspace-status-
    reason.ts @ 6c25f7f9) from a raw row, with its column (kanban-column-projection.ts)."""
    derived = r08.derive(raw(**kw))
    assert derived_reason(derived) == full_reason(code)
    assert derived["kanban_column"] == KANBAN[code]


def test_derive_returns_the_ten_derived_fields():
    assert set(r08.derive(raw())) == set(DERIVED)
    assert set(r02.derive(raw())) == set(DERIVED)


# ---- 2026-08: flow and ciObservation -----------------------------------------------------------

# (app test name, row fields, phase, working, animated):
# src/backend/services/workspace/service/state/flow-state.test.ts @ 6c25f7f9.
FLOW_08_CASES = [
    (
        "CI_WAIT and working when PR CI is pending (ratchet off)",
        {"pr_ci_status": "PENDING", "pr_updated_at": 1, "ratchet_enabled": False},
        ("CI_WAIT", True, False),
    ),
    (
        "animates ratchet button only while waiting for CI with ratchet enabled",
        {"pr_ci_status": "PENDING", "ratchet_enabled": True, "ratchet_state": "CI_RUNNING"},
        ("CI_WAIT", True, True),
    ),
    (
        "keeps workspace working in RATCHET_VERIFY after CI finishes",
        {"pr_ci_status": "SUCCESS", "ratchet_enabled": True, "ratchet_state": "IDLE"},
        ("RATCHET_VERIFY", True, False),
    ),
    (
        "moves to non-working READY when ratchet has verified readiness",
        {"pr_ci_status": "SUCCESS", "ratchet_enabled": True, "ratchet_state": "READY"},
        ("READY", False, False),
    ),
    (
        "returns RATCHET_FIXING and working for actionable ratchet states",
        {"pr_ci_status": "FAILURE", "ratchet_enabled": True, "ratchet_state": "CI_FAILED"},
        ("RATCHET_FIXING", True, False),
    ),
    (
        "returns MERGED phase for merged PRs",
        {"pr_state": "MERGED", "pr_ci_status": "SUCCESS", "ratchet_enabled": True},
        ("MERGED", False, False),
    ),
    (
        "unknown CI is not fetched when the PR has never been synced",
        {"pr_ci_status": "UNKNOWN", "pr_updated_at": None, "ratchet_enabled": True},
        ("CI_WAIT", True, True),
    ),
    (
        "reads an unfetched CI status as not fetched regardless of elapsed time",
        {"pr_ci_status": "UNKNOWN", "pr_updated_at": 1_577_836_800_000},
        ("CI_WAIT", True, False),
    ),
]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [pytest.param(kw, exp, id=name) for name, kw, exp in FLOW_08_CASES],
)
def test_flow_2026_08(kw, expected):
    """src/backend/services/workspace/service/state/flow-state.test.ts @ 6c25f7f9."""
    flow = r08.flow(raw(**{**_ACTIVE, **kw}))
    assert (flow.phase, flow.working, flow.ratchet_button_animated) == expected


@pytest.mark.parametrize(
    ("status", "observation"),
    [
        ("PENDING", "CHECKS_PENDING"),
        ("FAILURE", "CHECKS_FAILED"),
        ("SUCCESS", "CHECKS_PASSED"),
        ("UNKNOWN", "NOT_FETCHED"),
        (None, "CHECKS_UNKNOWN"),
    ],
)
def test_ci_observation_2026_08(status, observation):
    """deriveWorkspaceCiObservation, src/backend/services/workspace/service/state/flow-state.ts
    @ 6c25f7f9 lines 47-67 (UNKNOWN is always NOT_FETCHED, l.57-64)."""
    assert r08.ci_observation(status) == observation


@pytest.mark.parametrize("updated_at", [None, 1, 1_577_836_800_000])
def test_unknown_ci_is_not_fetched_whatever_pr_updated_at_2026_08(updated_at):
    """'reads an unfetched CI status as not fetched regardless of elapsed time'
    (flow-state.test.ts @ 6c25f7f9): prUpdatedAt is no longer read."""
    row = raw(**_ACTIVE, pr_ci_status="UNKNOWN", pr_updated_at=updated_at)
    derived = r08.derive(row)
    assert (derived["ci_observation"], derived["flow_phase"]) == ("NOT_FETCHED", "CI_WAIT")


@pytest.mark.parametrize(
    ("updated_at", "observation", "phase"),
    [(None, "NOT_FETCHED", "CI_WAIT"), (1_767_225_600_000, "NO_CHECKS", "RATCHET_VERIFY")],
)
def test_unknown_ci_splits_on_pr_updated_at_2026_02(updated_at, observation, phase):
    """'distinguishes unknown CI as not fetched when PR has never been synced' / '... as no
    checks after PR sync', src/backend/domains/workspace/state/flow-state.test.ts @ bfa803e2."""
    row = raw(**_RATCHET, pr_ci_status="UNKNOWN", pr_updated_at=updated_at)
    derived = r02.derive(row)
    assert (derived["ci_observation"], derived["flow_phase"]) == (observation, phase)


# ---- 2026-02: flow -----------------------------------------------------------------------------

# src/backend/domains/workspace/state/flow-state.test.ts @ bfa803e2 (prUpdatedAt is set in
# every case there except the never-synced one): (phase, animated, ciObservation, activity).
# The flow's isWorking shows in the sidebar activity (effectiveWorking, the session idle).
FLOW_02_CASES = [
    (
        "CI_WAIT and working when PR CI is pending (ratchet off)",
        {"pr_ci_status": "PENDING", "ratchet_enabled": False},
        ("CI_WAIT", False, "CHECKS_PENDING", "WORKING"),
    ),
    (
        "animates ratchet button only while waiting for CI with ratchet enabled",
        {"pr_ci_status": "PENDING", "ratchet_enabled": True, "ratchet_state": "CI_RUNNING"},
        ("CI_WAIT", True, "CHECKS_PENDING", "WORKING"),
    ),
    (
        "keeps workspace working in RATCHET_VERIFY after CI finishes",
        {"pr_ci_status": "SUCCESS", "ratchet_enabled": True, "ratchet_state": "IDLE"},
        ("RATCHET_VERIFY", False, "CHECKS_PASSED", "WORKING"),
    ),
    (
        "moves to non-working READY when ratchet has verified readiness",
        {"pr_ci_status": "SUCCESS", "ratchet_enabled": True, "ratchet_state": "READY"},
        ("READY", False, "CHECKS_PASSED", "IDLE"),
    ),
    (
        "returns RATCHET_FIXING and working for actionable ratchet states",
        {"pr_ci_status": "FAILURE", "ratchet_enabled": True, "ratchet_state": "CI_FAILED"},
        ("RATCHET_FIXING", False, "CHECKS_FAILED", "WORKING"),
    ),
    (
        "returns MERGED phase for merged PRs",
        {"pr_state": "MERGED", "pr_ci_status": "SUCCESS", "ratchet_enabled": True},
        ("MERGED", False, "CHECKS_PASSED", "IDLE"),
    ),
    (
        "distinguishes unknown CI as not fetched when PR has never been synced",
        {"pr_ci_status": "UNKNOWN", "pr_updated_at": None, "ratchet_enabled": True},
        ("CI_WAIT", True, "NOT_FETCHED", "WORKING"),
    ),
    (
        "distinguishes unknown CI as no checks after PR sync",
        {"pr_ci_status": "UNKNOWN", "ratchet_enabled": True},
        ("RATCHET_VERIFY", False, "NO_CHECKS", "WORKING"),
    ),
]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [pytest.param(kw, exp, id=name) for name, kw, exp in FLOW_02_CASES],
)
def test_flow_2026_02(kw, expected):
    """src/backend/domains/workspace/state/flow-state.test.ts @ bfa803e2, through derive."""
    derived = r02.derive(raw(**{**_ACTIVE, "pr_updated_at": 1_767_225_600_000, **kw}))
    got = (
        derived["flow_phase"],
        derived["ratchet_button_animated"],
        derived["ci_observation"],
        derived["sidebar_activity_state"],
    )
    assert got == expected


# ---- 2026-02: kanban ---------------------------------------------------------------------------

# (app test name, status, isWorking, prState, hasHadSessions, column):
# src/backend/domains/workspace/state/kanban-state.test.ts @ bfa803e2. No prUrl, so the flow is
# never working and the effective isWorking is the session's.
KANBAN_02_CASES = [
    ("null for ARCHIVED", "ARCHIVED", False, "NONE", False, None),
    ("null for ARCHIVED even with open PR", "ARCHIVED", False, "OPEN", True, None),
    ("WORKING for NEW", "NEW", False, "NONE", False, "WORKING"),
    ("WORKING for PROVISIONING", "PROVISIONING", False, "NONE", False, "WORKING"),
    ("WORKING for FAILED", "FAILED", False, "NONE", False, "WORKING"),
    ("WORKING for FAILED even if had sessions", "FAILED", False, "NONE", True, "WORKING"),
    ("WORKING when isWorking", "READY", True, "NONE", False, "WORKING"),
    ("WORKING when working, even with open PR", "READY", True, "OPEN", True, "WORKING"),
    ("WORKING when working, even with approved PR", "READY", True, "APPROVED", True, "WORKING"),
    ("DONE for merged PR", "READY", False, "MERGED", True, "DONE"),
    ("DONE for merged PR even without sessions", "READY", False, "MERGED", False, "DONE"),
    ("null if never had sessions", "READY", False, "NONE", False, None),
    ("null if no sessions even with closed PR", "READY", False, "CLOSED", False, None),
    ("WAITING if had sessions but no PR", "READY", False, "NONE", True, "WAITING"),
    ("WAITING if had sessions and PR was closed", "READY", False, "CLOSED", True, "WAITING"),
    ("WAITING for approved PR", "READY", False, "APPROVED", True, "WAITING"),
    ("WAITING for draft PR", "READY", False, "DRAFT", True, "WAITING"),
    ("WAITING for open PR", "READY", False, "OPEN", True, "WAITING"),
    ("WAITING for changes requested", "READY", False, "CHANGES_REQUESTED", True, "WAITING"),
    ("ARCHIVED over isWorking", "ARCHIVED", True, "OPEN", True, None),
    ("WORKING for NEW even if isWorking", "NEW", True, "NONE", False, "WORKING"),
    ("isWorking over PR state for READY", "READY", True, "MERGED", True, "WORKING"),
]


@pytest.mark.parametrize(
    ("status", "working", "pr_state", "had", "column"),
    [pytest.param(*case[1:], id=case[0]) for case in KANBAN_02_CASES],
)
def test_kanban_2026_02(status, working, pr_state, had, column):
    """src/backend/domains/workspace/state/kanban-state.test.ts @ bfa803e2, through derive."""
    row = raw(status=status, is_working=working, pr_state=pr_state, has_had_sessions=had)
    assert r02.derive(row)["kanban_column"] == column


def test_archiving_is_off_the_board_2026_02():
    """DESIGN.md 'New values': status ARCHIVING -> kanbanColumn null (bfa803e2 had no ARCHIVING)."""
    assert r02.derive(raw(status="ARCHIVING", is_working=True))["kanban_column"] is None


def test_kanban_follows_flow_working_2026_02():
    """'kanbanColumn reflects isWorking from flow state', src/backend/services/workspace-
    snapshot-store.service.test.ts @ bfa803e2 (mocked flow: an open PR with CI pending)."""
    derived = r02.derive(raw(**_ACTIVE, pr_ci_status="PENDING", has_had_sessions=False))
    assert (derived["kanban_column"], derived["sidebar_activity_state"]) == ("WORKING", "WORKING")


@pytest.mark.parametrize("code_row", sorted(ROW_FOR_CODE))
def test_no_status_reason_in_2026_02(code_row):
    """Spec: the four status reason columns are NULL under 2026-02 (bfa803e2 has none)."""
    derived = r02.derive(raw(**ROW_FOR_CODE[code_row]))
    assert derived_reason(derived) == (None, None, None, None)


# ---- sidebar ciState, both rule sets -----------------------------------------------------------

# (app test name, pr fields, ciState 2026-08, ciState 2026-02):
# src/shared/workspace-sidebar-status.test.ts @ 6c25f7f9 and @ bfa803e2 (same cases, the CLOSED
# one only at 6c25f7f9; at bfa803e2 src/shared/workspace-sidebar-status.ts has no CLOSED and maps
# the CI status instead, lines 36-51).
SIDEBAR_CASES = [
    ("no PR", {"pr_url": None}, "NONE", "NONE"),
    (
        "prioritizes merged PR over CI fields",
        {"pr_state": "MERGED", "pr_ci_status": "FAILURE", "ratchet_state": "CI_FAILED"},
        "MERGED",
        "MERGED",
    ),
    (
        "treats ratchet merged as merged when PR snapshot is stale",
        {"pr_state": "OPEN", "pr_ci_status": "SUCCESS", "ratchet_state": "MERGED"},
        "MERGED",
        "MERGED",
    ),
    (
        "treats closed PRs as a terminal closed state",
        {"pr_state": "CLOSED", "pr_ci_status": "SUCCESS", "ratchet_state": "IDLE"},
        "CLOSED",
        "PASSING",
    ),
    (
        "prefers PR snapshot CI failure over stale ratchet CI running",
        {"pr_state": "OPEN", "pr_ci_status": "FAILURE", "ratchet_state": "CI_RUNNING"},
        "FAILING",
        "FAILING",
    ),
    (
        "prefers PR snapshot CI passing over stale ratchet CI running",
        {"pr_state": "OPEN", "pr_ci_status": "SUCCESS", "ratchet_state": "CI_RUNNING"},
        "PASSING",
        "PASSING",
    ),
    (
        "uses ratchet CI state as fallback when PR CI status is unknown",
        {"pr_state": "OPEN", "pr_ci_status": "UNKNOWN", "ratchet_state": "CI_RUNNING"},
        "RUNNING",
        "RUNNING",
    ),
    (
        "falls back to prCiStatus when ratchet state is not CI-specific",
        {"pr_state": "OPEN", "pr_ci_status": "FAILURE", "ratchet_state": "READY"},
        "FAILING",
        "FAILING",
    ),
    # Source, not test: src/shared/core/workspace-sidebar-status.ts @ 6c25f7f9 l.47-54 (CLOSED
    # before CONFLICT, CONFLICT before the CI mapping) and l.58-60 (CI_FAILED fallback);
    # DESIGN.md 'New values' for CONFLICT in 2026-02.
    (
        "closed before conflict",
        {"pr_state": "CLOSED", "pr_ci_status": "FAILURE", "ratchet_state": "MERGE_CONFLICT"},
        "CLOSED",
        "CONFLICT",
    ),
    (
        "conflict before CI",
        {"pr_state": "OPEN", "pr_ci_status": "SUCCESS", "ratchet_state": "MERGE_CONFLICT"},
        "CONFLICT",
        "CONFLICT",
    ),
    (
        "ratchet CI failed as fallback",
        {"pr_state": "OPEN", "pr_ci_status": "UNKNOWN", "ratchet_state": "CI_FAILED"},
        "FAILING",
        "FAILING",
    ),
    (
        "unknown CI, no fallback",
        {"pr_state": "OPEN", "pr_ci_status": "UNKNOWN", "ratchet_state": "IDLE"},
        "UNKNOWN",
        "UNKNOWN",
    ),
]


@pytest.mark.parametrize(
    ("kw", "ci_08", "ci_02"),
    [pytest.param(*case[1:], id=case[0]) for case in SIDEBAR_CASES],
)
def test_sidebar_ci_state(kw, ci_08, ci_02):
    """src/shared/workspace-sidebar-status.test.ts @ 6c25f7f9 (2026-08) and @ bfa803e2
    (2026-02); extra cases from the source files named at them."""
    row = raw(**{"pr_url": PR, **kw})
    assert r08.sidebar_ci_state(row) == ci_08
    assert r08.derive(row)["sidebar_ci_state"] == ci_08
    assert r02.derive(row)["sidebar_ci_state"] == ci_02


# ---- activity: the session only (2026-08) vs session or flow (2026-02) -------------------------


def test_activity_from_session_working():
    """'marks activity as working when isWorking is true' (workspace-sidebar-status.test.ts @
    6c25f7f9 and @ bfa803e2) and 'derived state uses session activity for visible working state'
    (workspace-snapshot-store.service.test.ts @ 6c25f7f9)."""
    row = raw(is_working=True)
    assert r08.derive(row)["sidebar_activity_state"] == "WORKING"
    assert r02.derive(row)["sidebar_activity_state"] == "WORKING"


def test_pr_flow_is_not_agent_work_2026_08():
    """'keeps PR flow automation-owned without treating it as live agent work'
    (src/backend/services/workspace/service/snapshot/workspace-snapshot-store.service.test.ts @
    6c25f7f9; its mocked flow is CI_WAIT for a PR with CI pending: an OPEN PR here) and 'uses
    live session activity, not PR flow activity' (src/backend/lib/workspace-derived-state.test.ts
    @ 6c25f7f9). Under 2026-02 the flow counts (effectiveWorking, DESIGN.md)."""
    row = raw(**_ACTIVE, pr_ci_status="PENDING", has_had_sessions=False)
    new, old = r08.derive(row), r02.derive(row)
    assert (new["flow_phase"], new["sidebar_activity_state"], new["kanban_column"]) == (
        "CI_WAIT",
        "IDLE",
        "WORKING",
    )
    assert old["sidebar_activity_state"] == "WORKING"


def test_flow_working_does_not_latch_2026_08():
    """'does not latch flow-derived isWorking across PR-only updates' (workspace-snapshot-store.
    service.test.ts @ 6c25f7f9): CI pending then passed, the session never working."""
    pending = r08.derive(raw(**_ACTIVE, pr_ci_status="PENDING", has_had_sessions=False))
    passed = r08.derive(raw(**_ACTIVE, pr_ci_status="SUCCESS", has_had_sessions=False))
    assert pending["kanban_column"] == "WORKING"
    assert (passed["sidebar_activity_state"], passed["kanban_column"]) == ("IDLE", "WAITING")


def test_stale_summaries_do_not_make_the_workspace_working():
    """'authoritative isWorking=false is not overridden by stale session summaries'
    (workspace-snapshot-store.service.test.ts @ 6c25f7f9): derive reads is_working, not the
    summaries, for the activity."""
    running = summary(
        sessionId="s-1", persistedStatus="RUNNING", runtimePhase="running", activity="WORKING"
    )
    row = raw(is_working=False, has_had_sessions=False, session_summaries=summaries_text(running))
    derived = r08.derive(row)
    assert (derived["sidebar_activity_state"], derived["kanban_column"]) == ("IDLE", "WAITING")


def test_first_upsert_defaults_2026_08():
    """'derived state is computed on first upsert' (workspace-snapshot-store.service.test.ts @
    6c25f7f9): makeUpdate's row (no PR, no sessions yet)."""
    derived = r08.derive(raw(has_had_sessions=False))
    got = (derived["flow_phase"], derived["kanban_column"], derived["sidebar_ci_state"])
    assert got == ("NO_PR", "WAITING", "NONE")


def test_ratchet_button_animated_2026_08():
    """'ratchetButtonAnimated reflects flow state' (workspace-snapshot-store.service.test.ts @
    6c25f7f9; mocked flow animates for ratchet on + CI pending: an OPEN PR here)."""
    assert r08.derive(raw(**_RATCHET, pr_ci_status="PENDING"))["ratchet_button_animated"] is True


def test_stalled_dispatch_moves_to_waiting_2026_08():
    """'moves a stalled Ratchet dispatch to waiting without reporting live agent work'
    (workspace-snapshot-store.service.test.ts @ 6c25f7f9, real flow and sidebar functions;
    ratchetDispatchMaxRetries = 3 in src/backend/services/constants.ts @ 6c25f7f9)."""
    row = raw(**_RATCHET, has_had_sessions=False)
    transitions = [
        {"pr_ci_status": "PENDING", "ratchet_state": "CI_RUNNING"},
        {"pr_ci_status": "FAILURE", "ratchet_state": "CI_RUNNING"},
        {"ratchet_state": "CI_FAILED", "ratchet_dispatch_outcome": "RUNNING"},
        {
            "ratchet_state": "CI_FAILED",
            "ratchet_dispatch_outcome": "DIED",
            "ratchet_dispatch_retry_count": 3,
            "ratchet_dispatch_stalled": True,
        },
    ]
    columns = []
    for update in transitions:
        row.update(update)
        derived = r08.derive(row)
        assert derived["sidebar_activity_state"] == "IDLE"
        columns.append(derived["kanban_column"])
    assert columns == ["WORKING", "WORKING", "WORKING", "WAITING"]


def test_reason_then_column_2026_08():
    """'projects the kanban column from the status reason it just computed'
    (src/backend/lib/workspace-derived-state.test.ts @ 6c25f7f9)."""
    idle, working = r08.derive(raw()), r08.derive(raw(is_working=True))
    assert (idle["status_reason_code"], idle["kanban_column"]) == (
        "READY_FOR_NEXT_PROMPT",
        "WAITING",
    )
    assert (working["status_reason_code"], working["kanban_column"]) == ("AGENT_WORKING", "WORKING")


def test_canonical_derived_shape_2026_08():
    """'maps flow fields and computed values into canonical derived shape'
    (src/backend/lib/workspace-derived-state.test.ts @ 6c25f7f9). Its flow state is given
    (CI_WAIT, CHECKS_PENDING, animated); here the real flow gives it, which needs the ratchet on."""
    row = raw(**_RATCHET, pr_ci_status="PENDING", ratchet_state="REVIEW_PENDING")
    assert r08.derive(row) == {
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


def test_session_error_from_unexpected_exit_2026_08():
    """hasSessionRuntimeError from the summaries (workspace-snapshot-store.service.ts @ 6c25f7f9
    l.464): an idle session whose process exited unexpectedly is a session error."""
    crashed = summary(processState="stopped", lastExit=UNEXPECTED_EXIT)
    derived = r08.derive(
        raw(**_ACTIVE, pr_ci_status="PENDING", session_summaries=summaries_text(crashed))
    )
    assert derived["status_reason_code"] == "SESSION_ERROR"


def test_loading_session_is_starting_2026_08():
    """hasStartingSessionSummary counts 'loading' (src/shared/session-runtime.ts @ 6c25f7f9
    l.177-183), so derive reports STARTING_SESSION."""
    other = summary(sessionId="s-0")
    loading = summary(sessionId="s-1", runtimePhase="loading")
    derived = r08.derive(raw(session_summaries=summaries_text(other, loading)))
    assert derived["status_reason_code"] == "STARTING_SESSION"


# ---- session summaries: working / starting / error (2026-08) -----------------------------------


@pytest.mark.parametrize(
    ("activity", "phase", "working"),
    [("WORKING", "idle", True), ("IDLE", "running", True), ("IDLE", "idle", False)],
)
def test_summary_is_working(activity, phase, working):
    """'session runtime working helpers', src/shared/session-runtime.test.ts @ 6c25f7f9."""
    assert r08.summary_is_working(summary(activity=activity, runtimePhase=phase)) is working


@pytest.mark.parametrize(
    ("phases", "starting"),
    [
        (["starting"], True),
        (["loading"], True),
        (["running"], False),
        (["idle"], False),
        (["stopping"], False),
        (["error"], False),
        ([], False),
        (["idle", "starting"], True),
    ],
)
def test_has_starting_summary(phases, starting):
    """'hasStartingSessionSummary', src/shared/session-runtime.test.ts @ 6c25f7f9."""
    items = [summary(sessionId=f"s-{i}", runtimePhase=p) for i, p in enumerate(phases)]
    assert r08.has_starting_summary(items) is starting


# (name, phase, errorMessage, lastExit, message): the first four are expectedCases of
# src/shared/session-runtime.test.ts @ 6c25f7f9; the rest are branches of
# resolveSessionRuntimeErrorMessage, src/shared/session-runtime.ts @ 6c25f7f9 l.111-137.
ERROR_CASES = [
    (
        "trimmed explicit error in error phase",
        "error",
        "  runtime failed  ",
        None,
        "runtime failed",
    ),
    (
        "unexpected exit message in error phase",
        "error",
        None,
        UNEXPECTED_EXIT,
        "Exited unexpectedly (code 42)",
    ),
    (
        "explicit message for unexpected exit outside error",
        "running",
        "  process crashed  ",
        UNEXPECTED_EXIT,
        "process crashed",
    ),
    ("null when there is no error signal", "running", None, None, None),
    ("error phase, nothing else (l.129)", "error", None, None, "Session entered an error state"),
    (
        "error phase, blank message (l.120-129)",
        "error",
        "   ",
        None,
        "Session entered an error state",
    ),
    (
        "unexpected exit without a code (l.112)",
        "idle",
        None,
        {"code": None, "timestamp": "2026-02-20T00:00:00.000Z", "unexpected": True},
        "Exited unexpectedly",
    ),
    (
        "expected exit is no error (l.132-136)",
        "idle",
        "old message",
        {"code": 0, "timestamp": "2026-02-20T00:00:00.000Z", "unexpected": False},
        None,
    ),
]


@pytest.mark.parametrize(
    ("phase", "error", "last_exit", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in ERROR_CASES],
)
def test_session_runtime_error(phase, error, last_exit, message):
    """src/shared/session-runtime.test.ts @ 6c25f7f9 ('session runtime error message helpers')
    and session-runtime.ts (findWorkspaceSessionRuntimeError)."""
    item = summary(sessionId="s-1", runtimePhase=phase, errorMessage=error, lastExit=last_exit)
    expected = None if message is None else ("s-1", message)
    assert r08.session_runtime_error([item]) == expected


def test_session_runtime_error_first_session_wins():
    """findWorkspaceSessionRuntimeError returns the first summary with a message
    (src/shared/session-runtime.ts @ 6c25f7f9 l.192-199); none for no summaries (l.188)."""
    items = [
        summary(sessionId="a", lastExit=None),
        summary(sessionId="b", runtimePhase="error", errorMessage="boom"),
        summary(sessionId="c", runtimePhase="error", errorMessage="later"),
    ]
    assert r08.session_runtime_error(items) == ("b", "boom")
    assert r08.session_runtime_error([]) is None


# ---- session rules: working and pending requests -----------------------------------------------


def entry(**kw: Any) -> dict[str, Any]:
    """One runtime entry after the spec's defaults."""
    base: dict[str, Any] = {
        "isWorking": False,
        "pendingRequest": None,
        "phase": "idle",
        "processState": "alive",
        "activity": "IDLE",
        "updatedAt": "2026-01-03T15:00:00.000Z",
        "lastExit": None,
        "errorMessage": None,
    }
    base.update(kw)
    return base


# (entry fields, 2026-08 working, 2026-02 working). 2026-08: isSessionSummaryWorking
# (src/shared/session-runtime.test.ts @ 6c25f7f9, 'session runtime working helpers'; the
# orchestrator takes isWorking from the summaries, src/backend/orchestration/snapshot-
# reconciliation.orchestrator.ts @ 6c25f7f9 l.230-233). 2026-02: the runtime's isWorking
# (bridges.session.isAnySessionWorking, snapshot-reconciliation.orchestrator.ts @ bfa803e2).
WORKING_CASES = [
    ({"activity": "WORKING", "phase": "idle"}, True, False),
    ({"activity": "IDLE", "phase": "running"}, True, False),
    ({"activity": "IDLE", "phase": "idle"}, False, False),
    ({"isWorking": True, "activity": "IDLE", "phase": "idle"}, False, True),
    ({"isWorking": True, "activity": "WORKING", "phase": "running"}, True, True),
    # 'does not treat stale persisted RUNNING sessions as working after restart'
    # (snapshot-reconciliation.orchestrator.test.ts @ 6c25f7f9): the runtime says idle/stopped.
    ({"phase": "idle", "processState": "stopped", "activity": "IDLE"}, False, False),
]


@pytest.mark.parametrize(("kw", "new", "old"), WORKING_CASES)
def test_session_working(kw, new, old):
    state = entry(**kw)
    assert r08.session_working(state) is new
    assert r02.session_working(state) is old


# (app test name, requests in (createdAt, id) order, type). 2026-08:
# src/backend/services/workspace/service/state/pending-request-type.test.ts,
# src/shared/pending-request-types.test.ts and src/backend/orchestration/snapshot-
# reconciliation.orchestrator.test.ts, all @ 6c25f7f9.
PENDING_08_CASES = [
    (
        "plan_approval when any session has ExitPlanMode",
        [("ReadFile", None), ("ExitPlanMode", None)],
        "plan_approval",
    ),
    (
        "plan_approval when stable input type is ExitPlanMode",
        [("Review Proposed Plan", {"type": "ExitPlanMode"}), ("ReadFile", None)],
        "plan_approval",
    ),
    (
        "user_question for AskUserQuestion",
        [("AskUserQuestion", None), ("ReadFile", None)],
        "user_question",
    ),
    (
        "user_question when the input contains questions",
        [("Tool input request", {"questions": [{"question": "Q1"}]}), ("ReadFile", None)],
        "user_question",
    ),
    (
        "permission_request for generic requests",
        [("ReadFile", None), ("WriteFile", None)],
        "permission_request",
    ),
    (
        "user_question over generic permissions",
        [("ReadFile", None), ("AskUserQuestion", None)],
        "user_question",
    ),
    ("null when no pending requests exist", [None, None], None),
    (
        "detects AskUserQuestion-style input shape (empty list)",
        [("X", {"questions": []})],
        "user_question",
    ),
    ("input without questions is not a question", [("X", {})], "permission_request"),
    ("AskUserQuestion tool name with empty input", [("AskUserQuestion", {})], "user_question"),
    (
        "input type other than ExitPlanMode",
        [("Review Proposed Plan", {"type": "Review Proposed Plan"})],
        "permission_request",
    ),
    (
        "maps non-question permissions to permission_request",
        [("RequestPermission", None)],
        "permission_request",
    ),
    (
        "prioritizes AskUserQuestion over generic permissions",
        [("RequestPermission", None), ("AskUserQuestion", None)],
        "user_question",
    ),
    (
        "prioritizes ExitPlanMode over question and generic permissions",
        [("RequestPermission", None), ("AskUserQuestion", None), ("ExitPlanMode", None)],
        "plan_approval",
    ),
    # Source: pending-request-type.ts @ 6c25f7f9 l.30-37 (any plan wins, order-independent);
    # pending-request-types.ts l.35-36 (questions must be an array).
    (
        "plan after a question still wins",
        [("AskUserQuestion", None), ("ExitPlanMode", None)],
        "plan_approval",
    ),
    ("questions that are not a list", [("X", {"questions": "Q1"})], "permission_request"),
    ("no sessions", [], None),
]

# 2026-02: the first ExitPlanMode / AskUserQuestion by tool name, other tools skipped
# (computePendingRequestType, src/backend/orchestration/snapshot-reconciliation.orchestrator.ts
# @ bfa803e2 l.117-133; its test 'computes pendingRequestType from session bridges'), and
# permission_request when only other tools wait (DESIGN.md 'New values').
PENDING_02_CASES = [
    ("computes pendingRequestType from session bridges", [("ExitPlanMode", None)], "plan_approval"),
    (
        "first match wins: question first",
        [("AskUserQuestion", None), ("ExitPlanMode", None)],
        "user_question",
    ),
    (
        "first match wins: plan first",
        [("ExitPlanMode", None), ("AskUserQuestion", None)],
        "plan_approval",
    ),
    ("other tools are skipped", [("ReadFile", None), ("AskUserQuestion", None)], "user_question"),
    ("only other tools: permission_request", [("ReadFile", None), None], "permission_request"),
    (
        "tool name only: input type ignored",
        [("Review Proposed Plan", {"type": "ExitPlanMode"})],
        "permission_request",
    ),
    (
        "tool name only: questions ignored",
        [("Tool input request", {"questions": []})],
        "permission_request",
    ),
    ("null when no pending requests exist", [None, None], None),
    ("no sessions", [], None),
]


@pytest.mark.parametrize(
    ("requests", "expected"),
    [pytest.param(r, e, id=name) for name, r, e in PENDING_08_CASES],
)
def test_pending_request_type_2026_08(requests, expected):
    """Cases from the three app files named above PENDING_08_CASES (@ 6c25f7f9)."""
    assert r08.pending_request_type(requests) == expected


@pytest.mark.parametrize(
    ("requests", "expected"),
    [pytest.param(r, e, id=name) for name, r, e in PENDING_02_CASES],
)
def test_pending_request_type_2026_02(requests, expected):
    """snapshot-reconciliation.orchestrator.ts/.test.ts @ bfa803e2 and DESIGN.md."""
    assert r02.pending_request_type(requests) == expected


# ---- the registry ------------------------------------------------------------------------------


def test_rule_set_names():
    assert set(rules.RULE_SETS) == {"2026-02", "2026-08"}


@pytest.mark.parametrize(("gen", "name"), [(1, "2026-02"), (2, "2026-08"), (3, "2026-08")])
def test_default_for_generation(gen, name):
    """Spec/DESIGN.md: gen 1 gets 2026-02, gen 2 and 3 get 2026-08."""
    assert rules.default_for_generation(gen) == name
    assert rules.resolve("auto", gen) == name


@pytest.mark.parametrize("gen", [1, 2, 3])
@pytest.mark.parametrize("setting", ["2026-02", "2026-08"])
def test_resolve_setting_overrides_generation(setting, gen):
    assert rules.resolve(setting, gen) == setting


@pytest.mark.parametrize(("name", "module"), [("2026-02", r02), ("2026-08", r08)])
def test_registry_entry_is_its_module(name, module):
    """A row the two rule sets tell apart (closed PR: CLOSED only in 2026-08, and a status
    reason only there): each registry entry derives as its own module."""
    row = raw(pr_url=PR, pr_state="CLOSED", pr_ci_status="SUCCESS")
    assert rules.RULE_SETS[name].derive(row) == module.derive(row)
    assert r02.derive(row) != r08.derive(row)
