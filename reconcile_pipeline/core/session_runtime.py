"""Session runtime: which agent sessions are working and what they are waiting for.

Whether a session is *working* and its pending interactive request live only in the app server's
memory, so the pipeline reads them from one documented source.

The contract
------------
One JSON document (UTF-8), served by the app server over HTTP (``GET``, status 200) or written to a
file::

    {"sessions": {"<agent session id>": {"isWorking": true,
                                         "pendingRequest": {"toolName": "ExitPlanMode"}},
                  "<other id>": {"isWorking": false, "pendingRequest": null}}}

- The top level is an object with a ``"sessions"`` object, keyed by agent session id:
  ``ClaudeSession.id`` in the app's schema generation 1, ``AgentSession.id`` from generation 2 on
  (the app kept the ids when it moved the sessions).
- Each entry is an object with ``"isWorking"`` (a JSON boolean, required) and ``"pendingRequest"``
  (absent, ``null``, or an object whose ``"toolName"`` is a non-empty string).
- Other keys, at the top level or in an entry, are ignored (room for the app to add fields).
- A session absent from a valid document is not working and has no pending request.
- The tool of a pending request gives ``pendingRequestType``: ``ExitPlanMode`` -> ``plan_approval``,
  ``AskUserQuestion`` -> ``user_question``; any other tool is a ``permission_request``, shown only
  when no session of the workspace waits for a plan approval or a question.
- Validation is per document: a document that breaks any rule above, even in one entry, is rejected
  as a whole (we cannot trust partial garbage) and the runtime is *unknown*.

Sources (``kind``): ``none`` (always unknown), ``file`` (a path), ``http`` (an ``http://`` or
``https://`` URL; ``user:password@`` in the URL is sent as HTTP Basic auth and never shown in a
reason). Proxies follow the standard ``*_proxy`` / ``no_proxy`` environment variables.

When the runtime is unknown, the session field group (``is_working``, ``pending_request_type``) is
neither drift-checked nor written: ``session_fields`` returns ``None`` and the caller omits it.

HTTP reads retry connection errors, timeouts and 5xx responses (never 4xx, never a bad document),
``retries`` times, sleeping ``backoff_s * 2**i`` before retry ``i + 1``. Each attempt is bounded by
``timeout_s`` (connect, each wait for data, and the body as a whole), so one read takes at most
about ``(retries + 1) * timeout_s + backoff_s * (2**retries - 1)``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import pandas as pd

KINDS = ("none", "file", "http")

# Tool name of a pending request -> the snapshot's pendingRequestType; any other pending tool is a
# permission_request (see session_fields).
PENDING_TOOL_TYPES: Mapping[str, str] = MappingProxyType(
    {"ExitPlanMode": "plan_approval", "AskUserQuestion": "user_question"}
)

# A runtime document lists live sessions only; anything this big is not one (and must not OOM us).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024

# Any other pending tool: a permission the user must grant, ranked after the two above.
PERMISSION_REQUEST = "permission_request"

SESSION_FIELD_COLUMNS = ("workspace_id", "is_working", "pending_request_type")


@dataclass(frozen=True)
class SessionState:
    is_working: bool
    pending_tool: str | None = None


@dataclass(frozen=True)
class RuntimeSnapshot:
    sessions: Mapping[str, SessionState]


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
    """Parse and strictly validate a runtime document; raise ``_BadDocument`` with the reason."""
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
    for sid, entry in doc["sessions"].items():
        problem = _entry_problem(entry)
        if problem is not None:
            raise _BadDocument(f"bad entry for session {_short(sid)}: {problem} (from {where})")
        pending = entry.get("pendingRequest")
        sessions[sid] = SessionState(
            is_working=entry["isWorking"],
            pending_tool=None if pending is None else pending["toolName"],
        )
    return RuntimeSnapshot(sessions=MappingProxyType(sessions))


def _entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return f"entry must be an object, got {type(entry).__name__}"
    if not isinstance(entry.get("isWorking"), bool):
        if "isWorking" not in entry:
            return "isWorking is missing"
        return f"isWorking must be a bool, got {_short(entry['isWorking'])}"
    pending = entry.get("pendingRequest")
    if pending is None:
        return None
    if not isinstance(pending, dict):
        return f"pendingRequest must be an object or null, got {_short(pending)}"
    tool = pending.get("toolName")
    if not isinstance(tool, str) or not tool:
        return f"pendingRequest.toolName must be a non-empty string, got {_short(tool)}"
    return None


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


def session_fields(read: RuntimeRead, sessions: pd.DataFrame) -> pd.DataFrame | None:
    """Authoritative ``is_working`` / ``pending_request_type`` per workspace.

    ``sessions`` has columns session_id, workspace_id, kind ('agent' | 'terminal'), created_at
    (and others, ignored). Returns ``None`` when the runtime is unknown. Otherwise one row per
    workspace with at least one agent session (terminal sessions never count):
    ``is_working`` = any of its agent sessions is working; ``pending_request_type`` from the first
    of its agent sessions, by (created_at, session_id), whose pending tool is ExitPlanMode or
    AskUserQuestion; else ``permission_request`` when one of them has another pending request;
    else ``None``.
    """
    if read.snapshot is None:
        return None
    missing = {"session_id", "workspace_id", "kind", "created_at"} - set(sessions.columns)
    if missing:
        raise ValueError(f"sessions frame lacks columns {sorted(missing)}")
    runtime = read.snapshot.sessions
    working_ids = [sid for sid, st in runtime.items() if st.is_working]
    pending_type = {
        sid: PENDING_TOOL_TYPES[st.pending_tool]
        for sid, st in runtime.items()
        if st.pending_tool in PENDING_TOOL_TYPES
    }
    other_pending = {
        sid
        for sid, st in runtime.items()
        if st.pending_tool is not None and st.pending_tool not in PENDING_TOOL_TYPES
    }

    agents = sessions.loc[
        (sessions["kind"] == "agent").fillna(False).astype(bool) & sessions["workspace_id"].notna(),
        ["session_id", "workspace_id", "created_at"],
    ]
    if agents.empty:
        return pd.DataFrame(
            {
                "workspace_id": pd.Series([], dtype=sessions["workspace_id"].dtype),
                "is_working": pd.Series([], dtype=bool),
                "pending_request_type": pd.Series([], dtype=object),
            }
        )
    # Stable order so "first" is well defined: created_at, then id; unknown created_at last.
    agents = agents.sort_values(["created_at", "session_id"], na_position="last", kind="stable")
    agents = agents.assign(
        is_working=agents["session_id"].isin(working_ids),
        pending=agents["session_id"].map(pending_type),
        other_pending=agents["session_id"].isin(other_pending),
    )
    working = agents.groupby("workspace_id", sort=True)["is_working"].any()
    permission = agents.groupby("workspace_id", sort=True)["other_pending"].any()
    first_pending = (
        agents.loc[agents["pending"].notna(), ["workspace_id", "pending"]]
        .drop_duplicates("workspace_id", keep="first")
        .set_index("workspace_id")["pending"]
    )
    pending = first_pending.reindex(working.index).to_numpy(dtype=object)
    none = pd.isna(pending)
    pending[none & permission.to_numpy()] = PERMISSION_REQUEST
    pending[none & ~permission.to_numpy()] = None
    out = working.rename("is_working").reset_index()
    out["is_working"] = out["is_working"].to_numpy(dtype=bool)
    out["pending_request_type"] = pd.Series(pending, index=out.index, dtype=object)
    return out[list(SESSION_FIELD_COLUMNS)]


__all__ = [
    "KINDS",
    "MAX_DOCUMENT_BYTES",
    "PENDING_TOOL_TYPES",
    "RuntimeRead",
    "RuntimeSnapshot",
    "SessionState",
    "read_session_runtime",
    "session_fields",
]
