"""The reconciliation stages on typed values (ExtractBatch -> Authoritative -> drift -> table),
against a real store and ledger."""

import json

import pandas as pd
import pytest

from reconcile_pipeline.core.compare import drift_records
from reconcile_pipeline.core.extract import SESSION_COLUMNS, AppExtract, ExtractBatch
from reconcile_pipeline.core.git_shards import STATS_COLUMNS, GitStatsReport
from reconcile_pipeline.core.ledger import SUPPRESSION_COLUMNS, DriftLedger
from reconcile_pipeline.core.reconcile import (
    build_authoritative,
    compare_with_table,
    record_drift,
    stale_ids,
    update_table,
)
from reconcile_pipeline.core.session_runtime import RuntimeRead, RuntimeSnapshot, SessionState
from reconcile_pipeline.core.store import SnapshotStore

POLL_START = 100


def workspaces(n=3, over=None):
    over = over or {}
    rows = []
    for i in range(n):
        row = dict(
            workspace_id=f"w{i}",
            project_id="p1" if i < 2 else "p2",
            project_slug="s",
            default_branch="main",
            worktree_path=None,
            name=f"ws {i}",
            status="READY",
            created_at=1_000 + i,
            branch_name=f"b{i}",
            has_had_sessions=True,
            pr_url=None,
            pr_number=None,
            pr_state="NONE",
            pr_ci_status="UNKNOWN",
            pr_updated_at=None,
            has_merge_conflict=False,
            mode="STANDARD",
            auto_iteration_status=None,
            ratchet_enabled=True,
            ratchet_state="IDLE",
            ratchet_dispatch_outcome=None,
            ratchet_dispatch_retry_count=0,
            ratchet_dispatch_stalled=False,
            run_script_status="IDLE",
            last_activity_at=None,
        )
        row.update(over.get(i, {}))
        rows.append(row)
    frame = pd.DataFrame(rows)
    for c in (
        "created_at",
        "pr_number",
        "pr_updated_at",
        "last_activity_at",
        "ratchet_dispatch_retry_count",
    ):
        frame[c] = frame[c].astype("Int64")
    return frame


NO_PROBLEMS = pd.DataFrame(columns=["workspace_id", "field", "value", "reason"])
NO_SESSIONS = pd.DataFrame(columns=list(SESSION_COLUMNS))


def batch(
    frame=None,
    problems=NO_PROBLEMS,
    sessions=NO_SESSIONS,
    unknown_fields=frozenset(),
    *,
    poll_start=POLL_START,
    generation=3,
    rule_set="2026-08",
):
    frame = workspaces() if frame is None else frame
    projects = tuple(sorted(set(frame["project_id"])))
    extract = AppExtract(frame, sessions, problems, projects, generation, frozenset(unknown_fields))
    return ExtractBatch(
        poll_start_ts=poll_start, projects=projects, extract=extract, rule_set=rule_set
    )


def git_report(ids):
    frame = pd.DataFrame(
        {
            "project_id": "p",
            "workspace_id": ids,
            "git_total": 1,
            "git_additions": 2,
            "git_deletions": 3,
            "git_has_uncommitted": True,
            "git_reason": None,
            "git_base": "main",
            "git_processes": 2,
        }
    )
    return GitStatsReport(frame[list(STATS_COLUMNS)], shards=1)


UNKNOWN_RUNTIME = RuntimeRead(None, "session runtime source is 'none'")


def known_runtime(states: dict[str, SessionState]) -> RuntimeRead:
    return RuntimeRead(RuntimeSnapshot(states), None)


NO_SUPPRESSIONS = pd.DataFrame(columns=list(SUPPRESSION_COLUMNS))


def reconcile_once(store, ledger, auth, run_id="r1", covers_all=True):
    comparison = compare_with_table(store, auth, covers_all=covers_all)
    drift = record_drift(ledger, run_id, auth, comparison, NO_SUPPRESSIONS)
    return drift, update_table(store, auth, comparison, max_prune_fraction=0.5, min_prune_guard=5)


@pytest.fixture
def sqlite_store(tmp_path):
    """A snapshot store on a SQLite file."""
    s = SnapshotStore(f"sqlite:///{tmp_path / 'p.db'}")
    yield s
    s.engine.dispose()


def test_authoritative_marks_session_group_unknown_without_runtime():
    auth = build_authoritative(batch(), UNKNOWN_RUNTIME, git_report(["w0", "w1"]))
    assert not auth.session_known
    session_group = ["is_working", "pending_request_type", "session_summaries"]
    assert set(auth.unknown_fields) == set(session_group)
    assert not auth.known[session_group].to_numpy().any()
    assert auth.known.drop(columns=session_group).to_numpy().all()
    assert auth.unknown_cells.empty  # whole fields, not bad cells
    snaps = auth.snapshots.set_index("workspace_id")
    assert snaps.loc["w0", "git_total"] == 1 and pd.isna(snaps.loc["w2", "git_total"])
    assert snaps.loc["w0", "kanban_column"] == "WAITING"
    assert (auth.poll_start_ts, auth.projects) == (POLL_START, ("p1", "p2"))


def test_unknown_cells_are_never_written_and_an_unchanged_fleet_writes_nothing(
    sqlite_store, tmp_path
):
    store = sqlite_store
    ledger = DriftLedger(store.engine)
    sessions = pd.DataFrame(
        {
            "session_id": ["s0"],
            "workspace_id": ["w0"],
            "kind": ["agent"],
            "status": ["RUNNING"],
            "provider": ["CLAUDE"],
            "created_at": [1],
            "updated_at": [2],
        }
    )
    problems = pd.DataFrame(
        [{"workspace_id": "w1", "field": "status", "value": "WEIRD", "reason": "unknown status"}]
    )
    frame = workspaces(over={1: {"status": pd.NA}})
    runtime = known_runtime({"s0": SessionState(True, "ExitPlanMode")})
    auth = build_authoritative(
        batch(frame, problems, sessions), runtime, git_report(["w0", "w1", "w2"])
    )
    assert auth.unknown_cells[["workspace_id", "field"]].values.tolist() == [["w1", "status"]]
    drift, table = reconcile_once(store, ledger, auth)
    assert drift.records.empty and table.upsert.inserted == 3
    assert store.get("w1")["status"] == "NEW"  # unknown: default kept, never garbage
    assert store.get("w0")["is_working"] is True
    assert store.get("w0")["pending_request_type"] == "plan_approval"
    assert table.convergence.mismatches.empty

    drift, table = reconcile_once(store, ledger, auth, run_id="r2")
    assert (table.upsert.written, table.unchanged) == (0, 3)

    # An event changes one field before the next poll: that workspace alone is sent, as drift.
    store.upsert("w0", {"branch_name": "moved"}, source="event", ts=150)
    later = build_authoritative(
        batch(frame, problems, sessions, poll_start=200), runtime, git_report(["w0", "w1", "w2"])
    )
    drift, table = reconcile_once(store, ledger, later, run_id="r3")
    assert drift.records[["workspace_id", "field"]].values.tolist() == [["w0", "branch_name"]]
    assert (table.upsert.updated_ids, table.unchanged) == (("w0",), 2)
    assert ledger.history(run_id="r3")["field"].tolist() == ["branch_name"]


def test_a_fresher_event_wins_and_convergence_says_so(sqlite_store):
    store = sqlite_store
    ledger = DriftLedger(store.engine)
    auth = build_authoritative(batch(), UNKNOWN_RUNTIME, git_report(["w0", "w1", "w2"]))
    reconcile_once(
        store, ledger, build_authoritative(batch(poll_start=90), UNKNOWN_RUNTIME, git_report([]))
    )
    store.upsert("w0", {"name": "event after poll"}, source="event", ts=150)
    _, table = reconcile_once(store, ledger, auth, run_id="r2")
    won = table.convergence.events_won
    assert won[["workspace_id", "field"]].values.tolist() == [["w0", "name"]]
    assert table.convergence.mismatches.empty
    assert store.get("w0")["name"] == "event after poll"


def test_stale_rows_are_removed_under_the_prune_guard(sqlite_store):
    store = sqlite_store
    ledger = DriftLedger(store.engine)
    reconcile_once(store, ledger, build_authoritative(batch(), UNKNOWN_RUNTIME, git_report([])))
    fewer = build_authoritative(
        batch(workspaces(n=2), poll_start=200), UNKNOWN_RUNTIME, git_report([])
    )
    _, table = reconcile_once(store, ledger, fewer, run_id="r2")
    assert (table.removed, table.removed_projects) == (1, ("p2",))
    assert store.workspace_ids() == {"w0", "w1"} and table.left_stale.empty


@pytest.mark.parametrize(
    ("covered", "expected"),
    [(None, ["gone-p1", "gone-p9"]), (["p1"], ["gone-p1"]), (["p2"], [])],
)
def test_stale_ids_respect_coverage(covered, expected):
    stored = pd.DataFrame(
        {"workspace_id": ["w0", "gone-p1", "gone-p9"], "project_id": ["p1", "p1", "p9"]}
    )
    auth = pd.DataFrame({"workspace_id": ["w0"], "project_id": ["p1"]})
    assert stale_ids(stored, auth, covered) == expected


def test_a_field_the_generation_lacks_is_never_written_and_never_drifts(sqlite_store):
    store = sqlite_store
    """gen 1/2 have no merge-conflict flag: unknown for every row, so an event's value stays and
    is no drift; gen 3 has it: compared and written like any pr field."""
    ledger = DriftLedger(store.engine)
    lacking = build_authoritative(
        batch(
            workspaces(over={0: {"has_merge_conflict": pd.NA}}),
            unknown_fields={"has_merge_conflict"},
            generation=2,
        ),
        UNKNOWN_RUNTIME,
        git_report(["w0"]),
    )
    assert "has_merge_conflict" in lacking.unknown_fields
    reconcile_once(store, ledger, lacking)
    store.upsert("w0", {"has_merge_conflict": True}, source="event", ts=200)
    comparison = compare_with_table(store, lacking, covers_all=True)
    assert drift_records(comparison.diffs).empty and comparison.diffs.diffs.empty

    knowing = build_authoritative(batch(poll_start=300), UNKNOWN_RUNTIME, git_report(["w0"]))
    drift, table = reconcile_once(store, ledger, knowing, run_id="r2")
    assert drift.records[["workspace_id", "field", "group"]].values.tolist() == [
        ["w0", "has_merge_conflict", "pr"]
    ]
    assert store.get("w0")["has_merge_conflict"] is False and table.upsert.updated_ids == ("w0",)


def test_a_new_rule_set_rewrites_the_derived_fields_once(sqlite_store):
    store = sqlite_store
    """Rows derived by the 2026-02 rules move to the run's 2026-08 rules without a raw change:
    rewritten once (a new version, status reason filled in), then left alone."""
    ledger = DriftLedger(store.engine)
    merged = {0: {"pr_url": "u", "pr_state": "MERGED", "status": "NEW"}}
    frame = workspaces(over=merged)
    old = build_authoritative(batch(frame, rule_set="2026-02"), UNKNOWN_RUNTIME, git_report([]))
    reconcile_once(store, ledger, old)
    row = store.get("w0")
    assert (row["rule_set"], row["kanban_column"], row["status_reason_code"]) == (
        "2026-02",
        "WORKING",  # 2026-02: a NEW workspace is WORKING
        None,
    )
    new = build_authoritative(batch(frame, poll_start=200), UNKNOWN_RUNTIME, git_report([]))
    drift, table = reconcile_once(store, ledger, new, run_id="r2")
    assert drift.records.empty  # the rules changed, not the facts
    assert table.rederived == 3 and table.upsert.updated == 3
    assert table.convergence.mismatches.empty
    row = store.get("w0")
    assert (row["rule_set"], row["kanban_column"], row["status_reason_code"]) == (
        "2026-08",
        "DONE",  # 2026-08: a merged PR is done whatever the lifecycle
        "MERGED",
    )
    assert row["version"] == 2 and row["ts_workspace"] == POLL_START  # no group rewritten
    _, table = reconcile_once(store, ledger, new, run_id="r3")
    assert (table.upsert.written, table.rederived) == (0, 0)


def test_a_tampered_derived_column_is_repaired_and_not_drift(sqlite_store):
    store = sqlite_store
    ledger = DriftLedger(store.engine)
    auth = build_authoritative(batch(), UNKNOWN_RUNTIME, git_report([]))
    reconcile_once(store, ledger, auth)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE workspace_snapshot SET kanban_column = 'DONE', "
            "status_reason_code = 'MERGED' WHERE workspace_id = 'w1'"
        )
    drift, table = reconcile_once(store, ledger, auth, run_id="r2")
    assert drift.records.empty and table.rederived == 1
    assert table.upsert.updated_ids == ("w1",)
    row = store.get("w1")
    assert (row["kanban_column"], row["status_reason_code"]) == ("WAITING", "READY_FOR_NEXT_PROMPT")
    assert table.convergence.mismatches.empty


def test_drift_names_the_writer_of_the_stored_value_and_its_likely_cause(sqlite_store):
    store = sqlite_store
    ledger = DriftLedger(store.engine)
    auth = build_authoritative(batch(), UNKNOWN_RUNTIME, git_report([]))
    reconcile_once(store, ledger, auth)
    # w0: an event writer stores a value the source does not hold (a wrong write);
    # w1: the source changes after the last reconciliation, no event says so (a missed event).
    store.upsert("w0", {"branch_name": "wrong"}, source="event-7", ts=POLL_START + 10)
    moved = workspaces(over={1: {"branch_name": "moved"}})
    later = build_authoritative(
        batch(moved, poll_start=POLL_START + 50), UNKNOWN_RUNTIME, git_report([])
    )
    drift, _ = reconcile_once(store, ledger, later, run_id="r2")
    records = drift.records.set_index("workspace_id")
    assert records.loc["w0", "stored_by"] == "event-7"
    assert records.loc["w0", "cause"] == "wrong_write"
    assert records.loc["w0", "stored_at"] == POLL_START + 10
    assert records.loc["w1", "stored_by"] == "reconciliation"
    assert records.loc["w1", "cause"] == "missed_event"
    assert sorted(drift.by_writer) == [
        ["workspace", "event-7", "wrong_write", 1],
        ["workspace", "reconciliation", "missed_event", 1],
    ]
    history = ledger.history(run_id="r2").set_index("workspace_id")
    assert (
        history.loc["w0", "stored_by"] == "event-7" and history.loc["w1", "cause"] == "missed_event"
    )
    runs = ledger.runs().set_index("run_id")
    assert json.loads(runs.loc["r2", "drift_by_writer"])[0][3] == 1


def test_a_field_two_writers_fight_over_is_a_flap(sqlite_store):
    store = sqlite_store
    ledger = DriftLedger(store.engine)
    for run in range(4):
        auth = build_authoritative(
            batch(poll_start=POLL_START + 100 * run), UNKNOWN_RUNTIME, git_report([])
        )
        if run:  # between runs, an event writer keeps writing its own value
            store.upsert(
                "w2", {"name": "the writer's"}, source="event-9", ts=POLL_START + 100 * run - 5
            )
        reconcile_once(store, ledger, auth, run_id=f"r{run}")
    flaps = ledger.flapping(runs=10, min_runs=3)
    assert flaps[["workspace_id", "field", "runs", "writers"]].values.tolist() == [
        ["w2", "name", 3, "event-9"]
    ]
    assert ledger.flapping(runs=2, min_runs=3).empty  # only the last two runs: not enough
    # Muted, its drift no longer makes a flap.
    ledger.suppress(workspace_id="w2", field="name", reason="known", expires_at=2**53)
    for run in range(4, 7):
        store.upsert(
            "w2", {"name": "the writer's"}, source="event-9", ts=POLL_START + 100 * run - 5
        )
        auth = build_authoritative(
            batch(poll_start=POLL_START + 100 * run), UNKNOWN_RUNTIME, git_report([])
        )
        comparison = compare_with_table(store, auth, covers_all=True)
        record_drift(ledger, f"r{run}", auth, comparison, ledger.suppressions(active_at=0))
        update_table(store, auth, comparison, max_prune_fraction=0.5, min_prune_guard=5)
    assert ledger.flapping(runs=3, min_runs=3).empty


def test_a_suppressed_drift_stays_in_the_ledger_marked_and_out_of_the_rate(sqlite_store):
    store = sqlite_store
    ledger = DriftLedger(store.engine)
    auth = build_authoritative(batch(), UNKNOWN_RUNTIME, git_report([]))
    reconcile_once(store, ledger, auth)
    now = store.now_ms()
    muted = ledger.suppress(
        workspace_id="w0", field="name", reason="renamed by hand", expires_at=now + 60_000
    )
    ledger.suppress(project_id="p2", field="*", reason="migrating", expires_at=now + 60_000)
    with pytest.raises(ValueError, match="one workspace or one project"):
        ledger.suppress(field="name", reason="x", expires_at=now + 1)
    with pytest.raises(ValueError, match="expire in the future"):
        ledger.suppress(workspace_id="w0", field="name", reason="x", expires_at=now - 1)
    for w in ("w0", "w1", "w2"):
        store.upsert(w, {"name": "tampered"}, source="event", ts=POLL_START + 1)
    comparison = compare_with_table(store, auth, covers_all=True)
    drift = record_drift(ledger, "r2", auth, comparison, ledger.suppressions(active_at=now))
    marked = drift.records.set_index("workspace_id")["suppression_id"]
    assert marked["w0"] == muted and pd.isna(marked["w1"]) and not pd.isna(marked["w2"])
    assert (drift.drifted_workspaces, drift.suppressed, len(drift.records)) == (1, 2, 3)
    assert drift.rate == 1 / 3 and drift.by_group == {"workspace": 1}  # counts what counts
    history = ledger.history(run_id="r2").set_index("workspace_id")
    assert history.loc["w0", "suppression_id"] == muted
    # Expired, it stops applying by itself.
    assert ledger.suppressions(active_at=now + 120_000).empty
    assert ledger.unsuppress(muted) and not ledger.unsuppress(muted)


def test_a_removal_after_the_poll_start_keeps_the_row_out_and_converges(sqlite_store):
    store = sqlite_store
    ledger = DriftLedger(store.engine)
    reconcile_once(store, ledger, build_authoritative(batch(), UNKNOWN_RUNTIME, git_report([])))
    later = build_authoritative(batch(poll_start=POLL_START + 100), UNKNOWN_RUNTIME, git_report([]))
    store.upsert("w1", {"name": "changed"}, source="event", ts=POLL_START + 50)  # a write to do
    store.remove("w1", source="app-archive", ts=POLL_START + 150)  # archived after the read
    _, table = reconcile_once(store, ledger, later, run_id="r2")
    assert table.upsert.tombstoned == ("w1",) and store.get("w1") is None
    assert table.convergence.mismatches.empty  # a fresher removal, not a lost write


def test_future_dated_groups_name_their_own_writer(sqlite_store):
    store = sqlite_store
    ledger = DriftLedger(store.engine)
    reconcile_once(store, ledger, build_authoritative(batch(), UNKNOWN_RUNTIME, git_report([])))
    store.upsert("w0", {"name": "ahead"}, source="skewed-clock", ts=store.now_ms() + 3_600_000)
    store.upsert("w0", {"pr_url": "u"}, source="another-writer")  # the row's source moves on
    auth = build_authoritative(batch(poll_start=POLL_START + 100), UNKNOWN_RUNTIME, git_report([]))
    _, table = reconcile_once(store, ledger, auth, run_id="r2")
    future = table.future_dated
    assert future[["workspace_id", "group", "source"]].values.tolist() == [
        ["w0", "workspace", "skewed-clock"]
    ]
    assert 3_590_000 < future["ahead_ms"].iloc[0] <= 3_600_000
