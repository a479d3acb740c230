"""Derived snapshot fields as pure functions: the contract's decision tables
(docs/CONTRACT.md, "Derived fields"), first match wins.

They are recomputed from the merged raw fields on every write, so a snapshot is always
self-consistent whichever writer set which group. :func:`ratchet_state` is the app's own
projection of a PR observation, for app databases that no longer store the ratchet state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

ACTIVE_PR_STATES = frozenset({"OPEN", "DRAFT", "CHANGES_REQUESTED", "APPROVED"})

_CI_OBSERVATION = {
    "PENDING": "CHECKS_PENDING",
    "FAILURE": "CHECKS_FAILED",
    "SUCCESS": "CHECKS_PASSED",
}
_SIDEBAR_CI = {"SUCCESS": "PASSING", "FAILURE": "FAILING", "PENDING": "RUNNING"}


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


def flow(row: Mapping[str, Any]) -> Flow:
    """flowPhase with flowWorking and ratchetButtonAnimated: the first rule that matches wins."""
    if row["pr_state"] == "MERGED":
        return Flow("MERGED", False, False)
    if not has_active_pr(row["pr_url"], row["pr_state"]):
        return Flow("NO_PR", False, False)
    if ci_observation(row["pr_ci_status"], row["pr_updated_at"]) in (
        "NOT_FETCHED",
        "CHECKS_PENDING",
    ):
        return Flow("CI_WAIT", True, bool(row["ratchet_enabled"]))
    if not row["ratchet_enabled"]:
        return Flow("READY", False, False)
    if row["ratchet_state"] in ("CI_FAILED", "REVIEW_PENDING"):
        return Flow("RATCHET_FIXING", True, False)
    if row["ratchet_state"] in ("READY", "MERGED"):
        return Flow("READY", False, False)
    return Flow("RATCHET_VERIFY", True, False)


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
    if row["ratchet_state"] == "MERGE_CONFLICT":
        return "CONFLICT"
    state = _SIDEBAR_CI.get(row["pr_ci_status"], "UNKNOWN")
    if state == "UNKNOWN":
        if row["ratchet_state"] == "CI_FAILED":
            return "FAILING"
        if row["ratchet_state"] == "CI_RUNNING":
            return "RUNNING"
    return state


def ratchet_state(
    *,
    enabled: bool,
    pr_state: str,
    pr_ci_status: str,
    has_merge_conflict: bool,
    review_state: str | None,
) -> str:
    """The ratchet's state projected from the cached PR observation (the current app's rule):
    a failing build outranks a merge conflict, and a conflict outranks pending CI."""
    if not enabled:
        return "IDLE"
    if pr_state == "MERGED":
        return "MERGED"
    if pr_state not in ACTIVE_PR_STATES:
        return "IDLE"
    if pr_ci_status == "FAILURE":
        return "CI_FAILED"
    if has_merge_conflict:
        return "MERGE_CONFLICT"
    if pr_ci_status in ("PENDING", "UNKNOWN"):
        return "CI_RUNNING"
    if review_state == "CHANGES_REQUESTED":
        return "REVIEW_PENDING"
    return "READY"


def derive(row: Mapping[str, Any]) -> dict[str, Any]:
    """The six derived columns of a snapshot from its (merged) raw fields."""
    f = flow(row)
    effective_working = bool(row["is_working"]) or f.working
    return {
        "flow_phase": f.phase,
        "ci_observation": ci_observation(row["pr_ci_status"], row["pr_updated_at"]),
        "ratchet_button_animated": f.ratchet_button_animated,
        "kanban_column": kanban_column(row, effective_working),
        "sidebar_activity_state": "WORKING" if effective_working else "IDLE",
        "sidebar_ci_state": sidebar_ci_state(row),
    }
