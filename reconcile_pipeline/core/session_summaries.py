"""Session summaries: the snapshot's per-agent-session list (docs/CONTRACT.md, "Session summaries").

One summary per agent session of a workspace: what the app DB says of the session (id, name,
workflow, model, provider, persisted status) and what its runtime says (phase, process state,
activity, updatedAt, last exit, error message), as the app's ``WorkspaceSessionSummarySchema``
(src/shared/workspace-snapshot.ts) has them.

The snapshot holds the list as **canonical JSON text**: sorted by ``sessionId``, keys sorted, no
spaces. The app compares summaries as a set (``sessionSummariesEqual`` sorts by id first), so two
lists are the same set exactly when their canonical texts are equal: drift, the rows to write and
convergence compare them as plain strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

SESSION_STATUS = ("IDLE", "RUNNING", "PAUSED", "COMPLETED", "FAILED")
SESSION_PROVIDER = ("CLAUDE", "CODEX")
RUNTIME_PHASES = ("loading", "starting", "running", "idle", "stopping", "error")
PROCESS_STATES = ("unknown", "alive", "stopped")
ACTIVITIES = ("WORKING", "IDLE")

EMPTY = "[]"

# key -> (required, check): the app's schema, field by field.
_TEXT_OR_NULL = "text or null"


def _enum(values: tuple[str, ...]):
    return lambda v: v in values, f"one of {list(values)}"


def _is_text(v: object) -> bool:
    return isinstance(v, str)


def _is_text_or_null(v: object) -> bool:
    return v is None or isinstance(v, str)


def _is_last_exit(v: object) -> bool:
    if v is None:
        return True
    if not isinstance(v, Mapping) or set(v) != {"code", "timestamp", "unexpected"}:
        return False
    code = v["code"]
    return (
        (code is None or (isinstance(code, int) and not isinstance(code, bool)))
        and isinstance(v["timestamp"], str)
        and isinstance(v["unexpected"], bool)
    )


_FIELDS: dict[str, tuple[bool, Any, str]] = {
    "sessionId": (True, lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "name": (True, _is_text_or_null, _TEXT_OR_NULL),
    "workflow": (True, _is_text_or_null, _TEXT_OR_NULL),
    "model": (True, _is_text_or_null, _TEXT_OR_NULL),
    "provider": (False, *_enum(SESSION_PROVIDER)),
    "persistedStatus": (True, *_enum(SESSION_STATUS)),
    "runtimePhase": (True, *_enum(RUNTIME_PHASES)),
    "processState": (True, *_enum(PROCESS_STATES)),
    "activity": (True, *_enum(ACTIVITIES)),
    "updatedAt": (True, _is_text, "text"),
    "lastExit": (
        True,
        _is_last_exit,
        "null or {code: int|null, timestamp: text, unexpected: bool}",
    ),
    "errorMessage": (False, _is_text_or_null, _TEXT_OR_NULL),
}
KEYS = tuple(_FIELDS)


def summary_problem(summary: object) -> str | None:
    """Why ``summary`` is not a valid session summary, or None."""
    if not isinstance(summary, Mapping):
        return f"a summary must be an object, got {type(summary).__name__}"
    unknown = sorted(set(summary) - set(_FIELDS))
    if unknown:
        return f"unknown summary keys {unknown}"
    for key, (required, check, expected) in _FIELDS.items():
        if key not in summary:
            if required:
                return f"summary lacks {key!r}"
            continue
        if not check(summary[key]):
            return f"summary {key!r} must be {expected}, got {summary[key]!r}"
    return None


def canonical(value: str | Sequence[Mapping[str, Any]]) -> str:
    """The canonical JSON text of a summary list given as a list or as JSON text; ``ValueError``
    naming the first bad summary otherwise (two summaries of one session are an error too)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"session summaries are not JSON: {exc}") from None
    if not isinstance(value, list | tuple):
        raise ValueError(f"session summaries must be a list, got {type(value).__name__}")
    seen: set[str] = set()
    for summary in value:
        problem = summary_problem(summary)
        if problem is not None:
            raise ValueError(f"bad session summary: {problem}")
        if summary["sessionId"] in seen:
            raise ValueError(f"session {summary['sessionId']!r} is summarised twice")
        seen.add(summary["sessionId"])
    ordered = sorted((dict(s) for s in value), key=lambda s: s["sessionId"])
    return json.dumps(ordered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse(text: str | None) -> list[dict[str, Any]]:
    """The summaries of canonical JSON ``text`` (None or empty text: none)."""
    return json.loads(text) if text else []
