"""SnapshotStore on real SQLite and real PostgreSQL: the merge rule, validation, batch, removal."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from reconcile_pipeline.core.fields import RAW_FIELDS
from reconcile_pipeline.core.store import COLUMNS, TABLE_NAME, SnapshotStore, workspace_snapshot
from reconcile_pipeline_tests.support.databases import make_engine


def test_first_upsert_starts_from_defaults_and_needs_project(store):
    with pytest.raises(ValueError, match="project_id is required"):
        store.upsert("w1", {"name": "a"}, source="event", ts=10)
    result = store.upsert("w1", {"project_id": "p1", "name": "a"}, source="event", ts=10)
    assert (result.inserted, result.versions) == (1, {"w1": 1})
    row = store.get("w1")
    assert row["status"] == "NEW" and row["pr_state"] == "NONE"
    assert row["pr_ci_status"] == "UNKNOWN" and row["ratchet_state"] == "IDLE"
    assert row["run_script_status"] == "IDLE"
    assert row["is_working"] is False and row["ratchet_enabled"] is False
    assert row["ts_workspace"] == 10 and row["ts_pr"] == 0 and row["ts_session"] == 0
    assert row["source"] == "event" and row["computed_at"] > 0
    # derived fields computed from the defaults
    assert row["kanban_column"] == "WORKING" and row["flow_phase"] == "NO_PR"


SUMMARY = {
    "sessionId": "s1",
    "name": "Plan ✓",
    "workflow": "implement",
    "model": "opus",
    "provider": "CODEX",
    "persistedStatus": "RUNNING",
    "runtimePhase": "running",
    "processState": "alive",
    "activity": "WORKING",
    "updatedAt": "2026-08-01T12:00:00.000Z",
    "lastExit": None,
    "errorMessage": None,
}
SUMMARIES_TEXT = json.dumps([SUMMARY], sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"nope": 1}, "unknown snapshot field 'nope'"),
        ({"status": "DONE"}, "bad value 'DONE' for 'status'"),
        ({"pr_state": None}, "may not be null"),
        ({"pending_request_type": "plan"}, "bad value 'plan'"),
        ({"is_working": "yes"}, "takes a bool"),
        ({"pr_number": "7"}, "takes an int"),
        ({"git_total": -1}, "may not be negative"),
        ({"pr_number": 2**70}, "64-bit"),
        ({"flow_phase": "MERGED"}, "unknown snapshot field"),  # derived: not writable
        ({"status_reason_code": "MERGED"}, "unknown snapshot field"),
        ({"mode": "TURBO"}, "bad value 'TURBO' for 'mode'"),
        ({"ratchet_dispatch_retry_count": -1}, "may not be negative"),
        ({"ratchet_dispatch_stalled": 1}, "takes a bool"),
        ({"session_summaries": "not json"}, "'session_summaries': session summaries are not JSON"),
        ({"session_summaries": [{"sessionId": "s"}]}, "summary lacks 'name'"),
        ({"session_summaries": [{**SUMMARY, "activity": "BUSY"}]}, "'activity' must be one of"),
        ({"session_summaries": [SUMMARY, SUMMARY]}, "summarised twice"),
        ({"session_summaries": None}, "may not be null"),
    ],
)
def test_bad_updates_are_clear_errors_and_write_nothing(store, update, message):
    with pytest.raises(ValueError, match=message):
        store.upsert("w1", {"project_id": "p", **update}, source="event", ts=5)
    assert store.get("w1") is None


def test_group_merge_strictly_newer_wins(store):
    store.upsert("w", {"project_id": "p", "name": "a"}, source="e", ts=100)
    store.upsert("w", {"pr_state": "OPEN"}, source="e", ts=50)
    # older workspace ts: whole group left alone, even fields not previously set
    r = store.upsert("w", {"name": "old", "branch_name": "b"}, source="e", ts=99)
    assert r.stale_groups == (("w", "workspace"),) and r.unchanged == 1
    # equal ts is not newer
    store.upsert("w", {"name": "same-ts"}, source="e", ts=100)
    assert store.get("w")["name"] == "a"
    # newer pr ts, older workspace ts in one update: only pr written
    r = store.upsert("w", {"name": "x", "pr_state": "MERGED", "pr_url": "u"}, source="rec", ts=100)
    assert r.stale_groups == (("w", "workspace"),)
    row = store.get("w")
    assert (row["name"], row["pr_state"], row["pr_url"]) == ("a", "MERGED", "u")
    assert row["ts_pr"] == 100 and row["version"] == 3
    # The store's rules (2026-08): a merged PR is done whatever the lifecycle (status NEW).
    assert row["flow_phase"] == "MERGED" and row["kanban_column"] == "DONE"
    assert row["status_reason_code"] == "MERGED" and row["rule_set"] == "2026-08"


def test_version_bumps_only_on_change(store):
    store.upsert("w", {"project_id": "p", "name": "a"}, source="e", ts=1)
    r = store.upsert_many(
        [{"workspace_id": "w", "name": "a"}], source="rec", ts=2, skip_unchanged=True
    )
    assert (r.updated, r.unchanged, store.get("w")["version"]) == (0, 1, 1)
    assert store.get("w")["ts_workspace"] == 1  # unchanged group: timestamp not advanced
    r = store.upsert("w", {"name": "a"}, source="e", ts=3)  # same value, newer ts: ts moves
    assert store.get("w")["version"] == 2 and store.get("w")["ts_workspace"] == 3
    store.upsert("w", {"name": "b"}, source="e", ts=4)
    assert store.get("w")["version"] == 3


def test_ts_none_uses_database_clock_and_later_write_wins(store):
    before = store.now_ms()
    store.upsert("w", {"project_id": "p", "name": "a"}, source="e")
    store.upsert("w", {"name": "b"}, source="e")
    store.upsert("w", {"name": "c"}, source="e")
    row = store.get("w")
    assert row["name"] == "c" and row["version"] == 3
    assert row["ts_workspace"] >= before
    # a future explicit ts still loses to nothing older...
    store.upsert("w", {"name": "future"}, source="e", ts=row["ts_workspace"] + 10_000_000)
    # ...but a ts=None write after it is stamped past it (it really is later)
    store.upsert("w", {"name": "now"}, source="e")
    assert store.get("w")["name"] == "now"


def test_numpy_and_pandas_values_accepted(store):
    import numpy as np
    import pandas as pd

    store.upsert_many(
        [
            {
                "workspace_id": "w",
                "project_id": "p",
                "git_total": np.int64(3),
                "git_has_uncommitted": np.bool_(True),
                "pr_number": pd.NA,
                "last_activity_at": 5.0,
            }
        ],
        source="rec",
        ts=7,
    )
    row = store.get("w")
    assert row["git_total"] == 3 and row["git_has_uncommitted"] is True
    assert row["pr_number"] is None and row["last_activity_at"] == 5


def test_batch_is_one_transaction(store):
    store.upsert("a", {"project_id": "p", "name": "a"}, source="e", ts=1)
    with pytest.raises(ValueError, match="bad value"):
        store.upsert_many(
            [
                {"workspace_id": "a", "name": "changed"},
                {"workspace_id": "b", "project_id": "p", "status": "WRONG"},
            ],
            source="rec",
            ts=5,
        )
    assert store.get("a")["name"] == "a" and store.get("b") is None
    with pytest.raises(ValueError, match="appears twice"):
        store.upsert_many([{"workspace_id": "a"}, {"workspace_id": "a"}], source="r", ts=5)


def test_large_batch_reads_and_removal(store):
    rows = [
        {
            "workspace_id": f"w{i:05d}",
            "project_id": f"p{i % 3}",
            "name": f"n{i}",
            "git_total": i,
            "is_working": i % 2 == 0,
        }
        for i in range(5000)
    ]
    r = store.upsert_many(rows, source="rec", ts=10)
    assert r.inserted == 5000
    assert store.count() == 5000 and len(store.workspace_ids()) == 5000
    assert len(store.by_project("p1")) == len([i for i in range(5000) if i % 3 == 1])
    frame = store.read_frame()
    assert list(frame.columns) == list(COLUMNS)
    assert frame["git_total"].sum() == sum(range(5000))
    assert str(frame["is_working"].dtype) == "boolean"
    assert len(store.read_frame(["p0"])) == 1667
    # second pass, changed and unchanged mixed
    rows2 = [{**r, "name": r["name"] + ("x" if i % 10 == 0 else "")} for i, r in enumerate(rows)]
    r2 = store.upsert_many(rows2, source="rec", ts=20, skip_unchanged=True)
    assert (r2.updated, r2.unchanged) == (500, 4500)
    assert store.remove("w00000") is True and store.remove("w00000") is False
    assert store.remove_many([f"w{i:05d}" for i in range(1, 3000)] + ["ghost"]) == 2999
    assert store.count() == 2000


def test_remove_many_spares_rows_written_after_poll_start(store):
    store.upsert("old", {"project_id": "p", "name": "o"}, source="e", ts=100)
    store.upsert("fresh", {"project_id": "p", "name": "f"}, source="e", ts=300)
    assert store.remove_many(["old", "fresh"], not_written_after=200) == 1
    assert store.workspace_ids() == {"fresh"}


def test_migrate_adds_missing_columns(db_url):
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {TABLE_NAME} (workspace_id VARCHAR(191) PRIMARY KEY, "
            "project_id VARCHAR(191) NOT NULL, name TEXT)"
        )
        conn.exec_driver_sql(f"INSERT INTO {TABLE_NAME} VALUES ('w', 'p', 'kept')")
    engine.dispose()
    store = SnapshotStore(db_url)
    cols = {c["name"] for c in sa.inspect(store.engine).get_columns(TABLE_NAME)}
    assert set(COLUMNS) <= cols
    assert store.get("w")["name"] == "kept" and store.get("w")["ts_pr"] == 0
    store.upsert("w", {"status": "READY"}, source="e", ts=5)
    assert store.get("w")["status"] == "READY"
    store.engine.dispose()


# Columns added since the releases before: has_merge_conflict, then the app's 2026-08 fields,
# the status reason and the rule set.
ADDED_COLUMNS = {
    "has_merge_conflict",
    "mode",
    "auto_iteration_status",
    "session_summaries",
    "ratchet_dispatch_outcome",
    "ratchet_dispatch_retry_count",
    "ratchet_dispatch_stalled",
    "status_reason_code",
    "status_reason_label",
    "status_reason_tone",
    "status_reason_needs_user",
    "rule_set",
}


def test_migrate_in_place_from_the_previous_release_keeps_every_row(db_url):
    """A workspace_snapshot written by the releases before: the store adds the new columns in
    place (NOT NULL ones with their defaults) and every row, value and version stays; the rows
    read as derived by the 2026-02 rules until a write moves them on."""
    old = sa.MetaData()
    sa.Table(
        TABLE_NAME,
        old,
        *[
            sa.Column(
                c.name,
                c.type,
                primary_key=c.primary_key,
                nullable=c.nullable,
                server_default=c.server_default,
            )
            for c in workspace_snapshot.columns
            if c.name not in ADDED_COLUMNS
        ],
    )
    engine = make_engine(db_url)
    old.create_all(engine)
    rows = [
        {
            "workspace_id": f"w{i}",
            "project_id": "p",
            "name": f"n{i}",
            "status": "READY",
            "version": 3,
            "ts_pr": 7,
            "pr_state": "OPEN",
            "pr_url": "u",
        }
        for i in range(50)
    ]
    with engine.begin() as conn:
        conn.execute(old.tables[TABLE_NAME].insert(), rows)
    engine.dispose()

    store = SnapshotStore(db_url)
    columns = {c["name"]: c for c in sa.inspect(store.engine).get_columns(TABLE_NAME)}
    assert set(COLUMNS) <= set(columns)
    for name in ("has_merge_conflict", "mode", "session_summaries", "ratchet_dispatch_stalled"):
        assert columns[name]["nullable"] is False, name
    frame = store.read_frame()
    assert len(frame) == 50 and set(frame["name"]) == {f"n{i}" for i in range(50)}
    assert set(frame["version"]) == {3} and set(frame["ts_pr"]) == {7}
    assert set(frame["has_merge_conflict"]) == {False}
    assert set(frame["mode"]) == {"STANDARD"} and set(frame["session_summaries"]) == {"[]"}
    assert set(frame["ratchet_dispatch_retry_count"]) == {0}
    assert set(frame["ratchet_dispatch_stalled"]) == {False}
    assert frame["rule_set"].isna().all() and frame["status_reason_code"].isna().all()
    # The new field is written like the others, under its group's merge rule.
    store.upsert("w1", {"has_merge_conflict": True}, source="event", ts=8)
    store.upsert("w2", {"has_merge_conflict": True}, source="event", ts=6)  # older than ts_pr
    assert store.get("w1")["has_merge_conflict"] is True
    assert store.get("w2")["has_merge_conflict"] is False
    # A write that names a rule set moves the row to it: the status reason appears.
    store.upsert("w3", {"mode": "STANDARD"}, source="reconciliation", ts=9, rule_set="2026-08")
    row = store.get("w3")
    # An open PR whose CI was never read: waiting for CI under the 2026-08 rules.
    assert (row["rule_set"], row["status_reason_code"], row["version"]) == (
        "2026-08",
        "WAITING_FOR_CI",
        4,
    )
    SnapshotStore(db_url).engine.dispose()  # migrating again is a no-op
    store.engine.dispose()


@pytest.mark.parametrize(
    ("update", "derived"),
    [
        ({"status": "ARCHIVING", "has_had_sessions": True}, {"kanban_column": None}),
        (
            {"ratchet_state": "MERGE_CONFLICT", "pr_url": "u", "pr_state": "OPEN"},
            {"sidebar_ci_state": "CONFLICT"},
        ),
        ({"pending_request_type": "permission_request"}, {}),
    ],
)
def test_the_apps_new_values_are_accepted(store, update, derived):
    store.upsert("w", {"project_id": "p", **update}, source="event", ts=5)
    row = store.get("w")
    assert {k: row[k] for k in update} == update
    assert {k: row[k] for k in derived} == derived


def test_all_raw_fields_round_trip(store):
    values = {
        "name": "n ✓",
        "status": "READY",
        "created_at": 1_700_000_000_000,
        "branch_name": "b",
        "has_had_sessions": True,
        "pr_url": "u",
        "pr_number": 9,
        "pr_state": "OPEN",
        "pr_ci_status": "SUCCESS",
        "pr_updated_at": 1_700_000_000_001,
        "has_merge_conflict": True,
        "mode": "AUTO_ITERATION",
        "auto_iteration_status": "PAUSED",
        "is_working": True,
        "pending_request_type": "user_question",
        "session_summaries": SUMMARIES_TEXT,
        "ratchet_enabled": True,
        "ratchet_state": "READY",
        "ratchet_dispatch_outcome": "DIED",
        "ratchet_dispatch_retry_count": 2,
        "ratchet_dispatch_stalled": True,
        "run_script_status": "RUNNING",
        "git_total": 4,
        "git_additions": 10,
        "git_deletions": 2,
        "git_has_uncommitted": False,
        "last_activity_at": 1_700_000_000_002,
    }
    assert set(values) == set(RAW_FIELDS)
    store.upsert("w", {"project_id": "p", **values}, source="e", ts=5)
    row = store.get("w")
    assert {k: row[k] for k in values} == values
    assert row["flow_phase"] == "READY" and row["sidebar_ci_state"] == "PASSING"


def test_plain_postgresql_url_is_what_users_write(pg_url):
    assert pg_url.startswith("postgresql://")  # no driver named: the installed one is used
    store = SnapshotStore(pg_url)
    store.upsert("w", {"project_id": "p", "name": "a"}, source="event", ts=1)
    assert store.get("w")["name"] == "a"
    store.engine.dispose()


@pytest.mark.parametrize(
    "value",
    [
        1_767_225_600_123,  # epoch ms
        dt.datetime(2026, 1, 1, 0, 0, 0, 123_000, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 1, 1, 0, 0, 123_000, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        dt.datetime(2026, 1, 1, 0, 0, 0, 123_000),  # naive: UTC
        "2026-01-01T00:00:00.123Z",
        "2026-01-01T00:00:00.123+00:00",  # what the app's own writers send
        "2025-12-31T19:00:00.123-05:00",
        "2026-01-01T00:00:00.123",  # no offset: UTC
    ],
    ids=str,
)
def test_datetime_fields_take_epoch_ms_datetimes_and_iso_text(store, value):
    store.upsert(
        "w",
        {"project_id": "p", "created_at": value, "pr_updated_at": value},
        source="event",
        ts=1,
    )
    store.upsert("w", {"last_activity_at": value}, source="event", ts=1)
    row = store.get("w")
    assert row["created_at"] == row["pr_updated_at"] == row["last_activity_at"] == 1_767_225_600_123


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", True, 1.5j])
def test_bad_datetime_values_are_clear_errors(store, value):
    with pytest.raises(ValueError, match="created_at"):
        store.upsert("w", {"project_id": "p", "created_at": value}, source="event", ts=1)
    assert store.get("w") is None


def test_summaries_are_stored_canonical_and_compared_as_a_set(store):
    other = {**SUMMARY, "sessionId": "s0", "name": None}
    store.upsert("w", {"project_id": "p", "session_summaries": [SUMMARY, other]}, source="e", ts=5)
    text = store.get("w")["session_summaries"]
    assert [s["sessionId"] for s in json.loads(text)] == ["s0", "s1"]
    # The same set in another order, as JSON text: nothing changes.
    r = store.upsert_many(
        [{"workspace_id": "w", "session_summaries": json.dumps([other, SUMMARY])}],
        source="rec",
        ts=6,
        skip_unchanged=True,
    )
    assert r.unchanged == 1 and store.get("w")["version"] == 1


def test_an_unknown_rule_set_is_a_clear_error(store, tmp_path):
    with pytest.raises(ValueError, match="unknown rule set '2027-01'"):
        store.upsert("w", {"project_id": "p"}, source="e", ts=5, rule_set="2027-01")
    with pytest.raises(ValueError, match="unknown rule set"):
        SnapshotStore(f"sqlite:///{tmp_path / 'x.db'}", rule_set="latest")
    assert store.get("w") is None
