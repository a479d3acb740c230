"""The session runtime down, slow, returning garbage or a broken document (a real local HTTP
server, ``support.runtime_server``), or one bad entry in its file: the session group is left as it
is (unknown is not drift) with the reason in the run's metadata, and everything else is
reconciled; once the runtime is back the session group converges too (``support.faults``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from reconcile_pipeline.core.ledger import DriftLedger
from reconcile_pipeline.core.store import SnapshotStore
from reconcile_pipeline.defs.resources import SessionRuntime
from reconcile_pipeline_tests.support.databases import (
    sql,
)
from reconcile_pipeline_tests.support.expected import (
    consistency_problems,
    expected_snapshots,
    read_table,
)
from reconcile_pipeline_tests.support.faults import (
    assert_converged,
    copy_app,
    file_runtime,
    live_projects,
)
from reconcile_pipeline_tests.support.runs import (
    add_partitions,
    check_evaluation,
    check_metadata,
    metadata_of,
    reconcile,
    resources,
    run_summary,
)
from reconcile_pipeline_tests.support.runtime_server import Reply, RuntimeServer
from reconcile_pipeline_tests.support.soak import group_values

# What the runtime answers in each bad mood ("down": nothing listens on its port any more).
MOODS = {
    "down": Reply(),
    "slow": Reply(delay_s=3.0),
    "garbage": Reply(200, b"<html>\x00\xff not json"),
    "broken_contract": Reply(200, b'{"sessions": [{"s1": {"isWorking": true}}]}'),
    "error_500": Reply(500, b"internal error"),
}


@pytest.mark.parametrize(
    ("mode", "reason_words"),
    [
        ("down", ["failed after 2 attempts", "Connection refused"]),
        ("slow", ["failed after 2 attempts", "timed out"]),
        ("garbage", ["invalid JSON"]),
        ("broken_contract", ["bad session runtime document", "expected an object"]),
        ("error_500", ["failed after 2 attempts", "HTTP 500"]),
    ],
)
def test_session_runtime_unavailable_leaves_the_session_group_alone(
    memory_instance, demo24, tmp_path, mode, reason_words
):
    demo = demo24
    app_path = copy_app(demo, tmp_path)
    app_url = f"sqlite:///{app_path}"
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    good = resources(app_url, url, session_runtime=file_runtime(demo))
    server = RuntimeServer(demo.session_runtime_path.read_bytes()).reply(MOODS[mode])
    if mode == "down":
        server.close()  # nothing listens on that port any more
    try:
        runtime = SessionRuntime(kind="http", location=server.url, timeout_s=0.5, retries=1)
        bad = resources(app_url, url, session_runtime=runtime)
        instance = memory_instance
        add_partitions(instance, live_projects(app_path))
        assert reconcile(instance, good).success
        # Session fields now differ from the truth (an event the runtime would contradict),
        # and the app DB moves on (a change the run must still apply).
        store = SnapshotStore(url)
        ids = sorted(read_table(url))
        for w in ids:
            truth = store.get(w)
            store.upsert(
                w,
                {
                    "is_working": not truth["is_working"],
                    "pending_request_type": "user_question",
                },
                source="event",
            )
        sql(app_path, 'UPDATE "Workspace" SET "branchName" = \'moved/\' || "id"')
        before = read_table(url)

        started = time.monotonic()
        result = reconcile(instance, bad)
        elapsed = time.monotonic() - started
        assert result.success
        auth = metadata_of(result, "authoritative_snapshots")
        assert auth["session_runtime"].startswith("session runtime unknown: "), auth[
            "session_runtime"
        ]
        for word in reason_words:
            assert word in auth["session_runtime"], auth["session_runtime"]
        assert run_summary(result)["unknown_cells"] == 0  # whole fields, not bad cells
        drift = check_metadata(check_evaluation(result, "drift_rate_below_threshold"))
        assert drift["drift_session"] == 0  # unknown is not drift
        assert drift["drift_workspace"] == len(ids)  # the branch move is
        assert check_evaluation(result, "table_matches_authoritative").passed
        after = read_table(url)
        assert consistency_problems(after) == []
        for w in ids:
            # The session group is not written (values and timestamp as before)...
            assert group_values(after[w], "session") == group_values(before[w], "session")
            assert after[w]["ts_session"] == before[w]["ts_session"]
            # ...and everything else is reconciled.
            assert after[w]["branch_name"] == f"moved/{w}"

        # The runtime back: the session group converges too.
        assert reconcile(instance, good).success
        assert_converged(url, expected_snapshots(app_path, demo.session_runtime_path))
    finally:
        if mode != "down":
            server.close()
    print(
        f"\nFAULT session_runtime[{mode}]: run ok in {elapsed:.1f} s; "
        f"session_runtime={auth['session_runtime'][:150]!r}"
    )


def test_a_bad_runtime_entry_is_a_per_row_reason_and_the_rest_is_reconciled(
    memory_instance, demo24, tmp_path
):
    """One broken entry in the runtime document (docs/CONTRACT.md, session runtime): its
    workspace's session group is unknown for the run, with the reason in reconcile_problem; every
    other workspace's session group is still reconciled."""
    demo = demo24
    app_path = copy_app(demo, tmp_path)
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    doc = json.loads(demo.session_runtime_path.read_text())
    victim = sorted(doc["sessions"])[0]
    doc["sessions"][victim]["isWorking"] = "yes"
    bad_path = tmp_path / "runtime.json"
    bad_path.write_text(json.dumps(doc))
    with sqlite3.connect(app_path) as conn:
        (victim_ws,) = conn.execute(
            f'SELECT "workspaceId" FROM "{agent_table(app_path)}" WHERE "id" = ?', (victim,)
        ).fetchone()
    instance = memory_instance
    add_partitions(instance, live_projects(app_path))
    good = resources(f"sqlite:///{app_path}", url, session_runtime=file_runtime(demo))
    assert reconcile(instance, good).success
    store = SnapshotStore(url)
    for w, row in read_table(url).items():  # events the runtime contradicts, everywhere
        store.upsert(w, {"is_working": not row["is_working"]}, source="event")
    before = read_table(url)
    runtime = SessionRuntime(kind="file", location=str(bad_path))
    result = reconcile(instance, resources(f"sqlite:///{app_path}", url, session_runtime=runtime))
    assert result.success
    assert check_evaluation(result, "table_matches_authoritative").passed
    after = read_table(url)
    assert group_values(after[victim_ws], "session") == group_values(before[victim_ws], "session")
    truth = expected_snapshots(app_path, demo.session_runtime_path)
    for w in after:
        if w != victim_ws:
            assert group_values(after[w], "session") == group_values(truth[w], "session"), w
    problems = DriftLedger(url).problems(result.run_id)
    mine = problems[problems["source"] == "session_runtime"]
    assert sorted(mine["field"]) == ["is_working", "pending_request_type", "session_summaries"]
    assert set(mine["workspace_id"]) == {victim_ws}
    assert mine["reason"].str.contains("isWorking must be a bool").all()


def agent_table(app_path: Path) -> str:
    with sqlite3.connect(app_path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    return "AgentSession" if "AgentSession" in tables else "ClaudeSession"
