"""Headless Chromium over the DevTools protocol (``--remote-debugging-pipe``): no extra Python
dependency, nothing installed at test time; and PNG decoding for screenshot checks."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shutil
import signal
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
