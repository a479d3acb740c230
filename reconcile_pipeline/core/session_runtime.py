"""Session runtime: what each agent session is doing right now, and what it waits for.

Whether a session is *working*, its runtime phase and its pending interactive request live only in
the app server's memory, so the pipeline reads them from one documented source.

The document (docs/CONTRACT.md §3.1 has it whole): ``{"sessions": {"<agent session id>":
{"isWorking": bool, "pendingRequest": ..., "phase": ..., ...}}}``. Validation is per entry: a bad
entry makes that session unknown (its workspace's session group unknown for the run, with a
per-row reason); a document that is not one at all makes the runtime unknown.

Sources (``kind``): ``none`` (always unknown), ``file`` (a path), ``http`` (an ``http://`` or
``https://`` URL; ``user:password@`` in the URL is sent as HTTP Basic auth and never shown in a
reason). Proxies follow the standard ``*_proxy`` / ``no_proxy`` environment variables.

When the runtime is unknown, the session field group (``is_working``, ``pending_request_type``,
``session_summaries``) is neither drift-checked nor written: ``session_fields`` returns ``None``
and the caller omits it. How the group is computed from the runtime depends on the rule set
(:mod:`reconcile_pipeline.core.rules`).

HTTP reads retry connection errors, timeouts and 5xx responses (never 4xx, never a bad document),
``retries`` times, sleeping ``backoff_s * 2**i`` before retry ``i + 1``. Each attempt is bounded by
``timeout_s`` (connect, each wait for data, and the body as a whole), so one read takes at most
about ``(retries + 1) * timeout_s + backoff_s * (2**retries - 1)``.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import itertools
import json
import operator
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pandas as pd

from reconcile_pipeline.core import session_summaries as summaries
from reconcile_pipeline.core.rules import RULE_SETS, RuleSet
from reconcile_pipeline.core.values import is_missing

KINDS = ("none", "file", "http")

# Tool name of a pending request -> the snapshot's pendingRequestType under the contract's rules;
# any other pending tool is a permission_request (see the rule sets).
PENDING_TOOL_TYPES: Mapping[str, str] = MappingProxyType(
    {"ExitPlanMode": "plan_approval", "AskUserQuestion": "user_question"}
)

# A runtime document lists live sessions only; anything this big is not one (and must not OOM us).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024

SESSION_FIELD_COLUMNS = ("workspace_id", "is_working", "pending_request_type", "session_summaries")
SESSION_GROUP = SESSION_FIELD_COLUMNS[1:]


@dataclass(frozen=True)
class SessionState:
    """One session's runtime entry. Fields left None take the contract's defaults (``state``)."""

    is_working: bool
    pending_tool: str | None = None
    pending_input: Mapping[str, Any] | None = None
    phase: str | None = None
    process_state: str | None = None
    activity: str | None = None
    updated_at: str | None = None
    last_exit: Mapping[str, Any] | None = None
    error_message: str | None = None

    def state(self, db_updated_at: str | None) -> dict[str, Any]:
        """The app's runtime state of the session, defaults applied."""
        return {
            "isWorking": self.is_working,
            "phase": self.phase or ("running" if self.is_working else "idle"),
            "processState": self.process_state or "unknown",
            "activity": self.activity or ("WORKING" if self.is_working else "IDLE"),
            "updatedAt": self.updated_at or db_updated_at,
            "lastExit": None if self.last_exit is None else dict(self.last_exit),
            "errorMessage": self.error_message,
        }

    @property
    def pending(self) -> tuple[str, Mapping[str, Any] | None] | None:
        return None if self.pending_tool is None else (self.pending_tool, self.pending_input)


# A session the document does not list: the app's initial runtime state.
ABSENT = SessionState(is_working=False, phase="idle", process_state="stopped", activity="IDLE")


@dataclass(frozen=True)
class RuntimeSnapshot:
    sessions: Mapping[str, SessionState]
    bad: Mapping[str, str] = field(default_factory=dict)  # session id -> why its entry is bad


@dataclass(frozen=True)
class RuntimeRead:
    """Result of one read. ``snapshot`` is ``None`` when the runtime is unknown (see ``reason``)."""

    snapshot: RuntimeSnapshot | None
    reason: str | None
    attempts: int = 0

    @property
    def known(self) -> bool:
        return self.snapshot is not None


class _BadDocument(Exception):
    """The source answered, but not with a valid runtime document (no retry)."""


# ---------------------------------------------------------------------------------------------
# Parsing and validation


def _short(value: object, limit: int = 80) -> str:
    # Reasons end up in logs and run metadata: keep attacker/garbage-controlled text bounded.
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_document(data: bytes, where: str) -> RuntimeSnapshot:
    """Parse a runtime document: ``_BadDocument`` when it is not one at all; a bad entry is
    kept aside in ``bad`` with its reason."""
    try:
        doc = json.loads(data)
    except (
        ValueError,
        RecursionError,
    ) as e:  # JSONDecodeError and UnicodeDecodeError are ValueError
        raise _BadDocument(f"invalid JSON from {where}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sessions"), dict):
        raise _BadDocument(
            f"bad session runtime document from {where}: expected an object "
            f'{{"sessions": {{...}}}}, got {type(doc).__name__}'
            + (f" with sessions={_short(doc.get('sessions'))}" if isinstance(doc, dict) else "")
        )
    sessions: dict[str, SessionState] = {}
    bad: dict[str, str] = {}
    for sid, entry in doc["sessions"].items():
        problem = _entry_problem(entry)
        if problem is not None:
            bad[sid] = f"bad session runtime entry for session {_short(sid)}: {problem}"
            continue
        pending = entry.get("pendingRequest")
        last_exit = entry.get("lastExit")
        sessions[sid] = SessionState(
            is_working=entry["isWorking"],
            pending_tool=None if pending is None else pending["toolName"],
            pending_input=None if pending is None else pending.get("input"),
            phase=entry.get("phase"),
            process_state=entry.get("processState"),
            activity=entry.get("activity"),
            updated_at=entry.get("updatedAt"),
            last_exit=None
            if last_exit is None
            else {k: last_exit[k] for k in ("code", "timestamp", "unexpected")},
            error_message=entry.get("errorMessage"),
        )
    return RuntimeSnapshot(sessions=MappingProxyType(sessions), bad=MappingProxyType(bad))


_OPTIONAL_ENUMS = {
    "phase": summaries.RUNTIME_PHASES,
    "processState": summaries.PROCESS_STATES,
    "activity": summaries.ACTIVITIES,
}


def _entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return f"entry must be an object, got {type(entry).__name__}"
    if not isinstance(entry.get("isWorking"), bool):
        if "isWorking" not in entry:
            return "isWorking is missing"
        return f"isWorking must be a bool, got {_short(entry['isWorking'])}"
    for key, allowed in _OPTIONAL_ENUMS.items():
        if key in entry and entry[key] not in allowed:
            return f"{key} must be one of {list(allowed)}, got {_short(entry[key])}"
    if "updatedAt" in entry and not isinstance(entry["updatedAt"], str):
        return f"updatedAt must be text, got {_short(entry['updatedAt'])}"
    if entry.get("errorMessage") is not None and not isinstance(entry["errorMessage"], str):
        return f"errorMessage must be text or null, got {_short(entry['errorMessage'])}"
    last_exit = entry.get("lastExit")
    if last_exit is not None and not _last_exit_ok(last_exit):
        return (
            "lastExit must be null or {code: int or null, timestamp: text, unexpected: bool}, "
            f"got {_short(last_exit)}"
        )
    pending = entry.get("pendingRequest")
    if pending is None:
        return None
    if not isinstance(pending, dict):
        return f"pendingRequest must be an object or null, got {_short(pending)}"
    tool = pending.get("toolName")
    if not isinstance(tool, str) or not tool:
        return f"pendingRequest.toolName must be a non-empty string, got {_short(tool)}"
    if pending.get("input") is not None and not isinstance(pending["input"], dict):
        return f"pendingRequest.input must be an object, got {_short(pending['input'])}"
    return None


def _last_exit_ok(value: object) -> bool:
    if not isinstance(value, dict):
        return False
    code = value.get("code")
    return (
        (code is None or (isinstance(code, int) and not isinstance(code, bool)))
        and "code" in value
        and isinstance(value.get("timestamp"), str)
        and isinstance(value.get("unexpected"), bool)
    )


# ---------------------------------------------------------------------------------------------
# Sources


def read_session_runtime(
    kind: str,
    location: str | os.PathLike[str] | None = None,
    *,
    timeout_s: float = 2.0,
    retries: int = 2,
    backoff_s: float = 0.2,
) -> RuntimeRead:
    """Read the session runtime from ``kind`` ('none' | 'file' | 'http') at ``location``.

    Raises ``ValueError`` only for bad configuration (unknown kind, missing or unusable location,
    bad numbers). A bad *source* (missing file, unreachable server, invalid document) never
    raises: it gives an unknown ``RuntimeRead`` with the reason.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown session runtime kind {kind!r}; expected one of {list(KINDS)}")
    if timeout_s <= 0 or retries < 0 or backoff_s < 0:
        raise ValueError(
            "session runtime read needs timeout_s > 0, retries >= 0 and backoff_s >= 0; got "
            f"timeout_s={timeout_s!r}, retries={retries!r}, backoff_s={backoff_s!r}"
        )
    if kind == "none":
        return RuntimeRead(None, "session runtime source is 'none'", 0)
    if location is None or not os.fspath(location):
        raise ValueError(f"session runtime kind {kind!r} needs a location (a path or URL)")
    if kind == "file":
        return _read_file(os.fspath(location))
    return _read_http(str(location), timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)


def _read_file(path: str) -> RuntimeRead:
    where = f"file {path}"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as e:
        detail = f"{e.strerror}" if e.strerror else str(e)
        return RuntimeRead(None, f"cannot read session runtime file {path}: {detail}", 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        return RuntimeRead(None, f"{where} is larger than {MAX_DOCUMENT_BYTES} bytes", 1)
    try:
        return RuntimeRead(_parse_document(data, where), None, 1)
    except _BadDocument as e:
        return RuntimeRead(None, str(e), 1)


@dataclass(frozen=True)
class _Target:
    url: str  # without credentials: what we connect to
    shown: str  # what reasons show: user:***@ instead of the password
    auth: str | None  # Authorization header value
    secrets: tuple[str, ...]  # strings that must never appear in a reason


def _target(url: str) -> _Target:
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port: a config error, caught here
    except ValueError as e:
        raise ValueError(f"bad session runtime URL: {e}") from None
    password = parts.password
    if parts.username is not None or password is not None:
        hostport = parts.netloc.rpartition("@")[2]
        clean = parts._replace(netloc=hostport).geturl()
        user = urllib.parse.unquote(parts.username or "")
        pwd = urllib.parse.unquote(password or "")
        shown_netloc = f"{parts.username or ''}{':***' if password is not None else ''}@{hostport}"
        shown = parts._replace(netloc=shown_netloc).geturl()
        token = base64.b64encode(f"{user}:{pwd}".encode()).decode("ascii")
        secrets = tuple(s for s in {password or "", pwd} if s)
        target = _Target(clean, shown, f"Basic {token}", secrets)
    else:
        target = _Target(url, url, None, ())
    if parts.scheme not in ("http", "https") or not host:
        # Refuse file:// and friends: urllib would happily open them.
        raise ValueError(
            f"session runtime URL must be http:// or https:// with a host, got {target.shown!r}"
        )
    return target


def _read_http(url: str, *, timeout_s: float, retries: int, backoff_s: float) -> RuntimeRead:
    target = _target(url)
    where = f"GET {target.shown}"
    opener = urllib.request.build_opener()
    attempts = 0
    last_error = "no attempt made"
    for i in range(retries + 1):
        if i:
            time.sleep(backoff_s * 2 ** (i - 1))
        attempts += 1
        try:
            status, data = _get_once(opener, target, timeout_s)
        except urllib.error.HTTPError as e:
            e.close()
            detail = f"HTTP {e.code} {e.reason}".rstrip()
            if e.code < 500:  # a client error will not fix itself: don't hammer the server
                return _unknown(target, _failed(where, attempts, detail), attempts)
            last_error = detail
            continue
        except _BadDocument as e:
            return _unknown(target, str(e), attempts)
        except urllib.error.URLError as e:
            last_error = _describe(e.reason)
            continue
        except (OSError, http.client.HTTPException) as e:  # timeouts, resets mid-response
            last_error = _describe(e)
            continue
        if status != 200:
            return _unknown(target, f"{where} returned HTTP {status}, expected 200", attempts)
        try:
            return RuntimeRead(_parse_document(data, where), None, attempts)
        except _BadDocument as e:
            return _unknown(target, str(e), attempts)
    return _unknown(target, _failed(where, attempts, last_error), attempts)


def _failed(where: str, attempts: int, detail: str) -> str:
    plural = "attempt" if attempts == 1 else "attempts"
    return f"{where} failed after {attempts} {plural}: {detail}"


def _get_once(
    opener: urllib.request.OpenerDirector, target: _Target, timeout_s: float
) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(target.url, headers={"Accept": "application/json"})
    if target.auth is not None:
        # Unredirected: a redirect to another host must not carry the credentials along.
        request.add_unredirected_header("Authorization", target.auth)
    with opener.open(request, timeout=timeout_s) as response:
        status = response.status
        chunks: list[bytes] = []
        size = 0
        # read1 returns after one socket read, so a server that trickles bytes cannot stretch
        # the attempt past its deadline (the socket timeout alone bounds each read, not the sum).
        while chunk := response.read1(_CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                raise _BadDocument(
                    f"GET {target.shown} returned more than {MAX_DOCUMENT_BYTES} bytes"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out: body not received within {timeout_s}s")
    return status, b"".join(chunks)


def _describe(error: object) -> str:
    if isinstance(error, TimeoutError):
        return str(error) or "timed out"
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _unknown(target: _Target, reason: str, attempts: int) -> RuntimeRead:
    # Belt and braces: whatever a library put in its message, the password does not leave here.
    for secret in target.secrets:
        reason = reason.replace(secret, "***")
    return RuntimeRead(None, reason, attempts)


# ---------------------------------------------------------------------------------------------
# Authoritative session fields per workspace


@dataclass(frozen=True)
class SessionFields:
    """The session group per workspace with at least one agent session (columns
    SESSION_FIELD_COLUMNS), and the cells that are unknown for this run (workspace_id, field,
    value, reason): every field of a workspace one of whose entries is bad, or only its
    summaries when an app DB value they show is unreadable."""

    frame: pd.DataFrame
    problems: pd.DataFrame


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def iso_ms(epoch_ms: int) -> str:
    """Epoch ms as JavaScript's ``toISOString`` writes it: ``YYYY-MM-DDTHH:MM:SS.sssZ``."""
    stamp = _EPOCH + dt.timedelta(milliseconds=int(epoch_ms))
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _text(value: object) -> str | None:
    return None if is_missing(value) else str(value)


def _summary(session: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, Any]:
    summary = {
        "sessionId": session["session_id"],
        "name": _text(session["name"]),
        "workflow": _text(session["workflow"]),
        "model": _text(session["model"]),
        "persistedStatus": _text(session["status"]),
        "runtimePhase": state["phase"],
        "processState": state["processState"],
        "activity": state["activity"],
        "updatedAt": state["updatedAt"],
        "lastExit": state["lastExit"],
        "errorMessage": state["errorMessage"],
    }
    provider = _text(session["provider"])
    if provider is not None:  # gen 1 sessions have no provider
        summary["provider"] = provider
    return summary


def session_fields(
    read: RuntimeRead, sessions: pd.DataFrame, rule_set: RuleSet = RULE_SETS["2026-02"]
) -> SessionFields | None:
    """Authoritative session fields per workspace, or ``None`` when the runtime is unknown.

    ``sessions`` has columns session_id, workspace_id, kind ('agent' | 'terminal'), created_at,
    updated_at (epoch ms), status, provider, name, workflow, model. Terminal sessions never
    count. Per workspace with agent sessions, in (created_at, session_id) order (unknown
    created_at last): ``is_working`` = any session working, ``pending_request_type`` from the
    pending requests, both by ``rule_set``; ``session_summaries`` = the canonical JSON of one
    summary per session (:mod:`reconcile_pipeline.core.session_summaries`).
    """
    if read.snapshot is None:
        return None
    need = {"session_id", "workspace_id", "kind", "created_at"}
    missing = need - set(sessions.columns)
    if missing:
        raise ValueError(f"sessions frame lacks columns {sorted(missing)}")
    sessions = sessions.reindex(
        columns=[*need, "updated_at", "status", "provider", "name", "workflow", "model"]
    )
    runtime, bad = read.snapshot.sessions, read.snapshot.bad
    agents = sessions.loc[
        (sessions["kind"] == "agent").fillna(False).astype(bool) & sessions["workspace_id"].notna()
    ]
    # Stable order so that "first" is well defined: created_at, then id; unknown created_at last.
    agents = agents.sort_values(["created_at", "session_id"], na_position="last", kind="stable")
    # Then by workspace, stably: each workspace's sessions stay in that order. The rows become
    # dicts once, not a frame per workspace (at 5,000 workspaces that cost a second).
    agents = agents.sort_values("workspace_id", kind="stable")
    agents = agents.astype(object).where(agents.notna(), None)
    rows, problems = [], []
    for workspace_id, group in itertools.groupby(
        agents.to_dict("records"), key=operator.itemgetter("workspace_id")
    ):
        records = list(group)
        broken = [bad[r["session_id"]] for r in records if r["session_id"] in bad]
        if broken:  # one bad entry: this workspace's session group is unknown for the run
            problems.extend((workspace_id, f, None, "; ".join(broken)) for f in SESSION_GROUP)
            continue
        entries = [runtime.get(r["session_id"], ABSENT) for r in records]
        states = [
            e.state(None if r["updated_at"] is None else iso_ms(r["updated_at"]))
            for e, r in zip(entries, records, strict=True)
        ]
        listed = [_summary(r, st) for r, st in zip(records, states, strict=True)]
        try:
            text = summaries.canonical(listed)
        except ValueError as exc:  # an unreadable app DB value the summaries would show
            problems.append((workspace_id, "session_summaries", None, str(exc)))
            text = None
        rows.append(
            (
                workspace_id,
                any(rule_set.session_working(st) for st in states),
                rule_set.pending_request_type([e.pending for e in entries]),
                text,
            )
        )
    frame = pd.DataFrame(rows, columns=list(SESSION_FIELD_COLUMNS), dtype=object)
    frame["is_working"] = frame["is_working"].astype(bool)
    return SessionFields(
        frame=frame,
        problems=pd.DataFrame(problems, columns=["workspace_id", "field", "value", "reason"]),
    )


__all__ = [
    "ABSENT",
    "KINDS",
    "MAX_DOCUMENT_BYTES",
    "PENDING_TOOL_TYPES",
    "RuntimeRead",
    "RuntimeSnapshot",
    "SessionFields",
    "SessionState",
    "read_session_runtime",
    "session_fields",
]
