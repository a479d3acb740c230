"""Session runtime: the document contract, the file and HTTP sources, the per-workspace rule.

HTTP is tested against a real local server (``support.runtime_server``, no mocks): retries,
timeouts and credentials are behaviours of the socket layer that a mock would only restate.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import time
from collections.abc import Callable, Iterator

import pandas as pd
import pytest

from reconcile_pipeline.core.rules import RULE_SETS
from reconcile_pipeline.core.session_runtime import (
    ABSENT,
    PENDING_TOOL_TYPES,
    RuntimeRead,
    RuntimeSnapshot,
    SessionState,
    read_session_runtime,
    session_fields,
)
from reconcile_pipeline_tests.support.runtime_server import Reply, RuntimeServer

VALID_DOC = {
    "sessions": {
        "s1": {"isWorking": True, "pendingRequest": {"toolName": "ExitPlanMode"}},
        "s2": {"isWorking": False, "pendingRequest": None},
        "s3": {"isWorking": False},
        "s4": {"isWorking": False, "pendingRequest": {"toolName": "Bash", "extra": 1}, "x": 2},
    },
    "generatedAt": 123,
}
VALID_STATES = {
    "s1": SessionState(True, "ExitPlanMode"),
    "s2": SessionState(False, None),
    "s3": SessionState(False, None),
    "s4": SessionState(False, "Bash"),
}
FAST = {"timeout_s": 0.5, "backoff_s": 0.01}


# ---------------------------------------------------------------------------------------------
# A configurable local HTTP server (support.runtime_server)


@pytest.fixture
def make_server() -> Iterator[Callable[[], RuntimeServer]]:
    servers: list[RuntimeServer] = []

    def make() -> RuntimeServer:
        servers.append(RuntimeServer(json.dumps(VALID_DOC).encode()))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def server(make_server) -> RuntimeServer:
    return make_server()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Configuration


def test_none_is_unknown_with_reason():
    read = read_session_runtime("none")
    assert read.snapshot is None and not read.known
    assert read.reason == "session runtime source is 'none'"
    assert read.attempts == 0


@pytest.mark.parametrize(
    ("kind", "location", "match"),
    [
        ("redis", "x", "unknown session runtime kind 'redis'"),
        ("NONE", None, "unknown session runtime kind"),
        ("file", None, "needs a location"),
        ("file", "", "needs a location"),
        ("http", None, "needs a location"),
        ("http", "ftp://example.com/x", "must be http:// or https://"),
        ("http", "file:///etc/passwd", "must be http:// or https://"),
        ("http", "http:///nohost", "must be http:// or https://"),
        ("http", "http://127.0.0.1:notaport/x", "bad session runtime URL"),
    ],
)
def test_bad_configuration_raises(kind, location, match):
    with pytest.raises(ValueError, match=match):
        read_session_runtime(kind, location)


def test_bad_numbers_raise():
    with pytest.raises(ValueError, match="timeout_s > 0"):
        read_session_runtime("http", "http://127.0.0.1/x", timeout_s=0)
    with pytest.raises(ValueError, match="retries >= 0"):
        read_session_runtime("http", "http://127.0.0.1/x", retries=-1)


def test_config_error_hides_password():
    with pytest.raises(ValueError) as info:
        read_session_runtime("http", "ftp://alice:hunter2@example.com/x")
    assert "hunter2" not in str(info.value)
    assert "alice:***@example.com" in str(info.value)


# ---------------------------------------------------------------------------------------------
# File source


def _write(tmp_path, content: str | bytes):
    path = tmp_path / "runtime.json"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def test_file_valid(tmp_path):
    read = read_session_runtime("file", _write(tmp_path, json.dumps(VALID_DOC)))
    assert read.known and read.reason is None and read.attempts == 1
    assert dict(read.snapshot.sessions) == VALID_STATES
    with pytest.raises(TypeError):  # the snapshot is read-only
        read.snapshot.sessions["s9"] = SessionState(True)


def test_file_empty_sessions_is_known(tmp_path):
    read = read_session_runtime("file", str(_write(tmp_path, '{"sessions": {}}')))
    assert read.known and dict(read.snapshot.sessions) == {}


def test_file_with_utf8_bom(tmp_path):
    read = read_session_runtime("file", _write(tmp_path, b"\xef\xbb\xbf" + b'{"sessions": {}}'))
    assert read.known


def test_file_missing(tmp_path):
    path = tmp_path / "nope.json"
    read = read_session_runtime("file", path)
    assert read.snapshot is None
    assert read.reason == f"cannot read session runtime file {path}: No such file or directory"


def test_file_is_a_directory(tmp_path):
    read = read_session_runtime("file", tmp_path)
    assert read.snapshot is None and "cannot read session runtime file" in read.reason


@pytest.mark.parametrize(
    "content",
    ['{"sessions": {', "", "not json", b"\xff\xfe\x00garbage", "[" * 100_000 + "]" * 100_000],
    ids=["truncated", "empty", "text", "bad-bytes", "deeply-nested"],
)
def test_file_invalid_json(tmp_path, content):
    path = _write(tmp_path, content)
    read = read_session_runtime("file", path)
    assert read.snapshot is None
    assert read.reason.startswith(f"invalid JSON from file {path}: ")


@pytest.mark.parametrize(
    "doc",
    [[], {}, {"session": {}}, {"sessions": []}, {"sessions": None}, "sessions", 3, None],
)
def test_file_wrong_shape(tmp_path, doc):
    read = read_session_runtime("file", _write(tmp_path, json.dumps(doc)))
    assert read.snapshot is None
    assert read.reason.startswith("bad session runtime document from file ")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"isWorking": "yes"}, "isWorking must be a bool, got 'yes'"),
        ({"isWorking": 1}, "isWorking must be a bool, got 1"),
        ({"isWorking": None}, "isWorking must be a bool, got None"),
        ({"pendingRequest": None}, "isWorking is missing"),
        ([True], "entry must be an object, got list"),
        (None, "entry must be an object, got NoneType"),
        ({"isWorking": True, "pendingRequest": "ExitPlanMode"}, "pendingRequest must be an object"),
        (
            {"isWorking": True, "pendingRequest": {}},
            "pendingRequest.toolName must be a non-empty string",
        ),
        (
            {"isWorking": True, "pendingRequest": {"toolName": ""}},
            "pendingRequest.toolName must be",
        ),
        ({"isWorking": True, "pendingRequest": {"toolName": 5}}, "pendingRequest.toolName must be"),
        (
            {"isWorking": True, "pendingRequest": {"toolName": "Bash", "input": [1]}},
            "pendingRequest.input must be an object",
        ),
        ({"isWorking": True, "phase": "busy"}, "phase must be one of"),
        ({"isWorking": True, "processState": None}, "processState must be one of"),
        ({"isWorking": True, "activity": "working"}, "activity must be one of"),
        ({"isWorking": True, "updatedAt": 17}, "updatedAt must be text"),
        ({"isWorking": True, "errorMessage": 3}, "errorMessage must be text or null"),
        ({"isWorking": True, "lastExit": {"code": 1}}, "lastExit must be null or"),
        (
            {"isWorking": True, "lastExit": {"code": True, "timestamp": "t", "unexpected": False}},
            "lastExit must be null or",
        ),
    ],
)
def test_file_one_bad_entry_makes_only_that_session_unknown(tmp_path, entry, problem):
    doc = {
        "sessions": {"good": {"isWorking": True}, "abc": entry, "also-good": {"isWorking": False}}
    }
    read = read_session_runtime("file", _write(tmp_path, json.dumps(doc)))
    assert read.known and read.reason is None
    assert set(read.snapshot.sessions) == {"good", "also-good"}
    assert list(read.snapshot.bad) == ["abc"]
    assert read.snapshot.bad["abc"].startswith(
        f"bad session runtime entry for session 'abc': {problem}"
    )


def test_file_full_entry_is_read_with_its_runtime_state(tmp_path):
    last_exit = {"code": 137, "timestamp": "2026-08-01T11:00:00.000Z", "unexpected": True}
    entry = {
        "isWorking": False,
        "pendingRequest": {"toolName": "Edit", "input": {"questions": []}},
        "phase": "error",
        "processState": "stopped",
        "activity": "IDLE",
        "updatedAt": "2026-08-01T12:00:00.000Z",
        "lastExit": {**last_exit, "signal": "KILL"},  # extra keys are ignored
        "errorMessage": "boom",
    }
    read = read_session_runtime("file", _write(tmp_path, json.dumps({"sessions": {"s": entry}})))
    state = read.snapshot.sessions["s"]
    assert state.pending == ("Edit", {"questions": []})
    assert state.state("1970-01-01T00:00:00.000Z") == {
        "isWorking": False,
        "phase": "error",
        "processState": "stopped",
        "activity": "IDLE",
        "updatedAt": "2026-08-01T12:00:00.000Z",
        "lastExit": last_exit,
        "errorMessage": "boom",
    }


def test_entry_defaults_follow_is_working():
    """Fields an older document lacks take the defaults docs/CONTRACT.md gives."""
    db_time = "2026-01-01T00:00:00.000Z"
    assert SessionState(True).state(db_time) == {
        "isWorking": True,
        "phase": "running",
        "processState": "unknown",
        "activity": "WORKING",
        "updatedAt": db_time,
        "lastExit": None,
        "errorMessage": None,
    }
    assert SessionState(False).state(db_time)["phase"] == "idle"
    assert SessionState(False).state(db_time)["activity"] == "IDLE"
    # A session the document does not list: the app's initial runtime state.
    assert ABSENT.state(db_time) | {"updatedAt": None} == {
        "isWorking": False,
        "phase": "idle",
        "processState": "stopped",
        "activity": "IDLE",
        "updatedAt": None,
        "lastExit": None,
        "errorMessage": None,
    }


def test_file_reason_truncates_huge_values(tmp_path):
    doc = {"sessions": {"x" * 10_000: {"isWorking": "y" * 10_000}}}
    read = read_session_runtime("file", _write(tmp_path, json.dumps(doc)))
    assert read.known and len(next(iter(read.snapshot.bad.values()))) < 400


# ---------------------------------------------------------------------------------------------
# HTTP source


def test_http_valid(server):
    read = read_session_runtime("http", server.url, **FAST)
    assert read.known and read.reason is None and read.attempts == 1
    assert dict(read.snapshot.sessions) == VALID_STATES
    assert server.requests[0]["Accept"] == "application/json"


def test_http_retries_5xx_then_succeeds(server):
    server.reply(Reply(500, b"oops"), Reply(503, b"busy"), Reply())
    read = read_session_runtime("http", server.url, retries=2, **FAST)
    assert read.known and read.attempts == 3 and len(server.requests) == 3


def test_http_5xx_every_time(server):
    server.reply(Reply(500, b"oops"))
    read = read_session_runtime("http", server.url, retries=2, **FAST)
    assert read.snapshot is None and read.attempts == 3 and len(server.requests) == 3
    assert read.reason == (
        f"GET {server.url} failed after 3 attempts: HTTP 500 Internal Server Error"
    )


def test_http_404_is_not_retried(server):
    server.reply(Reply(404, b"nope"))
    read = read_session_runtime("http", server.url, retries=3, **FAST)
    assert read.snapshot is None and read.attempts == 1 and len(server.requests) == 1
    assert read.reason == f"GET {server.url} failed after 1 attempt: HTTP 404 Not Found"


def test_http_non_200_success_status_is_unknown(server):
    server.reply(Reply(204, b""))
    read = read_session_runtime("http", server.url, **FAST)
    assert read.snapshot is None and read.attempts == 1
    assert read.reason == f"GET {server.url} returned HTTP 204, expected 200"


def test_http_slow_handler_times_out_within_bound(server):
    server.reply(Reply(delay_s=3.0))
    timeout_s, retries, backoff_s = 0.3, 1, 0.05
    started = time.monotonic()
    read = read_session_runtime(
        "http", server.url, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s
    )
    elapsed = time.monotonic() - started
    assert read.snapshot is None and read.attempts == 2
    assert "timed out" in read.reason
    assert read.reason.startswith(f"GET {server.url} failed after 2 attempts: ")
    bound = (retries + 1) * timeout_s + backoff_s
    assert bound * 0.9 <= elapsed < bound + 0.5


def test_http_trickling_body_cannot_outlast_the_deadline(server):
    # Each byte arrives well within the socket timeout; only the per-attempt deadline stops it.
    server.reply(Reply(trickle_s=0.05))
    started = time.monotonic()
    read = read_session_runtime("http", server.url, timeout_s=0.3, retries=0)
    elapsed = time.monotonic() - started
    assert read.snapshot is None and read.attempts == 1
    assert "timed out" in read.reason
    assert elapsed < 0.3 + 0.5


@pytest.mark.parametrize(
    ("body", "start"),
    [
        (b"<html>502 from a proxy</html>", "invalid JSON from GET "),
        (b'{"sessions": [1, 2]}', "bad session runtime document from GET "),
    ],
    ids=["garbage", "wrong-shape"],
)
def test_http_bad_document_is_unknown_without_retry(server, body, start):
    server.reply(Reply(200, body))
    read = read_session_runtime("http", server.url, retries=2, **FAST)
    assert read.snapshot is None and read.attempts == 1 and len(server.requests) == 1
    assert read.reason.startswith(start)
    assert server.url in read.reason


def test_http_connection_refused_is_retried():
    url = f"http://127.0.0.1:{_closed_port()}/runtime"
    read = read_session_runtime("http", url, retries=2, **FAST)
    assert read.snapshot is None and read.attempts == 3
    assert read.reason.startswith(f"GET {url} failed after 3 attempts: ")
    assert "refused" in read.reason.lower()


@pytest.mark.parametrize(
    ("raw_password", "plain_password"),
    [("s3cr3t-PW", "s3cr3t-PW"), ("p%40ss%3Aw0rd", "p@ss:w0rd")],
)
def test_http_password_is_sent_but_never_shown(server, raw_password, plain_password):
    url = server.url.replace("http://", f"http://alice:{raw_password}@")
    server.reply(Reply(500, b"oops"))
    read = read_session_runtime("http", url, retries=1, **FAST)
    assert read.snapshot is None and read.attempts == 2
    assert raw_password not in read.reason and plain_password not in read.reason
    assert f"alice:***@127.0.0.1:{server.port}" in read.reason
    expected = base64.b64encode(f"alice:{plain_password}".encode()).decode()
    assert server.requests[0]["Authorization"] == f"Basic {expected}"

    server.reply(Reply())
    assert read_session_runtime("http", url, **FAST).known


def test_http_password_hidden_in_bad_document_reason(server):
    url = server.url.replace("http://", "http://alice:hunter2@")
    server.reply(Reply(200, b"garbage"))
    read = read_session_runtime("http", url, **FAST)
    assert read.snapshot is None and "hunter2" not in read.reason


def test_http_credentials_do_not_follow_a_redirect(make_server):
    origin, elsewhere = make_server(), make_server()
    origin.reply(Reply(302, b"", headers=(("Location", elsewhere.url),)))
    url = origin.url.replace("http://", "http://alice:hunter2@")
    read = read_session_runtime("http", url, **FAST)
    assert read.known
    assert "Authorization" in origin.requests[0]
    assert "Authorization" not in elsewhere.requests[0]


# ---------------------------------------------------------------------------------------------
# session_fields: the contract's rule per workspace


def _sessions(rows) -> pd.DataFrame:
    """rows: (session_id, workspace_id, kind, created_at)."""
    frame = pd.DataFrame(rows, columns=["session_id", "workspace_id", "kind", "created_at"])
    frame["created_at"] = frame["created_at"].astype("Int64")
    frame["status"] = "RUNNING"
    frame["updated_at"] = frame["created_at"]
    frame["provider"] = "CLAUDE"
    frame["name"] = None
    frame["workflow"] = "implement"
    frame["model"] = "sonnet"
    return frame


def _known(states: dict[str, tuple[bool, str | None]]) -> RuntimeRead:
    sessions = {sid: SessionState(working, tool) for sid, (working, tool) in states.items()}
    return RuntimeRead(RuntimeSnapshot(sessions), None, 1)


def _as_dict(frame: pd.DataFrame) -> dict[str, tuple[bool, str | None]]:
    return {
        r.workspace_id: (r.is_working, r.pending_request_type)
        for r in frame.itertuples(index=False)
    }


CASES = [
    pytest.param(
        [("a1", "w1", "agent", 1), ("a2", "w1", "agent", 2), ("a3", "w1", "agent", 3)],
        {"a1": (False, None), "a2": (True, None), "a3": (False, None)},
        {"w1": (True, None)},
        id="any-agent-working",
    ),
    pytest.param(
        [("a1", "w1", "agent", 1), ("a2", "w1", "agent", 2)],
        {"a1": (False, None), "a2": (False, None)},
        {"w1": (False, None)},
        id="none-working",
    ),
    pytest.param(
        [("a1", "w1", "agent", 1), ("a2", "w1", "agent", 2), ("a3", "w1", "agent", 3)],
        {"a1": (True, "Bash"), "a2": (False, "AskUserQuestion"), "a3": (False, "ExitPlanMode")},
        {"w1": (True, "user_question")},
        id="first-pending-skipped-when-tool-is-bash",
    ),
    pytest.param(
        [("a1", "w1", "agent", 1)],
        {"a1": (True, "Read")},
        {"w1": (True, "permission_request")},
        id="only-other-tools-is-a-permission-request",
    ),
    pytest.param(
        [
            ("t1", "w1", "terminal", 0),
            ("a1", "w1", "agent", 5),
            ("t2", "w2", "terminal", 0),
        ],
        {"t1": (True, "ExitPlanMode"), "a1": (False, None), "t2": (True, "AskUserQuestion")},
        {"w1": (False, None)},
        id="terminal-sessions-ignored",
    ),
    pytest.param(
        [("a1", "w1", "agent", 1), ("a2", "w2", "agent", 1)],
        {"a2": (True, "ExitPlanMode"), "ghost": (True, "AskUserQuestion")},
        {"w1": (False, None), "w2": (True, "plan_approval")},
        id="session-missing-from-document",
    ),
    pytest.param(
        [("z9", "w1", "agent", 10), ("b2", "w1", "agent", 20), ("y1", "w1", "agent", 5)],
        {
            "z9": (False, "AskUserQuestion"),
            "b2": (False, "AskUserQuestion"),
            "y1": (False, "ExitPlanMode"),
        },
        {"w1": (False, "plan_approval")},
        id="order-by-created-at-not-frame-order-or-id",
    ),
    pytest.param(
        [("b", "w1", "agent", 7), ("a", "w1", "agent", 7), ("c", "w1", "agent", 1)],
        {"b": (False, "ExitPlanMode"), "a": (False, "AskUserQuestion"), "c": (True, "Bash")},
        {"w1": (True, "user_question")},
        id="created-at-tie-broken-by-session-id",
    ),
    pytest.param(
        [("a1", "w1", "agent", None), ("a2", "w1", "agent", 100)],
        {"a1": (False, "ExitPlanMode"), "a2": (False, "AskUserQuestion")},
        {"w1": (False, "user_question")},
        id="unknown-created-at-sorts-last",
    ),
    pytest.param(
        [
            ("a1", "w1", "agent", 1),
            ("a2", "w2", "agent", 1),
            ("a3", "w2", "agent", 2),
            ("t3", "w3", "terminal", 1),
        ],
        {"a1": (True, "AskUserQuestion"), "a3": (True, "ExitPlanMode")},
        {"w1": (True, "user_question"), "w2": (True, "plan_approval")},
        id="several-workspaces",
    ),
]


COLUMNS = ["workspace_id", "is_working", "pending_request_type", "session_summaries"]


@pytest.mark.parametrize(("rows", "states", "expected"), CASES)
def test_session_fields_rule(rows, states, expected):
    out = session_fields(_known(states), _sessions(rows)).frame
    assert list(out.columns) == COLUMNS
    assert _as_dict(out) == expected
    assert out["is_working"].dtype == bool
    assert out["pending_request_type"].dtype == object


def test_session_fields_unknown_is_none():
    rows = [("a1", "w1", "agent", 1)]
    assert session_fields(read_session_runtime("none"), _sessions(rows)) is None
    assert session_fields(RuntimeRead(None, "boom", 3), _sessions(rows)) is None


def test_session_fields_no_agent_sessions():
    for rows in ([], [("t1", "w1", "terminal", 1)]):
        out = session_fields(_known({"t1": (True, "ExitPlanMode")}), _sessions(rows)).frame
        assert out.empty
        assert list(out.columns) == COLUMNS
        assert out["is_working"].dtype == bool


def test_session_fields_needs_its_columns():
    with pytest.raises(ValueError, match="created_at"):
        session_fields(_known({}), pd.DataFrame({"session_id": [], "workspace_id": [], "kind": []}))


def test_file_to_session_fields(tmp_path):
    path = _write(tmp_path, json.dumps(VALID_DOC))
    rows = [("s4", "w1", "agent", 1), ("s1", "w1", "agent", 2), ("s2", "w2", "agent", 1)]
    out = session_fields(read_session_runtime("file", path), _sessions(rows)).frame
    assert _as_dict(out) == {"w1": (True, "plan_approval"), "w2": (False, None)}


def _reference(rows, states) -> dict[str, tuple[bool, str | None]]:
    """The contract's rule, written the obvious way: the first plan approval or question, else a
    permission request when any other tool waits, else none."""
    by_ws: dict[str, list] = {}
    for sid, ws, kind, created in rows:
        if kind == "agent":
            by_ws.setdefault(ws, []).append((created, sid))
    out = {}
    for ws, items in by_ws.items():
        items.sort(key=lambda t: (t[0], t[1]))
        working = any(states.get(sid, (False, None))[0] for _, sid in items)
        pending = None
        for _, sid in items:
            tool = states.get(sid, (False, None))[1]
            if tool in PENDING_TOOL_TYPES:
                pending = PENDING_TOOL_TYPES[tool]
                break
        if pending is None and any(states.get(sid, (False, None))[1] for _, sid in items):
            pending = "permission_request"
        out[ws] = (working, pending)
    return out


@pytest.mark.parametrize("id_dtype", [None, object], ids=["default-str", "object"])
def test_session_fields_20k_rows_matches_reference(id_dtype):
    rng = random.Random(20_000)
    tools = [None, None, "ExitPlanMode", "AskUserQuestion", "Bash", "Read"]
    rows = [
        (
            f"s{i:05d}",
            f"w{rng.randrange(4000):04d}",
            "agent" if rng.random() < 0.7 else "terminal",
            rng.randrange(50),  # few distinct times: many ties, so the id tie-break matters
        )
        for i in range(20_000)
    ]
    states = {
        sid: (rng.random() < 0.2, rng.choice(tools)) for sid, *_ in rows if rng.random() < 0.8
    }
    frame = _sessions(rows)
    if id_dtype is not None:
        frame = frame.astype({"session_id": id_dtype, "workspace_id": id_dtype})
    out = session_fields(_known(states), frame).frame
    assert out["is_working"].dtype == bool
    assert out["pending_request_type"].dtype == object
    assert set(out["pending_request_type"].map(repr)) <= {
        "None",
        "'plan_approval'",
        "'user_question'",
        "'permission_request'",
    }
    assert out["workspace_id"].is_unique
    assert _as_dict(out) == _reference(rows, states)


# ---------------------------------------------------------------------------------------------
# session_fields under the app's current rules (2026-08), and the session summaries

RULES_2026_08 = RULE_SETS["2026-08"]


def test_2026_08_pending_request_ignores_session_order():
    """pending-request-type.ts (6c25f7f9): any plan approval outranks any question, whatever the
    order; 2026-02 takes the first session's."""
    rows = [("a1", "w1", "agent", 1), ("a2", "w1", "agent", 2)]
    states = {"a1": (False, "AskUserQuestion"), "a2": (False, "ExitPlanMode")}
    assert _as_dict(session_fields(_known(states), _sessions(rows)).frame) == {
        "w1": (False, "user_question")
    }
    assert _as_dict(session_fields(_known(states), _sessions(rows), RULES_2026_08).frame) == {
        "w1": (False, "plan_approval")
    }


def test_2026_08_a_running_phase_is_working():
    """session-runtime.ts isSessionSummaryWorking: activity WORKING or runtime phase running."""
    rows = [("a1", "w1", "agent", 1), ("a2", "w2", "agent", 1)]
    read = RuntimeRead(
        RuntimeSnapshot(
            {
                "a1": SessionState(False, phase="running"),
                "a2": SessionState(False, activity="WORKING"),
            }
        ),
        None,
        1,
    )
    legacy = session_fields(read, _sessions(rows)).frame
    current = session_fields(read, _sessions(rows), RULES_2026_08).frame
    assert _as_dict(legacy) == {"w1": (False, None), "w2": (False, None)}
    assert _as_dict(current) == {"w1": (True, None), "w2": (True, None)}


def test_session_summaries_are_canonical_json_of_db_and_runtime():
    rows = [("b", "w1", "agent", 2), ("a", "w1", "agent", 1), ("t", "w1", "terminal", 0)]
    frame = _sessions(rows)
    frame.loc[frame["session_id"] == "a", "name"] = "Plan ✓"
    read = RuntimeRead(
        RuntimeSnapshot({"a": SessionState(True, "Bash", updated_at="2026-08-01T00:00:00.000Z")}),
        None,
        1,
    )
    out = session_fields(read, frame, RULES_2026_08)
    text = out.frame.loc[0, "session_summaries"]
    summaries = json.loads(text)
    assert [s["sessionId"] for s in summaries] == ["a", "b"]  # by id; no terminal session
    assert summaries[0] == {
        "sessionId": "a",
        "name": "Plan ✓",
        "workflow": "implement",
        "model": "sonnet",
        "provider": "CLAUDE",
        "persistedStatus": "RUNNING",
        "runtimePhase": "running",
        "processState": "unknown",
        "activity": "WORKING",
        "updatedAt": "2026-08-01T00:00:00.000Z",
        "lastExit": None,
        "errorMessage": None,
    }
    # b is not in the document: the app's initial state, stamped with its DB updatedAt (2 ms).
    assert summaries[1]["runtimePhase"] == "idle" and summaries[1]["processState"] == "stopped"
    assert summaries[1]["updatedAt"] == "1970-01-01T00:00:00.002Z"
    assert text == json.dumps(summaries, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert out.problems.empty


def test_a_bad_entry_makes_its_workspace_session_group_unknown(tmp_path):
    doc = {"sessions": {"a1": {"isWorking": "yes"}, "a2": {"isWorking": True}}}
    read = read_session_runtime("file", _write(tmp_path, json.dumps(doc)))
    rows = [("a1", "w1", "agent", 1), ("a2", "w2", "agent", 1)]
    out = session_fields(read, _sessions(rows), RULES_2026_08)
    assert _as_dict(out.frame) == {"w2": (True, None)}
    assert sorted(out.problems["field"]) == sorted(
        ["is_working", "pending_request_type", "session_summaries"]
    )
    assert set(out.problems["workspace_id"]) == {"w1"}
    assert out.problems["reason"].str.contains("isWorking must be a bool").all()


def test_an_unreadable_session_status_makes_only_the_summaries_unknown():
    rows = [("a1", "w1", "agent", 1)]
    frame = _sessions(rows)
    frame["status"] = "WEIRD"
    out = session_fields(_known({"a1": (True, None)}), frame, RULES_2026_08)
    assert _as_dict(out.frame) == {"w1": (True, None)}
    assert out.frame.loc[0, "session_summaries"] is None
    assert out.problems[["workspace_id", "field"]].values.tolist() == [["w1", "session_summaries"]]
    assert "persistedStatus" in out.problems.loc[0, "reason"]
