"""Helpers for the end-to-end tests that run real processes (test_e2e_postgres.py,
test_ui_screenshots.py): `dagster-webserver` / `dagster-daemon` subprocesses in their own process
groups, GraphQL against the webserver, a PostgreSQL copy of a demo app DB, and headless Chromium
driven over the DevTools protocol on a pipe (no extra Python dependency, nothing installed at test
time).

Nothing here imports ``reconcile_pipeline`` except :func:`copy_app_db_to`, which needs the app's
schema DDL (``create_app_schema``, the thing a PostgreSQL app DB is made with).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKSPACE_YAML = REPO / "workspace.yaml"
SCREENSHOT_DIR = REPO / "test-artifacts" / "screenshots"
LOG_TAIL_LINES = 80


def clean_env(home: Path, **settings: str | os.PathLike[str]) -> dict[str, str]:
    """This process's environment without RECONCILE_* / DAGSTER_* settings (they would point
    the code location elsewhere), plus DAGSTER_HOME and ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RECONCILE_", "DAGSTER_")) and k != "GIT_PYTHON_GIT_EXECUTABLE"
    }
    env["DAGSTER_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: os.fspath(v) for k, v in settings.items()})
    return env


def new_dagster_home(tmp_path: Path, tools: tuple[str, ...]) -> Path:
    """A fresh DAGSTER_HOME with the project's dagster.yaml, after checking that ``tools`` (in the
    venv) and git are installed."""
    for tool in tools:
        if not (BIN / tool).exists():
            pytest.fail(f"{BIN / tool} not found: install the project with `make setup`")
    if shutil.which("git") is None:
        pytest.fail("git is not installed")
    home = tmp_path / "dagster_home"
    home.mkdir()
    assert home.resolve() != (REPO / "dagster_home").resolve()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


RUN_QUEUE_LIFECYCLE = [
    dg.DagsterEventType.RUN_ENQUEUED,
    dg.DagsterEventType.RUN_STARTING,
    dg.DagsterEventType.RUN_SUCCESS,
]


def assert_went_through_run_queue(instance: dg.DagsterInstance, run_id: str) -> None:
    """Sensor -> QueuedRunCoordinator (RUN_ENQUEUED) -> the daemon's run queue launched it."""
    lifecycle = [
        e.get_dagster_event().event_type
        for e in instance.all_logs(run_id, of_type=set(RUN_QUEUE_LIFECYCLE))
    ]
    assert lifecycle == RUN_QUEUE_LIFECYCLE, f"run did not go through the run queue: {lifecycle}"


def run_tool(
    args: list[str], env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """A short-lived command (CLI); fails the test with its output when it fails."""
    proc = subprocess.run(
        args, cwd=REPO, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(args[:3])} exited with {proc.returncode}:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}",
            pytrace=False,
        )
    return proc


# ----------------------------------------------------------------------------------------------
# Long-running processes
# ----------------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str, args: list[str], env: Mapping[str, str], log: Path) -> Proc:
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Own process group: code servers, run workers and executor children land in it too,
            # so teardown ends them all by group id (never by name).
            start_new_session=True,
        )
    return Proc(name, popen, log)


def stop(proc: Proc, grace_s: float = 20.0) -> None:
    if proc.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=grace_s)
    # Whatever is left in the group (children that outlived their parent) is killed hard.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.popen.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=10)


@dataclass
class Stack:
    """A webserver (and maybe a daemon) on one DAGSTER_HOME."""

    home: Path
    env: dict[str, str]
    url: str = ""
    procs: list[Proc] = field(default_factory=list)
    daemon_started_at: float = 0.0

    def logs(self) -> str:
        parts = []
        for p in self.procs:
            rc = p.popen.poll()
            state = "running" if rc is None else f"exited with {rc}"
            parts.append(f"----- {p.name} ({state}), last lines of {p.log} -----\n{p.tail()}")
        return "\n".join(parts)

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n\n{self.logs()}", pytrace=False)

    def check_alive(self) -> None:
        for p in self.procs:
            if not p.alive():
                self.fail(f"{p.name} exited early with code {p.popen.returncode}")

    def start_webserver(self, log: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.procs.append(
            start(
                "dagster-webserver",
                [str(BIN / "dagster-webserver"), "-w", str(WORKSPACE_YAML)]
                + ["-h", "127.0.0.1", "-p", str(port)],
                self.env,
                log,
            )
        )

    def start_daemon(self, log: Path) -> None:
        self.daemon_started_at = time.time()
        self.procs.append(
            start(
                "dagster-daemon",
                [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE_YAML)],
                self.env,
                log,
            )
        )

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            stop(p)

    def wait_for_webserver(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5):  # noqa: S310
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1.0)
        self.fail(f"dagster-webserver did not answer on {self.url} within {timeout_s:.0f} s")

    def gql(self, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            doc = json.loads(response.read())
        if doc.get("errors"):
            self.fail(f"GraphQL errors for {query.split('(')[0].strip()}: {doc['errors']}")
        return doc["data"]

    def wait_for_location(self, timeout_s: float) -> str:
        """Wait until the code location is loaded; return its name (for UI URLs)."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                data = self.gql(LOCATIONS_QUERY)["workspaceOrError"]
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = exc
                time.sleep(1.0)
                continue
            last = data
            for entry in data.get("locationEntries", []):
                location = entry["locationOrLoadError"]
                if location and location["__typename"] == "PythonError":
                    self.fail(f"code location {entry['name']} failed to load: {location}")
                if location and location["__typename"] == "RepositoryLocation":
                    return location["name"]
            time.sleep(1.0)
        self.fail(f"code location not loaded within {timeout_s:.0f} s: {last}")
        raise AssertionError  # unreachable

    def runs(self, job: str) -> list[dict]:
        data = self.gql(RUNS_QUERY, {"filter": {"pipelineName": job}})["runsOrError"]
        if data["__typename"] != "Runs":
            self.fail(f"runsOrError: {data}")
        return data["results"]

    def run_errors(self, run_id: str) -> str:
        data = self.gql(RUN_ERRORS_QUERY, {"runId": run_id})["runOrError"]
        if data["__typename"] != "Run":
            return str(data)
        lines = [
            json.dumps(event)[:3000]
            for event in data["eventConnection"]["events"]
            if event.get("error") or event.get("level") in ("ERROR", "CRITICAL")
        ]
        return "\n".join(lines[-20:]) or "(no error events)"

    def wait_for_successful_run(self, job: str, timeout_s: float, since: float) -> dict:
        """Poll GraphQL until a run of ``job`` succeeds; fail at once if one fails."""
        deadline = since + timeout_s
        history: dict[str, list[str]] = {}
        while True:
            self.check_alive()
            if time.time() > deadline:
                self.fail(
                    f"no successful {job} run within {timeout_s:.0f} s; runs seen (status "
                    f"history): {history}"
                )
            try:
                runs = self.runs(job)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1.0)
                continue
            for run in runs:
                seen = history.setdefault(run["runId"], [])
                if not seen or seen[-1] != run["status"]:
                    seen.append(run["status"])
            failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
            if failed:
                self.fail(
                    f"{job} run {failed[0]['runId']} ended {failed[0]['status']}:\n"
                    f"{self.run_errors(failed[0]['runId'])}"
                )
            done = [r for r in runs if r["status"] == "SUCCESS"]
            if done:
                return min(done, key=lambda r: r["creationTime"])
            time.sleep(1.0)


LOCATIONS_QUERY = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation { name repositories { name } }
        }
      }
    }
  }
}
"""

RUNS_QUERY = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs {
      results { runId status jobName creationTime startTime endTime tags { key value } }
    }
    ... on PythonError { message }
  }
}
"""

RUN_ERRORS_QUERY = """
query RunEvents($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      eventConnection(limit: 2000) {
        events {
          __typename
          ... on MessageEvent { message level stepKey }
          ... on ExecutionStepFailureEvent { error { message stack } }
          ... on RunFailureEvent { error { message } }
        }
      }
    }
  }
}
"""

CHECKS_QUERY = """
query Checks($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 20) {
    runId
    status
    evaluation { success checkName description }
  }
}
"""


# ----------------------------------------------------------------------------------------------
# A PostgreSQL copy of a SQLite app DB
# ----------------------------------------------------------------------------------------------


def copy_app_db_to(sqlite_path: Path, target_url: str) -> dict[str, int]:
    """Create the app schema of the SQLite app DB's generation on ``target_url`` (as the app's
    migrations would on PostgreSQL: DateTime columns are ``TIMESTAMP(3)``, booleans ``BOOLEAN``)
    and copy every row into it, converting the SQLite encodings (epoch-ms integers or text, 0/1)
    to PostgreSQL values. Paths (worktreePath, repoPath) are kept. Returns rows per table."""
    import datetime as dt

    import sqlalchemy as sa

    from reconcile_pipeline.demo.app_schema import TABLES, column_names, create_app_schema

    epoch = dt.datetime(1970, 1, 1)

    def convert(declared: str, value: Any) -> Any:
        if value is None:
            return None
        if declared == "DATETIME" and isinstance(value, int):
            return epoch + dt.timedelta(milliseconds=value)  # naive UTC, as TIMESTAMP(3) holds
        if declared == "BOOLEAN":
            assert value in (0, 1), f"demo boolean not 0/1: {value!r}"
            return bool(value)
        return value  # text: PostgreSQL parses DateTime text itself

    source = sqlite3.connect(f"{sqlite_path.resolve().as_uri()}?mode=ro", uri=True)
    tables = {r[0] for r in source.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    generation = 3 if "WorkspacePR" in tables else 2 if "AgentSession" in tables else 1
    engine = sa.create_engine(target_url)
    counts: dict[str, int] = {}
    try:
        create_app_schema(engine, generation)
        with engine.begin() as conn:
            for table in TABLES[generation]:  # parents first (foreign keys)
                names = column_names(generation, table)
                declared = {r[1]: r[2] for r in source.execute(f'PRAGMA table_info("{table}")')}
                select = ", ".join(f'"{c}"' for c in names)
                rows = source.execute(f'SELECT {select} FROM "{table}"').fetchall()
                records = [
                    {
                        name: convert(declared[name], value)
                        for name, value in zip(names, row, strict=True)
                    }
                    for row in rows
                ]
                if records:
                    conn.execute(sa.table(table, *(sa.column(c) for c in names)).insert(), records)
                counts[table] = len(records)
    finally:
        source.close()
        engine.dispose()
    return counts


# ----------------------------------------------------------------------------------------------
# Headless Chromium over the DevTools protocol (--remote-debugging-pipe)
# ----------------------------------------------------------------------------------------------

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
WINDOW = (1600, 1000)


def find_chromium() -> str | None:
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


class DevToolsError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium, driven by DevTools protocol messages on fds 3 (in) and 4 (out):
    NUL-terminated JSON, no port, no websocket library."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        self.log = log
        cmd_read, cmd_write = os.pipe()  # we write commands, Chromium reads fd 3
        out_read, out_write = os.pipe()  # Chromium writes fd 4, we read
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--remote-debugging-pipe",
            "about:blank",
        ]

        def _fds() -> None:  # in the child, before exec: the pipe ends become fds 3 and 4
            os.dup2(cmd_read, 3)
            os.dup2(out_write, 4)

        with open(log, "wb") as out:
            self.popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(3, 4),
                preexec_fn=_fds,  # two dup2 calls: safe between fork and exec
                start_new_session=True,
            )
        os.close(cmd_read)
        os.close(out_write)
        self._write = os.fdopen(cmd_write, "wb", buffering=0)
        self._read = os.fdopen(out_read, "rb", buffering=0)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._read.read(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._replies.get(message["id"])
                    if box is not None:
                        box.put(message)

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout=60.0
    ) -> dict:
        with self._lock:
            self._next_id += 1
            message_id = self._next_id
            box: queue.Queue = queue.Queue()
            self._replies[message_id] = box
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._write.write(json.dumps(message).encode() + b"\0")
        try:
            reply = box.get(timeout=timeout)
        except queue.Empty:
            raise DevToolsError(
                f"no reply to {method} within {timeout} s (chromium "
                f"{'running' if self.popen.poll() is None else 'exited'}); log:\n{self.tail()}"
            ) from None
        finally:
            with self._lock:
                self._replies.pop(message_id, None)
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def new_page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        # Its own process group (zygote, GPU/network services, crashpad): end what is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        for f in (self._write, self._read):
            with contextlib.suppress(OSError):
                f.close()


@dataclass
class Page:
    browser: Chromium
    session: str

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression[:60]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        reply = self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise DevToolsError(f"navigate {url}: {reply['errorText']}")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML") or ""

    def wait_for_text(
        self, needles: list[str], timeout_s: float, settle_s: float = 2.0
    ) -> tuple[str, float]:
        """Poll the rendered text until every needle is there (the SPA has rendered its data),
        then let pending requests and layout settle. Returns (text, seconds waited)."""
        started = time.monotonic()
        text = ""
        while time.monotonic() - started < timeout_s:
            text = self.text()
            if all(n in text for n in needles):
                time.sleep(settle_s)
                return self.text(), time.monotonic() - started
            time.sleep(0.5)
        missing = [n for n in needles if n not in text]
        raise DevToolsError(
            f"page never showed {missing} within {timeout_s:.0f} s; it shows:\n{text[:3000]}"
        )

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        path.write_bytes(data)
        return data


@contextlib.contextmanager
def chromium(binary: str, workdir: Path) -> Iterator[Chromium]:
    browser = Chromium(binary, workdir / "chromium-profile", workdir / "chromium.log")
    try:
        yield browser
    finally:
        browser.close()


# ----------------------------------------------------------------------------------------------
# PNG inspection (stdlib only)
# ----------------------------------------------------------------------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of pixel bytes) of an 8-bit, non-interlaced RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None, "PNG without IHDR"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG {header}"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r) for r in _rgb_rows(rows, bpp)]


def _rgb_rows(rows: list[bytes], bpp: int) -> Iterator[bytes]:
    for row in rows:
        if bpp == 3:
            yield row
        else:
            yield b"".join(row[i : i + 3] for i in range(0, len(row), 4))


def colour_stats(data: bytes) -> dict[str, Any]:
    """Size, distinct colours and the share of the most common colour of a PNG."""
    width, height, rows = png_pixels(data)
    counts: dict[bytes, int] = {}
    for row in rows:
        for i in range(0, len(row), 3):
            px = row[i : i + 3]
            counts[px] = counts.get(px, 0) + 1
    top = max(counts.values())
    return {
        "width": width,
        "height": height,
        "colours": len(counts),
        "dominant_share": round(top / (width * height), 3),
    }
