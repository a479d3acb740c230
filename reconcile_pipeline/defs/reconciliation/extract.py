"""Stage 1: the extract, and the plan of git shards in the same step."""

from collections.abc import Iterator

import dagster as dg
import sqlalchemy as sa

from reconcile_pipeline import metadata
from reconcile_pipeline.core.extract import read_batch
from reconcile_pipeline.core.generations import UnknownSchemaError
from reconcile_pipeline.core.git_shards import plan_shards
from reconcile_pipeline.dagster_internals import add_partitions_metadata
from reconcile_pipeline.defs.reconciliation.keys import WORKSPACE_EXTRACT, output_name
from reconcile_pipeline.defs.resources import (
    AppDatabase,
    GitWorktrees,
    PipelineDatabase,
    ReconcilePolicy,
)
from reconcile_pipeline.executors import runs_in_process
from reconcile_pipeline.pools import ensure_pool_limits


@dg.op(
    out={
        output_name(WORKSPACE_EXTRACT): dg.Out(dg.Nothing),
        "batch": dg.Out(description="The run's ExtractBatch."),
        "shards": dg.DynamicOut(description="The git shards of the run's worktrees."),
    },
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    description=(
        "Take the poll start (pipeline DB clock), read every non-archived workspace of the run's "
        "projects in one statement, and split the worktrees into git shards."
    ),
)
def extract_and_plan(
    context: dg.AssetExecutionContext,
    app_db: AppDatabase,
    pipeline_db: PipelineDatabase,
    git: GitWorktrees,
    policy: ReconcilePolicy,
) -> Iterator:
    ensure_pool_limits(context.instance)  # before any git or write step claims a slot
    # The poll start comes first, from the pipeline DB's clock: every write of the run carries it.
    poll_start_ts = pipeline_db.store().now_ms()
    try:
        batch = read_batch(
            app_db.engine(),
            context.partition_keys,
            poll_start_ts=poll_start_ts,
            rule_set=policy.rule_set,
        )
    except UnknownSchemaError as exc:  # permanent: a retry cannot change the schema
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except (sa.exc.SQLAlchemyError, OSError) as exc:  # say which database; the policy retries
        raise RuntimeError(
            f"cannot read the app DB {app_db.display_url}: {type(exc).__name__}: {exc}"
        ) from exc
    pipeline_db.ledger().record_problems(context.run.run_id, "app_db", batch.problems_by_project())
    add_partitions_metadata(context, {WORKSPACE_EXTRACT: metadata.extract_by_project(batch)})
    yield dg.MaterializeResult(
        asset_key=WORKSPACE_EXTRACT, metadata=metadata.extract_shared(batch, app_db.display_url)
    )
    yield dg.Output(batch, "batch")
    # In process, shards would run one after another, each with the free git slots: one shard
    # does the same git work, 3 worktrees at a time, without the steps (events, slot claims).
    max_shards = 1 if runs_in_process(context.run.run_config) else git.max_shards
    shards = plan_shards(batch.workspaces, max_shards, git.min_shard_size)
    plural = "" if len(shards) == 1 else "s"
    context.log.info(f"{len(batch.workspaces)} workspaces in {len(shards)} git shard{plural}")
    for shard in shards:
        yield dg.DynamicOutput(shard, mapping_key=shard.key, output_name="shards")
