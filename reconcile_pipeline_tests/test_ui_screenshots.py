"""The Dagster UI renders the pipeline: headless Chromium (driven over the DevTools protocol on a
pipe) opens the reconciliation asset group's lineage, a reconcile run and the checks of
workspace_snapshot on a real `dagster-webserver`, waits until the React app has rendered the data
(the asset names, the run id, the check names are in the page text), and saves screenshots and DOM
dumps under test-artifacts/screenshots/ (git-ignored) for people to look at.

The run comes from `reconcile-pipeline reconcile` on the same fresh DAGSTER_HOME (embedded SQLite
instance, demo app), so the pages show real materializations and check results. Nothing is
installed at test time: Chromium must be at /usr/bin/chromium (`apt-get install -y chromium`);
without it the test fails under CI=true and is skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconcile_pipeline_tests.support.chromium import WINDOW, chromium, colour_stats, find_chromium
from reconcile_pipeline_tests.support.processes import (
    BIN,
    REPO,
    SCREENSHOT_DIR,
    Stack,
    dagster_home,
    pipeline_env,
    run_command,
)

pytestmark = pytest.mark.slow

DEMO_WORKSPACES = 40
WEBSERVER_TIMEOUT_S = 180.0
RENDER_TIMEOUT_S = 90.0
ASSETS = [
    "workspace_extract",
    "git_stats",
    "authoritative_snapshots",
    "snapshot_drift",
    "workspace_snapshot",
]
ERROR_CHECKS = ["no_stale_entries", "table_matches_authoritative"]
# The run's three steps as the run page's timeline names them.
STEPS = ["extract_workspaces", "compute_git_shard", "reconcile_snapshots"]
# The UI's first-visit "Join the Dagster community" dialog covers the page on 127.0.0.1.
NUX_TEXT = "Join the Dagster community"
MIN_PNG_BYTES = 20_000


@dataclass
class UiStack:
    stack: Stack
    run_id: str
    location: str
    browser_binary: str
    workdir: Path


@pytest.fixture
def ui_stack(tmp_path: Path) -> Iterator[UiStack]:
    binary = find_chromium()
    if binary is None:
        message = "Chromium not found at /usr/bin/chromium: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    home = dagster_home(
        tmp_path / "dagster_home", ("dagster", "dagster-webserver", "reconcile-pipeline")
    )
    env = pipeline_env(home)
    started = time.perf_counter()
    run_command(
        [str(BIN / "reconcile-pipeline"), "demo", "--workspaces", str(DEMO_WORKSPACES)], env
    )
    run_command([str(BIN / "dagster"), "instance", "migrate"], env)
    reconcile = run_command([str(BIN / "reconcile-pipeline"), "reconcile", "--json"], env, 600)
    summary = json.loads(reconcile.stdout.strip().splitlines()[-1])
    assert summary["status"] == "SUCCESS", summary
    print(f"setup (demo, migrate, CLI run): {time.perf_counter() - started:.1f} s")

    stack = Stack(home=home, env=env)
    try:
        stack.start_webserver(tmp_path / "webserver.log")
        stack.wait_for_webserver(WEBSERVER_TIMEOUT_S)
        location = stack.wait_for_location(WEBSERVER_TIMEOUT_S)
        # What the dialog's "Skip" does: remember on the instance that it was seen.
        assert stack.gql("mutation SetNuxSeen { setNuxSeen }")["setNuxSeen"] is True
        yield UiStack(stack, summary["run_id"], location, binary, tmp_path)
    finally:
        stack.stop_all()
        print(stack.logs())  # shown by pytest only when the test failed


def test_ui_screenshots_of_lineage_run_and_checks(ui_stack: UiStack) -> None:
    stack, run_id = ui_stack.stack, ui_stack.run_id
    location = urllib.parse.quote(ui_stack.location, safe="")
    pages = [
        # (file stem, path, texts the rendered page must show, texts its DOM must contain)
        (
            "reconcile_lineage",
            f"/locations/{location}/asset-groups/reconciliation/lineage",
            ASSETS,
            ASSETS,
        ),
        (
            "reconcile_run",
            f"/runs/{run_id}",
            [run_id[:8], "RUN_SUCCESS", "Success", *ERROR_CHECKS],
            [run_id, "reconcile_job", *STEPS],
        ),
        (
            "workspace_snapshot_checks",
            "/assets/workspace_snapshot?view=checks",
            ["workspace_snapshot", *ERROR_CHECKS, "Succeeded"],
            ["workspace_snapshot", *ERROR_CHECKS, run_id],
        ),
    ]
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    results = {}
    with chromium(ui_stack.browser_binary, ui_stack.workdir) as browser:
        for stem, path, texts, dom_needles in pages:
            png = SCREENSHOT_DIR / f"{stem}.png"
            html = SCREENSHOT_DIR / f"{stem}.html"
            png.unlink(missing_ok=True)
            page = browser.new_page()
            page.goto(stack.url + path)
            try:
                text, waited = page.wait_for_text(texts, RENDER_TIMEOUT_S)
            except Exception:
                page.screenshot(png)  # what it looked like instead, for the failure report
                html.write_text(page.dom())
                stack.check_alive()
                raise
            data = page.screenshot(png)
            dom = page.dom()
            html.write_text(dom)

            assert NUX_TEXT not in text, f"{stem}: a dialog covers the page"
            missing = [n for n in dom_needles if n not in dom]
            assert not missing, f"{stem}: DOM dump {html} lacks {missing}"
            assert png.is_file() and png.stat().st_size >= MIN_PNG_BYTES, (
                f"{png}: {png.stat().st_size if png.exists() else 'missing'} bytes"
            )
            stats = colour_stats(data)
            assert (stats["width"], stats["height"]) == WINDOW, stats
            # A blank or loading page is one colour (or nearly); a rendered one is not.
            assert stats["colours"] >= 50 and stats["dominant_share"] < 0.95, (stem, stats)
            results[stem] = {
                "file": str(png.relative_to(REPO)),
                "bytes": png.stat().st_size,
                "render_wait_s": round(waited, 1),
                **stats,
            }
    print(f"screenshots: {json.dumps(results, indent=1)}")
