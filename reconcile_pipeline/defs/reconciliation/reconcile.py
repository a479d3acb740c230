"""Stage 3, one step: git stats collected, the authoritative snapshot, drift, and the table's
update with its checks (core.reconcile.reconcile_stage). Four assets of the lineage, computed
back to back on the same values: drift is measured on the table before the write."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from reconcile_pipeline import metadata
from reconcile_pipeline.concurrency import WRITE_POOL
from reconcile_pipeline.core.extract import ExtractBatch
from reconcile_pipeline.core.reconcile import reconcile_stage
from reconcile_pipeline.dagster_internals import add_partitions_metadata
from reconcile_pipeline.defs.reconciliation.keys import OUTPUTS
from reconcile_pipeline.defs.reconciliation.partitions import covers_all_projects
from reconcile_pipeline.defs.resources import PipelineDatabase, ReconcilePolicy, SessionRuntime


@dg.op(
    out={name: dg.Out(dg.Nothing) for name in OUTPUTS[1:]},
    pool=WRITE_POOL,
    description=(
        "Collect the git shards, join the authoritative snapshot, record drift against the "
        "table, then upsert at the poll start, remove stale rows and verify."
    ),
)
def reconcile_snapshots(
    context: dg.AssetExecutionContext,
    session_runtime: SessionRuntime,
    pipeline_db: PipelineDatabase,
    policy: ReconcilePolicy,
    batch: ExtractBatch,
    shards: list[pd.DataFrame],
) -> Iterator:
    report = reconcile_stage(
        batch,
        shards,
        session_runtime.read(),
        pipeline_db.store(),
        pipeline_db.ledger(),
        context.run.run_id,
        covers_all=covers_all_projects(context),
        policy=policy.stage(),
    )
    if not report.auth.session_known:
        context.log.warning(report.auth.unknown_fields["is_working"])
    context.log.info(metadata.log_line(report))
    add_partitions_metadata(context, metadata.per_project(report))
    yield from metadata.results(
        report,
        min_git_coverage=policy.min_git_coverage,
        drift_rate_warn=policy.drift_rate_warn,
        pipeline_db=pipeline_db.display_url,
    )
