"""An event write stamped exactly at a run's poll start, on SQLite and PostgreSQL pipeline DBs
(the soak, ``e2e/test_soak.py``, hits it)."""

from __future__ import annotations

import dagster as dg

from reconcile_pipeline.core.store import SnapshotStore
from reconcile_pipeline.defs.reconciliation.partitions import range_tags
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.expected import read_table
from reconcile_pipeline_tests.support.runs import (
    add_partitions,
    before_reconcile,
    check_evaluation,
    reconcile,
    resources,
    run_summary,
    table_text,
    with_hooks,
)


def test_event_stamped_exactly_at_the_poll_start_is_kept_counted_and_never_pruned(
    memory_instance, tmp_path, db_url
):
    """One clock in milliseconds: an event write can carry exactly the run's poll_start_ts (the
    soak hits it). The merge rule keeps such a write (a reconciliation needs a strictly newer
    ts), so the run must treat it as the fresher event it is: not a convergence mismatch, and
    a row it created (a workspace born after the extract read the app DB) is not stale."""
    url = db_url
    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}")
    app.add_project_with_workspaces("pa", 3)
    app.dispose()
    res = resources(app.url, url)
    instance = memory_instance
    add_partitions(instance, ["pa"])
    tags = range_tags(["pa"])
    assert reconcile(instance, res).success
    store = SnapshotStore(url)

    def events_at_the_poll_start() -> None:
        # While the run goes on (its extract done, before its write), the app writes two
        # events stamped with the same clock reading as the run's poll start.
        extract = instance.get_latest_materialization_event(dg.AssetKey("workspace_extract"))
        poll_start = round(extract.asset_materialization.metadata["poll_start"].value * 1000)
        store.upsert("pa-w0", {"name": "renamed at the poll start"}, source="event", ts=poll_start)
        store.upsert(
            "pa-new",
            {"project_id": "pa", "name": "created at the poll start", "status": "PROVISIONING"},
            source="event",
            ts=poll_start,
        )

    before_reconcile(events_at_the_poll_start)
    rest = reconcile(instance, with_hooks(res), tags=tags)
    assert rest.success
    rows = read_table(url)
    assert rows["pa-w0"]["name"] == "renamed at the poll start"  # the merge rule kept it
    assert run_summary(rest)["groups_kept_fresher_event"] == 1
    problems = []
    if "pa-new" not in rows:
        problems.append("the stale cleanup deleted the row an event created at the poll start")
    converged = check_evaluation(rest, "table_matches_authoritative")
    if not converged.passed or converged.metadata["events_won"].value != 1:
        problems.append(
            "table_matches_authoritative reports the kept event as a mismatch: "
            + table_text(converged.metadata["mismatch_sample"]).replace("\n", " ")
        )
    assert not problems, "; ".join(problems)
