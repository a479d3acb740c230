"""What `make dev` costs a laptop: CPU per minute of the whole process tree (webserver, daemon,
code servers, run workers, step and git processes), with the reconcile sensor on and then off,
over an unchanged demo fleet.

    .venv/bin/python scripts/idle_meter.py --workspaces 100 --minutes 3 --root /tmp/idle

Each combination of --launchers (Dagster's own run launcher, the preloaded one) and --servers
(how the UI and daemon reach the code: `dg`, Dagster's proxy code server as `dg dev` starts it;
`direct`, one `dagster api grpc` server as `reconcile-pipeline dev`, what `make dev` runs, starts
it) is measured in turn.

Builds the demo under a fresh DAGSTER_HOME, starts the services in a cgroup of its own (cpuacct), waits for the sensor's first run to end, then measures
``--minutes`` with the sensor on (one tick a minute) and ``--minutes`` with it stopped
(Dagster's own services only). The difference per minute is one tick's cost. Prints one JSON
line; ``--markdown FILE`` appends a row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import BIN, REPO, TreeAccounting  # noqa: E402  (a script beside this one)

SENSOR = "reconciliation_sensor"


def _runs(home: Path) -> list:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(), limit=1000)]


def _wait_for_run(home: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = _runs(home)
        if runs and all(r.is_finished for r in runs):
            return
        time.sleep(2)
    raise RuntimeError(f"no finished run within {timeout_s} s; see {home}/dev.log")


LAUNCHERS = {
    # Dagster's own: the code server spawns a fresh interpreter per run.
    "dagster": "module: dagster._core.launcher\n  class: DefaultRunLauncher",
    # Runs forked from a server that imported the code location once (run_launcher.py).
    "preloaded": "module: reconcile_pipeline.run_launcher\n  class: PreloadedRunLauncher",
}


PORT = "3199"
SERVERS = {
    # What `dg dev` runs: `dagster dev` with a proxy code server and the server it supervises.
    "dg": [str(BIN / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "-p", PORT],
    # What `make dev` runs: `dagster dev` over one code server of its own (dev_stack.py).
    "direct": [str(BIN / "reconcile-pipeline"), "dev", "-p", PORT],
}


# Which Dagster service a process of the tree is, by its command line (first match).
ROLES = (
    ("code-server start", "code server proxy"),
    (" api grpc ", "code server"),
    ("dagster_webserver", "webserver"),
    ("dagster._daemon", "daemon"),
    (
        "multiprocessing.forkserver",
        "run workers",
    ),  # the preloaded launcher's: runs are its children
    ("multiprocessing.resource_tracker", "run workers"),
    ("dagster dev ", "supervisors"),  # dagster dev / dg dev / reconcile-pipeline dev
    ("dg dev ", "supervisors"),
    ("reconcile-pipeline dev ", "supervisors"),
)
_TICKS = os.sysconf("SC_CLK_TCK")


def _role(cmdline: str) -> str:
    return next((role for needle, role in ROLES if needle in cmdline), "other")


def _cpu_by_role(group: Path) -> dict[str, float]:
    """CPU seconds so far of each process in the cgroup, with the children it has reaped (a
    run worker and its git processes count for the process that started them), by role."""
    totals: dict[str, float] = {}
    for pid in (group / "cgroup.procs").read_text().split():
        if int(pid) == os.getpid():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        role = _role(f" {cmdline} ")
        totals[role] = totals.get(role, 0.0) + sum(map(int, stat[11:15])) / _TICKS
    return totals


def _per_minute(before: dict[str, float], after: dict[str, float], seconds: float) -> dict:
    """What each role spent between two readings (a process that ended meanwhile is counted by
    the one that reaped it, so the sum is close to, not exactly, the cgroup's figure)."""
    roles = sorted(set(before) | set(after))
    spent = {r: (after.get(r, 0.0) - before.get(r, 0.0)) * 60 / seconds for r in roles}
    return {r: round(v, 2) for r, v in spent.items() if abs(v) >= 0.005}


def _instance_yaml(launcher: str, base: Path) -> str:
    """The instance config ``base`` with ``launcher`` as its run launcher."""
    text = base.read_text()
    if "\nrun_launcher:" in text:
        head, _, rest = text.partition("\nrun_launcher:")
        tail = rest.split("\n\n", 1)[1] if "\n\n" in rest else ""
        text = head + "\n" + tail
    return text + f"\nrun_launcher:\n  {LAUNCHERS[launcher]}\n"


def measure(
    workspaces: int, minutes: float, root: Path, launcher: str, base: Path, server: str
) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(_instance_yaml(launcher, base))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILE_", "DAGSTER_"))} | {
        "DAGSTER_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run(
        [str(BIN / "reconcile-pipeline"), "demo", "--workspaces", str(workspaces)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # The instance's storage exists before the services start (as on any deployment): nothing
    # here races their first migration.
    subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tree = TreeAccounting(memory=False)
    if not tree.usable:
        raise RuntimeError("no cpuacct cgroup to measure in")
    log = open(home / "dev.log", "ab")  # noqa: SIM115 - closed below
    dev = subprocess.Popen(
        SERVERS[server],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_run(home, 300)  # the first tick seeds the table: not part of the steady state
        time.sleep(5)
        on_start, on_roles = time.time(), _cpu_by_role(tree.group)
        time.sleep(minutes * 60)
        on_end, on_roles = (
            time.time(),
            _per_minute(on_roles, _cpu_by_role(tree.group), time.time() - on_start),
        )
        runs_on = sum(1 for r in _runs(home) if r.is_finished) - 1
        subprocess.run(
            [str(BIN / "dagster"), "sensor", "stop", SENSOR, "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_run(home, 300)
        time.sleep(5)
        off_start, off_roles = time.time(), _cpu_by_role(tree.group)
        time.sleep(minutes * 60)
        off_end, off_roles = (
            time.time(),
            _per_minute(off_roles, _cpu_by_role(tree.group), time.time() - off_start),
        )
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
        log.close()
        tree.finish()
    on = tree.cpu_between(on_start, on_end) / ((on_end - on_start) / 60)
    off = tree.cpu_between(off_start, off_end) / ((off_end - off_start) / 60)
    return {
        "instance": str(base),
        "launcher": launcher,
        "server": server,
        "workspaces": workspaces,
        "minutes": minutes,
        "runs_while_on": runs_on,
        "cpu_s_per_min_sensor_on": round(on, 2),
        "cpu_s_per_min_sensor_off": round(off, 2),
        "cpu_s_per_tick": round(on - off, 2),
        "cpu_s_per_min_by_role_sensor_on": on_roles,
        "cpu_s_per_min_by_role_sensor_off": off_roles,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--root", type=Path, default=Path("/tmp/reconcile-idle"))
    parser.add_argument(
        "--launchers", default="dagster,preloaded", help="run launchers to measure, in turn"
    )
    parser.add_argument(
        "--servers", default="dg,direct", help="code server set-ups to measure, in turn"
    )
    parser.add_argument(
        "--instance",
        type=Path,
        action="append",
        help="dagster.yaml to measure (repeatable; default the project's)",
    )
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    bases = args.instance or [REPO / "dagster_home" / "dagster.yaml"]
    cases = [
        (b, launcher, server)
        for b in bases
        for launcher in args.launchers.split(",")
        for server in args.servers.split(",")
    ]
    for i, (base, launcher, server) in enumerate(cases):
        result = measure(
            args.workspaces,
            args.minutes,
            args.root / f"{i}-{launcher}-{server}",
            launcher,
            base,
            server,
        )
        print(json.dumps(result), flush=True)
        if args.markdown:
            with args.markdown.open("a") as f:
                f.write(
                    f"| {launcher} | {server} | {result['workspaces']} | "
                    f"{result['cpu_s_per_min_sensor_on']} | "
                    f"{result['cpu_s_per_min_sensor_off']} | {result['cpu_s_per_tick']} |\n"
                )


if __name__ == "__main__":
    main()
