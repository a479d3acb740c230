"""Worktrees deleted or corrupted between the extract and git (after the extract read the paths):
the run succeeds, those workspaces get no git stats and a reason each, every other worktree's
stats equal plain git's (``support.faults``).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from reconcile_pipeline.defs.reconciliation.partitions import range_tags
from reconcile_pipeline.demo.build import build_demo_app, demo_session_runtime
from reconcile_pipeline_tests.support.expected import (
    consistency_problems,
    expected_snapshots,
    read_table,
    table_differences,
)
from reconcile_pipeline_tests.support.faults import (
    file_runtime,
    live_projects,
)
from reconcile_pipeline_tests.support.runs import (
    add_partitions,
    before_git,
    check_evaluation,
    check_metadata,
    partitions,
    reconcile,
    resources,
    table_rows,
    with_hooks,
)


def test_worktree_deleted_or_corrupted_between_extract_and_git(memory_instance, tmp_path):
    app = build_demo_app(tmp_path / "demo", workspaces=14, projects=2, seed=21)
    demo_session_runtime(app, seed=21)
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(app.app_db_url, url, session_runtime=file_runtime(app))
    instance = memory_instance
    add_partitions(instance, live_projects(app.app_db_path))
    tags = range_tags(partitions(instance))
    assert reconcile(instance, res).success
    with_stats = {w: r for w, r in read_table(url).items() if r["git_total"] is not None}
    victims = sorted(with_stats)[:3]
    assert len(victims) == 3
    conn = sqlite3.connect(app.app_db_path)
    paths = dict(conn.execute('SELECT "id", "worktreePath" FROM "Workspace"'))
    conn.close()

    def damage() -> None:  # after the extract read the paths, before git runs
        shutil.rmtree(deleted)
        (garbage / ".git").write_bytes(b"\x00\xffthis is not a gitdir line\n" * 3)
        (dangling / ".git").write_text("gitdir: /nonexistent/worktrees/gone\n")

    deleted, garbage, dangling = (Path(paths[w]) for w in victims)
    before_git(damage)
    rest = reconcile(instance, with_hooks(res), tags=tags)
    assert rest.success
    git = check_metadata(check_evaluation(rest, "git_stats_coverage"))
    reasons = {r["workspace_id"]: r["reason"] for r in table_rows(git["null_reasons"])}
    for victim in victims:
        assert victim in reasons, (victim, reasons)
    assert "worktree path is missing" in reasons[victims[0]]
    rows = read_table(url)
    assert consistency_problems(rows) == []
    for victim in victims:
        assert rows[victim]["git_total"] is None and rows[victim]["git_has_uncommitted"] is None
    # Every other worktree still has its stats, equal to plain git's.
    expected = expected_snapshots(app.app_db_path, app.session_runtime_path)
    assert table_differences(rows, expected) == []
    shown = [reasons[v].split(":")[0] for v in victims]
    print(f"\nFAULT worktree_gone_between_steps: run ok; null reasons {shown}")
