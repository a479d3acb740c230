"""Where one run's event-log time goes on the embedded (SQLite) instance.

Runs ``reconcile-pipeline reconcile`` once in this process, on the instance of DAGSTER_HOME and the
app DB of the usual settings, and times every connection Dagster's SQLite event log storage
opens (each one creates an engine, connects, runs its statements, commits and disposes), grouped
by the shard it opens and the calls that opened it. Use it next to ``scripts/benchmark.py``: the
benchmark says how long a tick takes, this says how much of that is the event log and why.

    DAGSTER_HOME=bench-results/n1000/dagster_home .venv/bin/python scripts/event_log_cost.py
"""

import argparse
import collections
import contextlib
import io
import json
import sys
import time
import traceback
from collections.abc import Iterator

# Private to Dagster, and only here: a measurement of its storage, not something the product uses.
from dagster._core.storage.event_log.sqlite import sqlite_event_log

from reconcile_pipeline import cli

_calls: collections.Counter[str] = collections.Counter()
_seconds: collections.Counter[str] = collections.Counter()
_original_connect = sqlite_event_log.SqliteEventLogStorage._connect


def _origin(depth: int) -> str:
    """The innermost ``depth`` callers of the connection, innermost first."""
    frames = traceback.extract_stack()[:-4]  # drop this module's own frames
    return " < ".join(f.name for f in reversed(frames[-depth:]))


def _timed_connect(depth: int):
    @contextlib.contextmanager
    def connect(self, shard: str) -> Iterator:
        key = (
            f"{'index' if shard == sqlite_event_log.INDEX_SHARD_NAME else 'run'}: {_origin(depth)}"
        )
        started = time.perf_counter()
        with _original_connect(self, shard) as conn:
            yield conn
        _calls[key] += 1
        _seconds[key] += time.perf_counter() - started

    return connect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=4, help="callers shown per connection")
    parser.add_argument("--top", type=int, default=15, help="groups shown")
    args = parser.parse_args(argv)
    sqlite_event_log.SqliteEventLogStorage._connect = _timed_connect(args.depth)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as summary:
        code = cli.main(["reconcile", "--json"])
    wall = time.perf_counter() - started
    if code:
        print(summary.getvalue(), file=sys.stderr)
        return code
    figures = json.loads(summary.getvalue())
    total_s, total_n = sum(_seconds.values()), sum(_calls.values())
    print(
        f"{figures.get('workspaces')} workspaces, run wall {wall:.2f} s (in this process, after imports); event-log connections "
        f"{total_n}, {total_s:.2f} s ({total_s / wall:.0%} of the run), "
        f"{1000 * total_s / max(total_n, 1):.1f} ms each\n"
    )
    print("| connections | s | ms each | shard: opened by |\n|---:|---:|---:|---|")
    for key, n in _calls.most_common(args.top):
        print(f"| {n} | {_seconds[key]:.2f} | {1000 * _seconds[key] / n:.1f} | {key} |")
    return code


if __name__ == "__main__":
    sys.exit(main())
