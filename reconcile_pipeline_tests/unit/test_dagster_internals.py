"""Every private Dagster name the product uses (reconcile_pipeline/dagster_internals.py) exists in
the pinned Dagster and still means what the product relies on: an upgrade that moves or changes
one fails here, by name, before any run does."""

from __future__ import annotations

import logging
import tomllib
from importlib.metadata import version

import dagster as dg

from reconcile_pipeline import dagster_internals as di
from reconcile_pipeline.defs.reconciliation.partitions import range_tags
from reconcile_pipeline_tests.support.paths import REPO

PYPROJECT = REPO / "pyproject.toml"


def test_the_pinned_dagster_is_the_installed_one():
    pins = [d for d in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]]
    assert f"dagster=={version('dagster')}" in pins


def test_every_internal_name_is_importable_and_listed():
    for name in di.__all__:
        assert getattr(di, name) is not None, name
    typing = {"annotations", "dg", "Any", "Mapping"}  # what the module's own signatures use
    public = {n for n in vars(di) if not n.startswith("_")} - typing
    assert public == set(di.__all__)


def test_pool_granularity_has_the_values_pools_py_compares():
    assert {g.name for g in di.PoolGranularity} >= {"OP", "RUN"}


def test_log_record_metadata_reads_what_the_console_logger_prints():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", None, None)
    assert di.has_log_record_metadata(record) is False


def test_kept_event_groups_are_asset_check_and_run_status_events():
    kinds = dg.DagsterEventType
    assert kinds.ASSET_MATERIALIZATION in di.ASSET_EVENTS
    assert kinds.ASSET_OBSERVATION in di.ASSET_EVENTS
    assert kinds.ASSET_CHECK_EVALUATION in di.ASSET_CHECK_EVENTS
    assert kinds.RUN_SUCCESS in di.EVENT_TYPE_TO_PIPELINE_RUN_STATUS
    assert kinds.STEP_START not in di.ASSET_EVENTS


def test_storage_classes_and_tables_are_the_ones_retention_works_on():
    assert issubclass(di.SqliteEventLogStorage, di.SqlEventLogStorage)
    assert "dagster_event_type" in di.SqlEventLogStorageTable.c
    assert "run_id" in di.RunTagsTable.c and "run_id" in di.AssetCheckExecutionsTable.c
    assert di.INDEX_SHARD_NAME == "index"
    assert hasattr(di.SqlRunStorage, "delete_run")


def test_no_other_product_module_imports_dagster_internals():
    root = REPO / "reconcile_pipeline"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "dagster_internals.py" and "dagster._" in p.read_text()
    ]
    assert offenders == []


FRUITS = dg.DynamicPartitionsDefinition(name="fruits")


def _materialize_fruits(
    by_partition: dict[str, dict], keys: list[str]
) -> dg.ExecuteInProcessResult:
    @dg.asset(partitions_def=FRUITS)
    def fruit(context) -> None:  # unannotated: this module's annotations are strings
        di.add_partitions_metadata(context, {context.assets_def.key: by_partition})

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("fruits", ["apple", "banana", "cherry", "damson"])
    return dg.materialize(
        [fruit],
        instance=instance,
        tags=range_tags(keys),
        raise_on_error=False,
    )


def test_partitions_metadata_lands_on_each_partitions_materialization():
    """What ``context.add_asset_metadata`` does for each key (its per-key metadata on that
    partition's materialization only), in one call: reconcile.py and extract.py rely on it."""
    result = _materialize_fruits(
        {"apple": {"project_count": 1}, "cherry": {"project_count": 3}},
        ["apple", "banana", "cherry"],
    )
    assert result.success
    by_partition = {
        m.partition: m.metadata.get("project_count")
        for m in result.asset_materializations_for_node("fruit")
    }
    assert by_partition == {
        "apple": dg.IntMetadataValue(1),
        "banana": None,
        "cherry": dg.IntMetadataValue(3),
    }


def test_partitions_metadata_for_a_partition_the_run_does_not_target_is_an_error():
    result = _materialize_fruits({"damson": {"project_count": 4}}, ["apple", "banana"])
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "['damson'] that are not being targeted" in failure.message
