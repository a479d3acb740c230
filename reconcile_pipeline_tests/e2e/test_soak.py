"""Soak: event-driven writers and back-to-back reconcile runs on one table, on PostgreSQL and
SQLite pipeline DBs. The product promise under test: the snapshot table converges to the truth
and a fresher event-driven write is never overwritten by an older reconciliation.

- 3 writer processes (multiprocessing spawn) upsert whole field groups of the workspaces of a real
  demo app (real git worktrees, sessions, runtime file) through ``SnapshotStore.upsert`` with
  ``ts = store.now_ms()``, values deliberately different from the app DB, and report every write.
- Meanwhile this process runs real Dagster runs back to back (in-process ``dg.materialize`` on a
  persistent ``instance_for_test`` instance), recording each run's ``poll_start_ts``.
- A reader process samples every row's version and reports any decrease.
- Database triggers log every change of the table (``reliability_support.install_audit``).

Afterwards, per (workspace, group): the stored group timestamp is >= the newest event write's ts
(no event lost), and the stored values are those of the write that holds that timestamp (an
applied event with that ts, else a run whose poll start it is, i.e. the authoritative value).
The audit shows no lost or duplicated version and no group timestamp ever going back. A final run
(no writers) makes the table equal to expectations computed without product code.

``RECONCILE_SOAK_SECONDS`` (default 20) sets the writing time per database.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections import Counter

import dagster as dg
import pytest

from reconcile_pipeline.core.db import app_engine
from reconcile_pipeline.core.extract import list_projects
from reconcile_pipeline.core.fields import GROUPS, RAW_FIELDS
from reconcile_pipeline.core.store import SnapshotStore
from reconcile_pipeline.defs.resources import SessionRuntime
from reconcile_pipeline.demo.build import build_demo_app, demo_session_runtime
from reconcile_pipeline_tests.support.databases import audit_problems, install_audit, read_audit
from reconcile_pipeline_tests.support.expected import (
    consistency_problems,
    expected_snapshots,
    read_table,
    table_differences,
)
from reconcile_pipeline_tests.support.runs import (
    add_partitions,
    check_evaluation,
    poll_start_ms,
    reconcile,
    resources,
    run_summary,
    table_text,
)
from reconcile_pipeline_tests.support.soak import (
    EVENT_GROUPS,
    group_values,
    soak_writer,
    version_reader,
)

SOAK_SECONDS = float(os.environ.get("RECONCILE_SOAK_SECONDS", "20"))
WRITERS = 3
MIN_SOAK_RUNS = 3
MAX_SOAK_SECONDS = 240.0
WRITER_PAUSE_S = 0.03  # each writer sleeps up to this between writes


def _md_rows(markdown: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        for line in markdown.splitlines()
        if line.startswith("| ")
    ]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_events_never_lost_and_table_converges(db_url, tmp_path):
    url = db_url
    app = build_demo_app(tmp_path / "demo", workspaces=28, projects=2, seed=11)
    demo_session_runtime(app, seed=11)
    expected = expected_snapshots(app.app_db_path, app.session_runtime_path)
    truth = {
        w: {f: row[f] for f in RAW_FIELDS} for w, row in expected.items()
    }  # authoritative raw values per active workspace
    projects = list_projects(app_engine(app.app_db_url))["project_id"].tolist()

    SnapshotStore(url).engine.dispose()  # schema, as the pipeline creates it
    install_audit(url)
    res = resources(
        app.app_db_url,
        url,
        session_runtime=SessionRuntime(kind="file", location=str(app.session_runtime_path)),
    )

    runs: list[dict] = []
    with dg.instance_for_test() as instance:
        add_partitions(instance, projects)

        def one_run() -> dg.ExecuteInProcessResult:
            started = time.perf_counter()
            result = reconcile(instance, res)
            snapshot = run_summary(result)
            converged = check_evaluation(result, "table_matches_authoritative")
            runs.append(
                {
                    "success": result.success,
                    "poll_start_ts": poll_start_ms(run_summary(result)),
                    "kept_fresher_event": snapshot["groups_kept_fresher_event"],
                    "rows_written": snapshot["rows_written"],
                    "converged_check_passed": converged.passed,
                    "mismatch_sample": table_text(converged.metadata["mismatch_sample"]),
                    "events_won": converged.metadata["events_won"].value,
                    "mismatches": converged.metadata["mismatches"].value,
                    "seconds": time.perf_counter() - started,
                }
            )
            return result

        one_run()  # seeds the table
        assert read_table(url).keys() == expected.keys()

        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        queue = ctx.Queue()
        procs = [
            ctx.Process(target=soak_writer, args=(url, w, truth, stop, queue, WRITER_PAUSE_S))
            for w in range(WRITERS)
        ]
        procs.append(ctx.Process(target=version_reader, args=(url, stop, queue)))
        for p in procs:
            p.start()
        try:
            # SOAK_SECONDS of writing, and at least MIN_SOAK_RUNS runs beside the writers however
            # slow the machine (up to MAX_SOAK_SECONDS).
            started = time.monotonic()
            while time.monotonic() - started < MAX_SOAK_SECONDS and (
                time.monotonic() - started < SOAK_SECONDS or len(runs) - 1 < MIN_SOAK_RUNS
            ):
                one_run()
        finally:
            stop.set()
            reports = [queue.get(timeout=120) for _ in procs]
            for p in procs:
                p.join(timeout=60)
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]

        writes = []
        reader = None
        for report in reports:
            if report[0] == "writer":
                _, writer, out, error = report
                assert error is None, f"writer {writer}: {error}"
                writes.extend((writer, *w) for w in out)
            else:
                _, samples, decreases, error = report
                assert error is None, f"reader: {error}"
                reader = (samples, decreases)
        assert reader is not None

        rows = read_table(url)
        audit = read_audit(url)
        poll_starts = {r["poll_start_ts"] for r in runs}

        # -- every run succeeded; no row lost or duplicated; rows self-consistent ------------
        assert all(r["success"] for r in runs)
        assert rows.keys() == expected.keys(), "rows lost or added"
        assert consistency_problems(rows) == []
        assert reader[1] == [], f"versions decreased: {reader[1][:5]}"
        assert reader[0] > 10, "the reader took too few samples to mean anything"
        assert audit_problems(audit, rows) == []

        # -- per (workspace, group): nothing lost, stored values explained ------------------
        applied: dict[tuple[str, str, int], dict] = {}
        newest: dict[tuple[str, str], int] = {}
        for _writer, workspace_id, group, ts, values, was_applied, _committed in writes:
            key = (workspace_id, group)
            newest[key] = max(newest.get(key, 0), ts)
            if was_applied:
                assert (workspace_id, group, ts) not in applied, "two writes applied at one ts"
                applied[(workspace_id, group, ts)] = values
        lost, unexplained, wrong = [], [], []
        for workspace_id, row in rows.items():
            for group in GROUPS:
                stored_ts = row[f"ts_{group}"]
                if stored_ts < newest.get((workspace_id, group), 0):
                    lost.append((workspace_id, group, stored_ts, newest[(workspace_id, group)]))
                stored = group_values(row, group)
                if (workspace_id, group, stored_ts) in applied:
                    want = applied[(workspace_id, group, stored_ts)]
                elif stored_ts in poll_starts:
                    want = group_values(expected[workspace_id], group)
                else:
                    unexplained.append((workspace_id, group, stored_ts, row["source"]))
                    continue
                if stored != want:
                    wrong.append((workspace_id, group, stored_ts, stored, want))
        assert lost == [], f"event writes lost (stored ts older than the newest event): {lost[:5]}"
        assert unexplained == [], f"group timestamps no writer wrote: {unexplained[:5]}"
        assert wrong == [], f"stored values are not those of the winning write: {wrong[:3]}"

        # -- the audit trail: every applied event is a version; what overwrote what ---------
        event_ts = {(w, g, ts) for (w, g, ts) in applied}
        seen = set()
        overwritten_by = Counter()
        history: dict[str, list[dict]] = {}
        for entry in audit:
            history.setdefault(entry["workspace_id"], []).append(entry)
        for workspace_id, entries in history.items():
            entries.sort(key=lambda e: e["version"])
            for before, after in zip(entries, entries[1:], strict=False):
                for group in GROUPS:
                    ts_col = f"ts_{group}"
                    if after[ts_col] != before[ts_col]:
                        if after["source"].startswith("event"):
                            seen.add((workspace_id, group, after[ts_col]))
                        if (workspace_id, group, before[ts_col]) in event_ts:
                            kind = (
                                "reconciliation" if after["source"] == "reconciliation" else "event"
                            )
                            overwritten_by[kind] += 1
                            if kind == "reconciliation":
                                # Only a strictly newer poll start may replace an event.
                                assert after[ts_col] > before[ts_col]
        missing = event_ts - seen
        assert missing == set(), f"applied events not in the audit trail: {sorted(missing)[:5]}"

        # -- a failed convergence check during the soak must be explained by an event write:
        # (a) stamped exactly at the run's poll start (the merge rule keeps it, the check calls
        #     it a mismatch: see integration/test_poll_start_events.py), or
        # (b) stamped before the poll start but committed after it (the writer's own latency
        #     between now_ms() and its commit), left in a group the run did not write.
        applied_writes: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for _writer, workspace_id, group, ts, _values, was_applied, committed in writes:
            if was_applied:
                applied_writes.setdefault((workspace_id, group), []).append((ts, committed))
        explained = Counter()
        unexplained_mismatches = []
        for run in runs[1:]:
            if run["converged_check_passed"]:
                continue
            p = run["poll_start_ts"]
            for cells in _md_rows(run["mismatch_sample"])[1:]:
                workspace_id, field, group = cells[:3]
                candidates = applied_writes.get((workspace_id, group), [])
                if any(t == p for t, _ in candidates):
                    explained["event_at_poll_start"] += 1
                elif any(t < p <= c for t, c in candidates):
                    explained["event_committed_after_poll_start"] += 1
                else:
                    unexplained_mismatches.append((p, workspace_id, field, group))
        assert unexplained_mismatches == [], unexplained_mismatches[:5]

        # -- the final run (writers stopped) converges to the truth ---------------------------
        final = one_run()
        final_rows = read_table(url)
        assert table_differences(final_rows, expected) == []
        assert check_evaluation(final, "table_matches_authoritative").passed
        assert runs[-1]["events_won"] == 0 and runs[-1]["mismatches"] == 0

    soak_runs = runs[1:-1]
    figures = {
        "backend": url.split(":", 1)[0],
        "soak_seconds": SOAK_SECONDS,
        "workspaces": len(expected),
        "writer_processes": WRITERS,
        "event_writes": len(writes),
        "event_writes_applied": len(applied),
        "event_writes_stale_at_write": len(writes) - len(applied),
        "reconcile_runs_during_soak": len(soak_runs),
        "run_seconds_mean": round(sum(r["seconds"] for r in soak_runs) / max(1, len(soak_runs)), 2),
        "rows_written_by_runs": sum(r["rows_written"] for r in soak_runs),
        "conflicts_won_by_events": sum(r["kept_fresher_event"] for r in soak_runs),
        "events_overwritten_by_newer_reconciliation": overwritten_by["reconciliation"],
        "events_overwritten_by_newer_event": overwritten_by["event"],
        "events_still_in_table_before_final_run": sum(
            1 for w, row in rows.items() for g in EVENT_GROUPS if (w, g, row[f"ts_{g}"]) in applied
        ),
        "converged_check_failed_during_soak": sum(
            not r["converged_check_passed"] for r in soak_runs
        ),
        "converged_check_mismatched_cells_during_soak": sum(r["mismatches"] for r in soak_runs),
        "mismatches_event_at_poll_start": explained["event_at_poll_start"],
        "mismatches_event_committed_after_poll_start": explained[
            "event_committed_after_poll_start"
        ],
        "audit_versions": len(audit),
        "reader_samples": reader[0],
        "version_decreases": len(reader[1]),
        "lost_events": len(lost),
    }
    print("\nSOAK " + json.dumps(figures, sort_keys=True))
    assert len(soak_runs) >= MIN_SOAK_RUNS, "too few runs overlapped the writers"
    assert len(applied) > 100, "too few event writes to mean anything"
