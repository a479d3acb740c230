"""Rule set 2026-08: the derived fields as the app computes them today (factory-factory
6c25f7f9; docs/CONTRACT.md, "Rule sets"). What changed since 2026-02:

- ciObservation: CI status UNKNOWN is always NOT_FETCHED (prUpdatedAt is no longer read), which
  moves flowPhase and the ratchet button with it (``state/flow-state.ts``);
- a **status reason** ``{code, label, tone, needsUser}``, the first match of a precedence chain
  (``src/shared/workspace-status-reason.ts``), and the kanban column is a projection of its code
  (``src/shared/kanban-column-projection.ts``);
- the sidebar's activity comes from the session alone, and its CI state has CLOSED
  (``src/shared/core/workspace-sidebar-status.ts``);
- pending requests: any plan approval > any question > any other request, in any session order
  (``state/pending-request-type.ts``); a session works when its activity is WORKING or its runtime
  phase is running (``src/shared/session-runtime.ts``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from reconcile_pipeline.core import session_summaries
from reconcile_pipeline.core.rules.rules_2026_02 import Flow, flow_from, sidebar_ci_of_an_open_pr

NAME = "2026-08"
APP_COMMIT = "6c25f7f9"

_CI_OBSERVATION = {
    "PENDING": "CHECKS_PENDING",
    "FAILURE": "CHECKS_FAILED",
    "SUCCESS": "CHECKS_PASSED",
    "UNKNOWN": "NOT_FETCHED",  # not read yet; the PR sync poll resolves it
}


def ci_observation(pr_ci_status: str | None) -> str:
    return _CI_OBSERVATION.get(pr_ci_status or "", "CHECKS_UNKNOWN")


def flow(row: Mapping[str, Any]) -> Flow:
    return flow_from(row, ci_observation(row["pr_ci_status"]))


def sidebar_ci_state(row: Mapping[str, Any]) -> str:
    if not row["pr_url"]:
        return "NONE"
    if row["pr_state"] == "MERGED" or row["ratchet_state"] == "MERGED":
        return "MERGED"
    if row["pr_state"] == "CLOSED":
        return "CLOSED"
    return sidebar_ci_of_an_open_pr(row)


# ---- the status reason and the board ----------------------------------------------------------


class StatusReason(NamedTuple):
    code: str
    label: str
    tone: str  # neutral | working | waiting | attention | success | danger
    needs_user: bool


def _reason(code: str, label: str, tone: str, needs_user: bool = False) -> StatusReason:
    return StatusReason(code, label, tone, needs_user)


_BLOCKING = {
    "permission_request": _reason("NEEDS_PERMISSION", "Needs permission", "attention", True),
    "plan_approval": _reason("NEEDS_PLAN_APPROVAL", "Needs plan approval", "attention", True),
    "user_question": _reason("NEEDS_ANSWER", "Needs your answer", "attention", True),
}


def status_reason(
    *,
    lifecycle: str,
    has_had_sessions: bool,
    is_working: bool,
    is_session_starting: bool,
    pending_request_type: str | None,
    has_session_runtime_error: bool,
    flow_phase: str,
    ci_observation: str,
    pr_state: str,
    pr_ci_status: str,
    ratchet_state: str,
    ratchet_enabled: bool,
    has_merge_conflict: bool,
    dispatch_stalled: bool,
    mode: str,
    auto_iteration_status: str | None,
) -> StatusReason:
    """The first match of: archive, terminal PR, blocking, lifecycle, active, ratchet trouble
    (only with a PR), PR flow, idle. ``pr_ci_status`` is an input of the app's function that no
    branch reads; it is kept so the signature matches."""
    # Archive: leaving the board outranks everything below.
    if lifecycle == "ARCHIVING":
        return _reason("ARCHIVING", "Archiving", "working")
    if lifecycle == "ARCHIVED":
        return _reason("ARCHIVED", "Archived", "neutral")
    # A merged or closed PR is done for good, whatever waits or failed.
    if flow_phase == "MERGED" or pr_state == "MERGED" or ratchet_state == "MERGED":
        return _reason("MERGED", "Merged", "success")
    if pr_state == "CLOSED":
        return _reason("PR_CLOSED", "PR closed", "neutral")
    if pending_request_type in _BLOCKING:
        return _BLOCKING[pending_request_type]
    if has_session_runtime_error:
        return _reason("SESSION_ERROR", "Session error", "danger", True)
    if lifecycle in ("NEW", "PROVISIONING"):
        return _reason("SETTING_UP", "Setting up workspace", "working")
    if lifecycle == "FAILED":
        return _reason("SETUP_FAILED", "Setup failed", "danger", True)
    if is_working:
        return _reason("AGENT_WORKING", "Agent working", "working")
    if is_session_starting:
        return _reason("STARTING_SESSION", "Starting session", "working")
    if mode == "AUTO_ITERATION" and auto_iteration_status == "RUNNING":
        return _reason("AUTO_ITERATING", "Auto-iterating", "working")
    # Ratchet trouble is a statement about a PR: never for a workspace without one.
    if flow_phase != "NO_PR":
        if ratchet_enabled and dispatch_stalled:
            return _reason("RATCHET_STALLED", "Auto-fix stalled", "attention", True)
        if has_merge_conflict:
            if ratchet_enabled:
                return _reason("FIXING_MERGE_CONFLICT", "Fixing merge conflict", "working")
            return _reason("MERGE_CONFLICT", "Merge conflict", "attention", True)
    if flow_phase == "CI_WAIT":
        return _reason("WAITING_FOR_CI", "Waiting for CI", "waiting")
    if flow_phase == "RATCHET_FIXING":
        if ratchet_state == "REVIEW_PENDING":
            return _reason("FIXING_REVIEW_COMMENTS", "Fixing review comments", "working")
        return _reason("FIXING_CI_FAILURES", "Fixing CI failures", "working")
    if flow_phase == "RATCHET_VERIFY":
        return _reason("CHECKING_PR", "Checking PR", "working")
    if flow_phase == "READY":
        if ci_observation == "CHECKS_PASSED":
            return _reason("READY_TO_MERGE", "Ready to merge", "success", True)
        return _reason("READY_FOR_REVIEW", "Ready for review", "neutral", True)
    if not has_had_sessions:
        return _reason("NO_SESSION_STARTED", "No session started", "neutral", True)
    return _reason("READY_FOR_NEXT_PROMPT", "Ready for next prompt", "neutral", True)


# The board is a projection of the reason's code: automation owns the next action (WORKING), a
# human does (WAITING), finished (DONE), or off the board (None).
KANBAN_COLUMN_BY_CODE: Mapping[str, str | None] = {
    **dict.fromkeys(
        (
            "SETTING_UP",
            "STARTING_SESSION",
            "AGENT_WORKING",
            "AUTO_ITERATING",
            "WAITING_FOR_CI",
            "FIXING_CI_FAILURES",
            "FIXING_REVIEW_COMMENTS",
            "FIXING_MERGE_CONFLICT",
            "CHECKING_PR",
        ),
        "WORKING",
    ),
    **dict.fromkeys(
        (
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
        ),
        "WAITING",
    ),
    "MERGED": "DONE",
    "PR_CLOSED": "DONE",
    "ARCHIVING": None,
    "ARCHIVED": None,
}
STATUS_REASON_CODES = tuple(KANBAN_COLUMN_BY_CODE)


def kanban_column(code: str) -> str | None:
    return KANBAN_COLUMN_BY_CODE[code]


# ---- session summaries ------------------------------------------------------------------------


def summary_is_working(summary: Mapping[str, Any]) -> bool:
    # activity tracks work in flight, runtimePhase the process: either signal counts.
    return summary["activity"] == "WORKING" or summary["runtimePhase"] == "running"


def has_starting_summary(summaries: Sequence[Mapping[str, Any]]) -> bool:
    """A session spawned but not yet working (the window before its first activity)."""
    return any(s["runtimePhase"] in ("starting", "loading") for s in summaries)


# What JavaScript's String.prototype.trim removes (ECMAScript WhiteSpace and LineTerminator):
# Python's str.strip differs (it strips \x1c-\x1f and \x85, keeps \ufeff).
_JS_WHITESPACE = "\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def _error_message(summary: Mapping[str, Any]) -> str | None:
    text = (summary.get("errorMessage") or "").strip(_JS_WHITESPACE)
    last_exit = summary.get("lastExit") or {}
    unexpected = bool(last_exit.get("unexpected"))
    exit_text = "Exited unexpectedly" + (
        f" (code {last_exit['code']})" if last_exit.get("code") is not None else ""
    )
    if summary["runtimePhase"] == "error":
        return text or (exit_text if unexpected else "Session entered an error state")
    if unexpected:
        return text or exit_text
    return None


def session_runtime_error(summaries: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(session id, message) of the first summary in an error state or after an unexpected exit."""
    for summary in summaries:
        message = _error_message(summary)
        if message:
            return summary["sessionId"], message
    return None


# ---- the whole row ----------------------------------------------------------------------------


def derive(row: Mapping[str, Any]) -> dict[str, Any]:
    """The derived columns of a snapshot from its (merged) raw fields: the reason first, the
    column read off it, the sidebar from the session's own flag."""
    observation = ci_observation(row["pr_ci_status"])
    f = flow_from(row, observation)
    summaries = session_summaries.parse(row["session_summaries"])
    is_working = bool(row["is_working"])
    reason = status_reason(
        lifecycle=row["status"],
        has_had_sessions=bool(row["has_had_sessions"]),
        is_working=is_working,
        is_session_starting=has_starting_summary(summaries),
        pending_request_type=row["pending_request_type"],
        has_session_runtime_error=session_runtime_error(summaries) is not None,
        flow_phase=f.phase,
        ci_observation=observation,
        pr_state=row["pr_state"],
        pr_ci_status=row["pr_ci_status"],
        ratchet_state=row["ratchet_state"],
        ratchet_enabled=bool(row["ratchet_enabled"]),
        has_merge_conflict=bool(row["has_merge_conflict"]),
        dispatch_stalled=bool(row["ratchet_dispatch_stalled"]),
        mode=row["mode"],
        auto_iteration_status=row["auto_iteration_status"],
    )
    return {
        "flow_phase": f.phase,
        "ci_observation": observation,
        "ratchet_button_animated": f.ratchet_button_animated,
        "kanban_column": kanban_column(reason.code),
        "sidebar_activity_state": "WORKING" if is_working else "IDLE",
        "sidebar_ci_state": sidebar_ci_state(row),
        "status_reason_code": reason.code,
        "status_reason_label": reason.label,
        "status_reason_tone": reason.tone,
        "status_reason_needs_user": reason.needs_user,
    }


# ---- the session group's authoritative values -------------------------------------------------


def _is_plan_approval(tool: str, request_input: Mapping | None) -> bool:
    return tool == "ExitPlanMode" or (request_input or {}).get("type") == "ExitPlanMode"


def _is_user_question(tool: str, request_input: Mapping | None) -> bool:
    return tool == "AskUserQuestion" or isinstance((request_input or {}).get("questions"), list)


def pending_request_type(requests: Sequence[tuple[str, Mapping | None] | None]) -> str | None:
    """Any plan approval, else any question, else any other pending request: across all of the
    workspace's agent sessions, whatever their order."""
    pending = [r for r in requests if r is not None]
    if any(_is_plan_approval(tool, data) for tool, data in pending):
        return "plan_approval"
    if any(_is_user_question(tool, data) for tool, data in pending):
        return "user_question"
    return "permission_request" if pending else None


def session_working(state: Mapping[str, Any]) -> bool:
    """A session works when its activity is WORKING or its runtime phase is running."""
    return state["activity"] == "WORKING" or state["phase"] == "running"
