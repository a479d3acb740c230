"""Where one tick's time goes: the command's start-up and the embedded instance's event log.

Runs ``reconcile-pipeline reconcile`` once in this process, on the instance of DAGSTER_HOME and the
app DB of the usual settings, and reports:

- the start-up stages in order: importing Dagster, importing this project's definitions (with
  pandas and the rest), the command before its run starts (instance opened, partitions synced,
  the job planned), the run (start to end, from its record) and what follows it (the summary);
- every connection Dagster's SQLite event log storage opens during the run (each one creates an
  engine, connects, runs its statements, commits and closes), timed and grouped by the shard it
  opens and the calls that opened it. Only an in-process run is seen whole (up to
  RECONCILE_IN_PROCESS_MAX_WORKSPACES); step processes open their own.

Use it next to ``scripts/benchmark.py``: the benchmark says how long a tick takes, this says why.

    DAGSTER_HOME=bench-results/n1000/dagster_home .venv/bin/python scripts/tick_cost.py
"""

import argparse
import collections
import contextlib
import importlib
import io
import json
import sys
import time
import traceback
from collections.abc import Iterator

_calls: collections.Counter[str] = collections.Counter()
_seconds: collections.Counter[str] = collections.Counter()


def _origin(depth: int) -> str:
    """The innermost ``depth`` callers of the connection, innermost first."""
    frames = traceback.extract_stack()[:-4]  # drop this module's own frames
    return " < ".join(f.name for f in reversed(frames[-depth:]))


def _time_connections(depth: int) -> None:
    # Private to Dagster, and only here: a measurement of its storage, not something the
    # product uses.
    from dagster._core.storage.event_log.sqlite import sqlite_event_log as storage

    original = storage.SqliteEventLogStorage._connect

    @contextlib.contextmanager
    def connect(self, shard: str) -> Iterator:
        key = f"{'index' if shard == storage.INDEX_SHARD_NAME else 'run'}: {_origin(depth)}"
        started = time.perf_counter()
        with original(self, shard) as conn:
            yield conn
        _calls[key] += 1
        _seconds[key] += time.perf_counter() - started

    storage.SqliteEventLogStorage._connect = connect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=4, help="callers shown per connection")
    parser.add_argument("--top", type=int, default=15, help="groups shown")
    args = parser.parse_args(argv)

    marks = [("start", time.perf_counter())]
    importlib.import_module("dagster")
    marks.append(("import Dagster", time.perf_counter()))
    importlib.import_module("reconcile_pipeline.definitions")
    marks.append(
        ("import the definitions (pandas, the assets, the resources)", time.perf_counter())
    )
    _time_connections(args.depth)
    import dagster as dg

    from reconcile_pipeline import cli

    with contextlib.redirect_stdout(io.StringIO()) as summary:
        code = cli.main(["reconcile", "--json"])
    ended = time.perf_counter()
    if code:
        print(summary.getvalue(), file=sys.stderr)
        return code
    figures = json.loads(summary.getvalue())
    with dg.DagsterInstance.get() as instance:
        record = instance.get_run_record_by_id(figures["run_id"])
    # The run's record has wall-clock times; this process's marks are monotonic.
    run_s = record.end_time - record.start_time
    after_s = time.time() - record.end_time - (time.perf_counter() - ended)
    before_s = ended - marks[-1][1] - run_s - after_s
    stages = [(name, t - marks[i][1]) for i, (name, t) in enumerate(marks[1:])]
    stages += [
        ("the command before its run starts (instance, partitions synced, job planned)", before_s),
        (
            f"the run, {figures.get('executor_mode')} ({figures.get('workspaces')} workspaces)",
            run_s,
        ),
        ("after the run (its summary read back)", after_s),
    ]
    print("| stage | s |\n|---|---:|")
    for name, seconds in stages:
        print(f"| {name} | {seconds:.2f} |")
    print(f"| whole command, this process | {ended - marks[0][1]:.2f} |\n")

    total_s, total_n = sum(_seconds.values()), sum(_calls.values())
    print(
        f"event-log connections {total_n}, {total_s:.2f} s ({total_s / run_s:.0%} of the run), "
        f"{1000 * total_s / max(total_n, 1):.1f} ms each\n"
    )
    print("| connections | s | ms each | shard: opened by |\n|---:|---:|---:|---|")
    for key, n in _calls.most_common(args.top):
        print(f"| {n} | {_seconds[key]:.2f} | {1000 * _seconds[key] / n:.1f} | {key} |")
    return code


if __name__ == "__main__":
    sys.exit(main())
