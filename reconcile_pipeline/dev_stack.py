"""``make dev`` on a laptop: Dagster's UI and daemon (``dg dev``) over one code server that this
command starts itself (``dagster api grpc``, Dagster's documented way to run a code server
of one's own, named in a ``grpc_server`` workspace entry).

``dg dev`` on its own puts a proxy (``dagster code-server start``) between the UI and daemon
and a second server process it supervises, so that the UI's Reload button can restart the code.
Over an idle fleet those two processes cost about 1.9 CPU-s a minute where one server costs 0.7
(BENCHMARKS.md, the idle meter). A product that runs around the clock next to the app has no
code to reload: restart ``make dev`` after an upgrade, or use ``dg dev`` on its own while
editing the pipeline.

No Dagster import: this module only starts processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOCATION_NAME = "reconcile_pipeline"
DEFINITIONS_MODULE = "reconcile_pipeline.definitions"
_SERVER_START_TIMEOUT_S = 120.0
# How long each may take to shut down gracefully before its process group is killed.
_DEV_GRACE_S = 30.0
_SERVER_GRACE_S = 10.0


def workspace_yaml(socket_path: Path) -> str:
    return (
        "load_from:\n"
        "  - grpc_server:\n"
        f"      socket: {socket_path}\n"
        "      host: localhost\n"
        f"      location_name: {LOCATION_NAME}\n"
    )


def _dagster(*args: str) -> list[str]:
    return [sys.executable, "-m", "dagster", *args]


def _wait_until_serving(server: subprocess.Popen, socket_path: Path) -> None:
    """The server binds its socket only after it has loaded the definitions, so a socket that
    accepts a connection is a server that can answer."""
    deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"the code server exited with code {server.returncode} while loading "
                f"{DEFINITIONS_MODULE} (its error is above)"
            )
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(socket_path))
            return
        time.sleep(0.1)
    raise RuntimeError(f"the code server did not serve within {_SERVER_START_TIMEOUT_S:.0f} s")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    """Interrupt ``process`` and everything it started (its own process group), as Ctrl-C would;
    kill the group if it has not ended after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    # Whatever is left of the group (a child that outlived its parent) ends with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def serve(host: str, port: int) -> int:
    """Start the code server, then ``dg dev`` on it; stop both, with everything they started,
    when either ends, on Ctrl-C or on SIGTERM. Each runs in a process group of its own, so that
    stopping one never signals the shell or ``make`` that started this command."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with tempfile.TemporaryDirectory(prefix="reconcile-dev-") as tmp:
        socket_path = Path(tmp) / "code.sock"
        workspace = Path(tmp) / "workspace.yaml"
        workspace.write_text(workspace_yaml(socket_path))
        server = subprocess.Popen(
            _dagster("api", "grpc", "-m", DEFINITIONS_MODULE, "--socket", str(socket_path))
            + ["--location-name", LOCATION_NAME, "--log-level", "warning"],
            process_group=0,
        )
        dev: subprocess.Popen | None = None
        try:
            _wait_until_serving(server, socket_path)
            # dg dev on a workspace file goes straight to Dagster's `dagster dev`.
            dev = subprocess.Popen(
                [str(Path(sys.executable).with_name("dg")), "dev", "-w", str(workspace)]
                + ["--host", host, "--port", str(port)],
                process_group=0,
            )
            while dev.poll() is None and server.poll() is None:
                time.sleep(1.0)
            if server.poll() is not None:
                print(f"the code server exited with code {server.returncode}", file=sys.stderr)
                return 1
            return dev.returncode
        except KeyboardInterrupt:
            return 0
        finally:
            # The teardown below is bounded (the graces, then a kill): a second Ctrl-C must not
            # cut it short and leave the servers running.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if dev is not None:
                _stop(dev, _DEV_GRACE_S)
            _stop(server, _SERVER_GRACE_S)
