"""Rule set 2026-02: the contract's derived fields, as the app computed them on 2026-02-11
(factory-factory bfa803e2; docs/CONTRACT.md, "Rule sets"). First match wins in every table.

This rule set has no status reason: its four columns stay null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

NAME = "2026-02"
APP_COMMIT = "bfa803e2"

ACTIVE_PR_STATES = frozenset({"OPEN", "DRAFT", "CHANGES_REQUESTED", "APPROVED"})

_CI_OBSERVATION = {
    "PENDING": "CHECKS_PENDING",
    "FAILURE": "CHECKS_FAILED",
    "SUCCESS": "CHECKS_PASSED",
}
_SIDEBAR_CI = {"SUCCESS": "PASSING", "FAILURE": "FAILING", "PENDING": "RUNNING"}
_PENDING_TOOLS = {"ExitPlanMode": "plan_approval", "AskUserQuestion": "user_question"}
_NO_STATUS_REASON = {
    "status_reason_code": None,
    "status_reason_label": None,
    "status_reason_tone": None,
    "status_reason_needs_user": None,
}


class Flow(NamedTuple):
    phase: str
    working: bool
    ratchet_button_animated: bool


def ci_observation(pr_ci_status: str | None, pr_updated_at: int | None) -> str:
    if pr_ci_status in _CI_OBSERVATION:
        return _CI_OBSERVATION[pr_ci_status]
    if pr_ci_status == "UNKNOWN":
        return "NO_CHECKS" if pr_updated_at is not None else "NOT_FETCHED"
    return "CHECKS_UNKNOWN"


def has_active_pr(pr_url: str | None, pr_state: str | None) -> bool:
    return bool(pr_url) and pr_state in ACTIVE_PR_STATES


def flow_from(row: Mapping[str, Any], observation: str) -> Flow:
    """flowPhase with flowWorking and ratchetButtonAnimated from a CI observation (the table is
    the same in both rule sets; only the observation differs)."""
    if row["pr_state"] == "MERGED":
        return Flow("MERGED", False, False)
    if not has_active_pr(row["pr_url"], row["pr_state"]):
        return Flow("NO_PR", False, False)
    if observation in ("NOT_FETCHED", "CHECKS_PENDING"):
        return Flow("CI_WAIT", True, bool(row["ratchet_enabled"]))
    if not row["ratchet_enabled"]:
        return Flow("READY", False, False)
    if row["ratchet_state"] in ("CI_FAILED", "REVIEW_PENDING"):
        return Flow("RATCHET_FIXING", True, False)
    if row["ratchet_state"] in ("READY", "MERGED"):
        return Flow("READY", False, False)
    return Flow("RATCHET_VERIFY", True, False)


def flow(row: Mapping[str, Any]) -> Flow:
    return flow_from(row, ci_observation(row["pr_ci_status"], row["pr_updated_at"]))


def kanban_column(row: Mapping[str, Any], effective_working: bool) -> str | None:
    status = row["status"]
    if status in ("ARCHIVED", "ARCHIVING"):  # archiving: leaving the board
        return None
    if status in ("NEW", "PROVISIONING", "FAILED") or effective_working:
        return "WORKING"
    if row["pr_state"] == "MERGED":
        return "DONE"
    if not row["has_had_sessions"]:
        return None
    return "WAITING"


def sidebar_ci_state(row: Mapping[str, Any]) -> str:
    if not row["pr_url"]:
        return "NONE"
    if row["pr_state"] == "MERGED" or row["ratchet_state"] == "MERGED":
        return "MERGED"
    return sidebar_ci_of_an_open_pr(row)


def sidebar_ci_of_an_open_pr(row: Mapping[str, Any]) -> str:
    """The sidebar's CI badge of a PR that is neither merged nor closed (both rule sets)."""
    if row["ratchet_state"] == "MERGE_CONFLICT":  # shown whatever the CI status
        return "CONFLICT"
    state = _SIDEBAR_CI.get(row["pr_ci_status"], "UNKNOWN")
    if state == "UNKNOWN":
        if row["ratchet_state"] == "CI_FAILED":
            return "FAILING"
        if row["ratchet_state"] == "CI_RUNNING":
            return "RUNNING"
    return state


def derive(row: Mapping[str, Any]) -> dict[str, Any]:
    """The derived columns of a snapshot from its (merged) raw fields."""
    f = flow(row)
    effective_working = bool(row["is_working"]) or f.working
    return {
        "flow_phase": f.phase,
        "ci_observation": ci_observation(row["pr_ci_status"], row["pr_updated_at"]),
        "ratchet_button_animated": f.ratchet_button_animated,
        "kanban_column": kanban_column(row, effective_working),
        "sidebar_activity_state": "WORKING" if effective_working else "IDLE",
        "sidebar_ci_state": sidebar_ci_state(row),
        **_NO_STATUS_REASON,
    }


# ---- the session group's authoritative values -------------------------------------------------


def pending_request_type(requests: Sequence[tuple[str, Mapping | None] | None]) -> str | None:
    """From a workspace's agent sessions in (createdAt, id) order, each None or its pending
    (toolName, input): the first ExitPlanMode (plan_approval) or AskUserQuestion
    (user_question); else permission_request when another tool waits; else None."""
    for request in requests:
        if request is not None and request[0] in _PENDING_TOOLS:
            return _PENDING_TOOLS[request[0]]
    return "permission_request" if any(r is not None for r in requests) else None


def session_working(state: Mapping[str, Any]) -> bool:
    """A session is working when its runtime entry says so."""
    return bool(state["isWorking"])
