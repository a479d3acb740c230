"""The Dagster UI renders the pipeline: headless Chromium (driven over the DevTools protocol on a
pipe) opens the reconciliation asset group's lineage, a reconcile run and the checks of
workspace_snapshot on a real `dagster-webserver`, waits until the React app has rendered the data
(the asset names, the run id, the check names are in the page text), and saves screenshots and DOM
dumps under test-artifacts/screenshots/ (git-ignored) for people to look at.

The runs come from `reconcile-pipeline reconcile` on the same fresh DAGSTER_HOME (embedded
SQLite instance, demo app; three runs, names tampered with before the 2nd and 3rd), so the pages
show real materializations and check results; a second test reads what a user reads at a glance
from the pages (plot data, row counts, project names, the drift history table). Nothing is
installed at test time: Chromium must be at /usr/bin/chromium (`apt-get install -y chromium`);
without it the test fails under CI=true and is skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
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

# Both tests read one module-scoped stack (a webserver after three CLI runs): one worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ui_stack")]

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
STEPS = ["extract_and_plan", "compute_git_shard", "reconcile_snapshots"]
# The UI's first-visit "Join the Dagster community" dialog covers the page on 127.0.0.1.
NUX_TEXT = "Join the Dagster community"
MIN_PNG_BYTES = 20_000
TAMPERED = 3
TAMPER_IDS = "SELECT workspace_id FROM workspace_snapshot ORDER BY workspace_id LIMIT ?"
TAMPER = "UPDATE workspace_snapshot SET name = name || ' (stale)' WHERE workspace_id = ?"
# The data of every chart.js plot on the page, read through the canvas's React props.
PLOTS_JS = """(() => [...document.querySelectorAll('canvas')].map(canvas => {
  const key = Object.keys(canvas).find(k => k.startsWith('__reactFiber$'));
  for (let f = key && canvas[key], i = 0; f && i < 30; i++, f = f.return) {
    const data = f.memoizedProps && f.memoizedProps.data;
    if (data && data.datasets) {
      return data.datasets.map(d => ({label: d.label, ys: d.data.map(p => p.y)}));
    }
  }
  return null;
}).filter(Boolean).flat())()"""
CLICK_JS = """(() => { const found = [...document.querySelectorAll('button')]
  .filter(b => b.innerText.trim() === %s); found.forEach(b => b.click()); return found.length; })()"""


@dataclass
class UiStack:
    stack: Stack
    run_ids: list[str]  # the three runs, oldest first
    location: str
    browser_binary: str
    workdir: Path
    table_rows: int  # SELECT count(*) FROM workspace_snapshot after the runs
    project_rows: dict[str, int]  # project id -> its rows in the table
    project_names: dict[str, str]  # project id -> name, from the app DB

    @property
    def run_id(self) -> str:
        return self.run_ids[-1]


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiStack]:
    tmp_path = tmp_path_factory.mktemp("ui")
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
    # Three runs; before the 2nd and 3rd the table is tampered with (names of TAMPERED rows), so
    # the run-level drift plots 0, TAMPERED, TAMPERED and the drift table has rows.
    drift, run_ids = [], []
    for run in range(3):
        if run:
            with sqlite3.connect(home / "pipeline.db") as conn:
                ids = [r[0] for r in conn.execute(TAMPER_IDS, (TAMPERED,))]
                conn.executemany(TAMPER, [(i,) for i in ids])
        reconcile = run_command([str(BIN / "reconcile-pipeline"), "reconcile", "--json"], env, 600)
        summary = json.loads(reconcile.stdout.strip().splitlines()[-1])
        assert summary["status"] == "SUCCESS", summary
        drift.append(summary["drift_records"])
        run_ids.append(summary["run_id"])
    assert drift == [0, TAMPERED, TAMPERED], drift
    with sqlite3.connect(home / "pipeline.db") as conn:
        (table_rows,) = conn.execute("SELECT count(*) FROM workspace_snapshot").fetchone()
        project_rows = dict(
            conn.execute("SELECT project_id, count(*) FROM workspace_snapshot GROUP BY project_id")
        )
    with sqlite3.connect(home / "demo_app" / "app.db") as conn:
        project_names = dict(conn.execute('SELECT "id", "name" FROM "Project"'))
    print(f"setup (demo, migrate, CLI run): {time.perf_counter() - started:.1f} s")

    stack = Stack(home=home, env=env)
    try:
        stack.start_webserver(tmp_path / "webserver.log")
        stack.wait_for_webserver(WEBSERVER_TIMEOUT_S)
        location = stack.wait_for_location(WEBSERVER_TIMEOUT_S)
        # What the dialog's "Skip" does: remember on the instance that it was seen.
        assert stack.gql("mutation SetNuxSeen { setNuxSeen }")["setNuxSeen"] is True
        yield UiStack(
            stack, run_ids, location, binary, tmp_path, table_rows, project_rows, project_names
        )
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


# The overview's metadata table has a timestamp column between key and value.
UI_TIMESTAMP = re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{1,2}:\d{2} [AP]M$")


def value_after(text: str, label: str, section: str | None = None) -> str:
    """The first non-blank line after ``label`` on its own line (in ``section``, a heading line,
    when given), skipping a timestamp: how the UI lays out a key and its value (metadata rows,
    the Status panel)."""
    lines = [line.strip() for line in text.splitlines()]
    at = lines.index(label, lines.index(section) if section else 0)
    return next(line for line in lines[at + 1 :] if line and not UI_TIMESTAMP.match(line))


def test_ui_tells_the_story_at_a_glance(ui_stack: UiStack) -> None:
    """After three runs (drift in the 2nd and 3rd), what a Dagster user reads on the asset pages:
    - workspace_snapshot's plots (x axis: events) have one point per run for run-level figures
      (drift_records 0, TAMPERED, TAMPERED; rows_unchanged 0, N-TAMPERED, N-TAMPERED), and no
      settings or timestamps drawn as numbers;
    - its overview's Row count is the whole table's (SELECT count(*)), a partition's page shows
      the project's name beside its id and the project's row count;
    - snapshot_drift's checks show the recent runs' drift by project and field, and state the
      threshold; its latest materialization's events show the drift table inline."""
    stack, rows = ui_stack.stack, ui_stack.table_rows
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with chromium(ui_stack.browser_binary, ui_stack.workdir) as browser:
        page = browser.new_page()
        page.goto(stack.url + "/assets/workspace_snapshot")
        text, _ = page.wait_for_text(
            ["workspace_snapshot", "Plots", "Row count", "health", "needs attention"],
            RENDER_TIMEOUT_S,
        )
        page.screenshot(SCREENSHOT_DIR / "workspace_snapshot_overview.png")
        (SCREENSHOT_DIR / "workspace_snapshot_overview.txt").write_text(text)
        assert value_after(text, "Row count") == str(rows), text
        # The overview's metadata leads with the table's health; the 3rd run drifted.
        drifted = f"drift in {TAMPERED} of {rows} workspaces"
        assert value_after(text, "health", "Metadata").startswith(
            "needs attention: drift above 5%"
        ), text
        assert drifted in text and f"{rows} rows" in text, text

        assert page.evaluate(CLICK_JS % json.dumps("Plots")) >= 1
        assert page.evaluate(CLICK_JS % json.dumps("Events")) >= 1  # x axis: one point per event
        deadline = time.monotonic() + RENDER_TIMEOUT_S
        plots: dict = {}
        while time.monotonic() < deadline and "drift_records" not in plots:
            time.sleep(1)
            plots = {
                p["label"]: [y for y in p["ys"] if y is not None] for p in page.evaluate(PLOTS_JS)
            }
        page.screenshot(SCREENSHOT_DIR / "workspace_snapshot_plots.png")
        text = page.text()
        # Each run's figure once, in order: the run summary is one event per run.
        assert plots.get("drift_records") == [0, TAMPERED, TAMPERED], plots.get("drift_records")
        assert plots.get("rows_unchanged") == [0, rows - TAMPERED, rows - TAMPERED], plots
        assert len(plots["git_coverage"]) == 3  # a run-level figure: one point per run
        # Settings and timestamps are text, not plotted numbers.
        assert not {"schema_generation", "rule_set", "poll_start_ts", "threshold"} & set(plots)
        assert "Fails if more than 5 minutes since last materialization" in text

        project = min(ui_stack.project_rows)
        page = browser.new_page()
        page.goto(stack.url + f"/assets/workspace_snapshot?view=partitions&partition={project}")
        text, _ = page.wait_for_text(["dagster/partition_row_count"], RENDER_TIMEOUT_S)
        page.screenshot(SCREENSHOT_DIR / "workspace_snapshot_partition.png")
        assert (
            value_after(text, "project", "Metadata")
            == f"{ui_stack.project_names[project]} ({project})"
        )
        assert value_after(text, "dagster/partition_row_count", "Metadata") == str(
            ui_stack.project_rows[project]
        )

        page = browser.new_page()
        page.goto(stack.url + "/assets/snapshot_drift?view=checks")
        text, _ = page.wait_for_text(
            ["drift_rate_below_threshold", "recent_drift", "warns above 5%"], RENDER_TIMEOUT_S
        )
        page.screenshot(SCREENSHOT_DIR / "snapshot_drift_checks.png")
        tables = page.evaluate("[...document.querySelectorAll('table')].map(t => t.innerText)")
        recent = [t for t in tables if t.startswith("run_id\tpoll_start\tproject")]
        assert len(recent) == 1, tables
        lines = recent[0].splitlines()[1:]
        # Runs 2 and 3 drifted (TAMPERED names each), by project and field; run 1 did not.
        assert {line.split("\t")[0] for line in lines} == set(ui_stack.run_ids[1:]), lines
        assert sum(int(line.split("\t")[-1]) for line in lines) == 2 * TAMPERED, lines
        assert {line.split("\t")[3] for line in lines} == {"name"}, lines
        assert all(
            any(f"{name} ({p})" in line for p, name in ui_stack.project_names.items())
            for line in lines
        ), lines

        page = browser.new_page()
        page.goto(stack.url + "/assets/snapshot_drift?view=events")
        text, _ = page.wait_for_text(
            ["drift", "top_drifted_workspaces", "(stale)"], RENDER_TIMEOUT_S
        )
        page.screenshot(SCREENSHOT_DIR / "snapshot_drift_table.png")
        tables = page.evaluate("[...document.querySelectorAll('table')].map(t => t.innerText)")
        drift_tables = [t for t in tables if "authoritative" in t and "(stale)" in t]
        assert drift_tables, tables
        assert "[Show Markdown]" not in text
