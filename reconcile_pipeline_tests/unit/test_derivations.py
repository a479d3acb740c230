"""The contract's decision tables, row by row."""

import pytest

from reconcile_pipeline.core.fields import DEFAULTS
from reconcile_pipeline.core.rules.rules_2026_02 import ci_observation, derive, flow


def row(**kw):
    base = dict(DEFAULTS)
    base.update(status="READY", has_had_sessions=True, ratchet_enabled=True)
    base.update(kw)
    return base


ACTIVE = dict(pr_url="https://git.example/pr/1", pr_state="OPEN")


@pytest.mark.parametrize(
    ("status", "updated_at", "expected"),
    [
        ("PENDING", None, "CHECKS_PENDING"),
        ("FAILURE", None, "CHECKS_FAILED"),
        ("SUCCESS", 1, "CHECKS_PASSED"),
        ("UNKNOWN", 1, "NO_CHECKS"),
        ("UNKNOWN", None, "NOT_FETCHED"),
        (None, None, "CHECKS_UNKNOWN"),
    ],
)
def test_ci_observation(status, updated_at, expected):
    assert ci_observation(status, updated_at) == expected


@pytest.mark.parametrize(
    ("kw", "phase", "working", "animated"),
    [
        (dict(pr_state="MERGED", pr_url=None), "MERGED", False, False),
        (dict(pr_state="OPEN", pr_url=None), "NO_PR", False, False),
        (dict(pr_state="CLOSED", pr_url="u"), "NO_PR", False, False),
        ({**ACTIVE, "pr_ci_status": "UNKNOWN"}, "CI_WAIT", True, True),
        ({**ACTIVE, "pr_ci_status": "PENDING", "ratchet_enabled": False}, "CI_WAIT", True, False),
        ({**ACTIVE, "pr_ci_status": "SUCCESS", "ratchet_enabled": False}, "READY", False, False),
        (
            {**ACTIVE, "pr_ci_status": "FAILURE", "ratchet_state": "CI_FAILED"},
            "RATCHET_FIXING",
            True,
            False,
        ),
        (
            {**ACTIVE, "pr_ci_status": "SUCCESS", "ratchet_state": "REVIEW_PENDING"},
            "RATCHET_FIXING",
            True,
            False,
        ),
        ({**ACTIVE, "pr_ci_status": "SUCCESS", "ratchet_state": "READY"}, "READY", False, False),
        ({**ACTIVE, "pr_ci_status": "SUCCESS", "ratchet_state": "MERGED"}, "READY", False, False),
        (
            {**ACTIVE, "pr_ci_status": "SUCCESS", "ratchet_state": "IDLE"},
            "RATCHET_VERIFY",
            True,
            False,
        ),
        (
            {
                **ACTIVE,
                "pr_ci_status": "UNKNOWN",
                "pr_updated_at": 5,
                "ratchet_state": "CI_RUNNING",
            },
            "RATCHET_VERIFY",
            True,
            False,
        ),
        ({**ACTIVE, "pr_state": "DRAFT", "pr_ci_status": "PENDING"}, "CI_WAIT", True, True),
        # MERGE_CONFLICT follows the rules unchanged: it ends in RATCHET_VERIFY.
        (
            {**ACTIVE, "pr_ci_status": "SUCCESS", "ratchet_state": "MERGE_CONFLICT"},
            "RATCHET_VERIFY",
            True,
            False,
        ),
    ],
)
def test_flow(kw, phase, working, animated):
    assert tuple(flow(row(**kw))) == (phase, working, animated)


@pytest.mark.parametrize(
    ("kw", "column"),
    [
        (dict(status="ARCHIVED", is_working=True), None),
        (dict(status="ARCHIVING", is_working=True), None),  # leaving the board
        (dict(status="ARCHIVING", pr_state="MERGED"), None),
        (dict(status="NEW"), "WORKING"),
        (dict(status="PROVISIONING"), "WORKING"),
        (dict(status="FAILED"), "WORKING"),
        (dict(is_working=True), "WORKING"),
        ({**ACTIVE, "pr_ci_status": "PENDING"}, "WORKING"),  # flow working
        (dict(pr_state="MERGED"), "DONE"),
        (dict(has_had_sessions=False), None),
        ({}, "WAITING"),
    ],
)
def test_kanban_column(kw, column):
    assert derive(row(**kw))["kanban_column"] == column


@pytest.mark.parametrize(
    ("kw", "ci_state"),
    [
        (dict(pr_url=None, pr_ci_status="SUCCESS"), "NONE"),
        (dict(pr_url="u", pr_state="MERGED"), "MERGED"),
        (dict(pr_url="u", pr_state="OPEN", ratchet_state="MERGED"), "MERGED"),
        (dict(pr_url="u", pr_ci_status="SUCCESS"), "PASSING"),
        (dict(pr_url="u", pr_ci_status="FAILURE"), "FAILING"),
        (dict(pr_url="u", pr_ci_status="PENDING"), "RUNNING"),
        (dict(pr_url="u", pr_ci_status="UNKNOWN"), "UNKNOWN"),
        (dict(pr_url="u", pr_ci_status="UNKNOWN", ratchet_state="CI_FAILED"), "FAILING"),
        (dict(pr_url="u", pr_ci_status="UNKNOWN", ratchet_state="CI_RUNNING"), "RUNNING"),
        (dict(pr_url="u", pr_ci_status="SUCCESS", ratchet_state="CI_FAILED"), "PASSING"),
        # A merge conflict shows before the CI mapping, but never over a merged PR.
        (dict(pr_url="u", pr_ci_status="SUCCESS", ratchet_state="MERGE_CONFLICT"), "CONFLICT"),
        (dict(pr_url="u", pr_ci_status="FAILURE", ratchet_state="MERGE_CONFLICT"), "CONFLICT"),
        (dict(pr_url="u", pr_state="MERGED", ratchet_state="MERGE_CONFLICT"), "MERGED"),
        (dict(pr_url=None, ratchet_state="MERGE_CONFLICT"), "NONE"),
    ],
)
def test_sidebar_ci_state(kw, ci_state):
    assert derive(row(**kw))["sidebar_ci_state"] == ci_state


def test_sidebar_activity_follows_effective_working():
    assert derive(row(is_working=True))["sidebar_activity_state"] == "WORKING"
    assert derive(row())["sidebar_activity_state"] == "IDLE"
    assert derive(row(**ACTIVE, pr_ci_status="PENDING"))["sidebar_activity_state"] == "WORKING"
    assert derive(row(**ACTIVE, pr_ci_status="PENDING"))["ratchet_button_animated"] is True
