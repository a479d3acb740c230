"""Every setting once: the table the resources read, the README's configuration table, and clear
errors for values a setting cannot take."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from reconcile_pipeline import settings
from reconcile_pipeline.defs.resources import default_resources, from_env
from reconcile_pipeline_tests.support.processes import REPO, pipeline_env

README = REPO / "README.md"


def test_the_readme_table_is_the_settings_table():
    text = README.read_text()
    block = re.search(r"<!-- settings:[^>]*-->\n(.*?)\n<!-- /settings -->", text, re.S)
    assert block, "README has no generated settings table"
    assert block.group(1) == settings.markdown_table(), (
        "README's configuration table is out of date: `reconcile-pipeline settings` prints it"
    )


def test_every_setting_the_code_reads_is_in_the_table():
    named = set()
    for path in (REPO / "reconcile_pipeline").rglob("*.py"):
        named |= set(re.findall(r'"(RECONCILE_[A-Z0-9_]+)"', path.read_text()))
    named -= {"RECONCILE_FRAMES_DIR"}  # not a setting any more: nothing may read it
    assert named <= set(settings.SETTINGS), sorted(named - set(settings.SETTINGS))
    for path in (REPO / "reconcile_pipeline").rglob("*.py"):
        assert "RECONCILE_FRAMES_DIR" not in path.read_text(), path


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("RECONCILE_GIT_MAX_SHARDS", "3.7", "must be a whole number, got '3.7'"),
        ("RECONCILE_GIT_MAX_SHARDS", "0", "must be from 1 to 64, got '0'"),
        ("RECONCILE_MAX_PRUNE_FRACTION", "half", "must be a number, got 'half'"),
        ("RECONCILE_MAX_PRUNE_FRACTION", "1.5", "must be from 0 to 1, got '1.5'"),
        ("RECONCILE_SESSION_RUNTIME", "grpc", "must be one of none, file, http, got 'grpc'"),
        ("RECONCILE_EXECUTOR", "ray", "must be one of multiprocess, celery, k8s, got 'ray'"),
        ("RECONCILE_K8S_GIT_STEP_CONFIG", "{nope", "must be JSON"),
        ("RECONCILE_K8S_GIT_STEP_CONFIG", "[1]", "must be a JSON object"),
    ],
)
def test_a_bad_value_is_a_clear_error_naming_the_variable(name, raw, message):
    with pytest.raises(settings.SettingError) as caught:
        settings.value(name, {name: raw})
    assert str(caught.value).startswith(name) and message in str(caught.value)


def test_values_and_defaults():
    assert settings.value("RECONCILE_GIT_MAX_SHARDS", {}) == 3
    assert settings.value("RECONCILE_GIT_MAX_SHARDS", {"RECONCILE_GIT_MAX_SHARDS": " 5 "}) == 5
    assert settings.value("RECONCILE_SESSION_RUNTIME", {}) == "file"  # the demo app's
    assert settings.value("RECONCILE_SESSION_RUNTIME", {"RECONCILE_APP_DB_URL": "x"}) == "none"
    assert settings.value("RECONCILE_EXECUTOR", {"RECONCILE_EXECUTOR": " Celery "}) == "celery"
    assert settings.value("RECONCILE_GIT_TIMEOUT_S", {"RECONCILE_GIT_TIMEOUT_S": "7.5"}) == 7.5


def test_resources_read_set_settings_through_env_vars(monkeypatch):
    monkeypatch.setenv("RECONCILE_GIT_MAX_SHARDS", "5")
    monkeypatch.setenv("RECONCILE_APP_DB_URL", "sqlite:///app.db")
    monkeypatch.setenv("RECONCILE_MAX_PRUNE_FRACTION", "0.25")
    monkeypatch.delenv("RECONCILE_GIT_MIN_SHARD_SIZE", raising=False)
    # (dg.EnvVar.int is an int that names its variable)
    assert from_env("RECONCILE_GIT_MAX_SHARDS").env_var_name == "RECONCILE_GIT_MAX_SHARDS"
    assert isinstance(from_env("RECONCILE_APP_DB_URL"), dg.EnvVar)
    # dg.EnvVar carries text and whole numbers: a fraction is passed as its parsed value.
    assert from_env("RECONCILE_MAX_PRUNE_FRACTION") == 0.25
    assert from_env("RECONCILE_GIT_MIN_SHARD_SIZE") == 25
    resources = default_resources()
    git = resources["git"].process_config_and_initialize()
    assert (git.max_shards, git.min_shard_size) == (5, 25)
    assert resources["policy"].max_prune_fraction == 0.25


def test_a_bad_setting_fails_the_code_location_load_with_its_name(tmp_path: Path):
    env = pipeline_env(tmp_path, RECONCILE_GIT_MAX_SHARDS="3.7")
    proc = subprocess.run(
        [sys.executable, "-c", "import reconcile_pipeline.definitions"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "RECONCILE_GIT_MAX_SHARDS must be a whole number, got '3.7'" in proc.stderr


def test_freshness_policy_of_workspace_snapshot_follows_the_settings():
    import datetime as dt

    from reconcile_pipeline.definitions import defs, freshness_policy
    from reconcile_pipeline.defs.reconciliation.keys import WORKSPACE_SNAPSHOT

    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    policy = specs[WORKSPACE_SNAPSHOT].freshness_policy
    assert policy.warn_window.to_timedelta() == dt.timedelta(minutes=2)
    assert policy.fail_window.to_timedelta() == dt.timedelta(minutes=5)
    assert [k for k, s in specs.items() if s.freshness_policy] == [WORKSPACE_SNAPSHOT]
    custom = freshness_policy(
        {"RECONCILE_FRESHNESS_WARN_MINUTES": "10", "RECONCILE_FRESHNESS_FAIL_MINUTES": "30"}
    )
    assert custom.fail_window.to_timedelta() == dt.timedelta(minutes=30)
    with pytest.raises(settings.SettingError, match="must be less than"):
        freshness_policy(
            {"RECONCILE_FRESHNESS_WARN_MINUTES": "5", "RECONCILE_FRESHNESS_FAIL_MINUTES": "5"}
        )


def test_a_flap_window_that_can_never_fire_is_refused():
    with pytest.raises(settings.SettingError, match="RECONCILE_FLAP_MIN_RUNS \\(12\\) must not"):
        settings.check_all({"RECONCILE_FLAP_MIN_RUNS": "12"})
    settings.check_all({"RECONCILE_FLAP_MIN_RUNS": "10"})
