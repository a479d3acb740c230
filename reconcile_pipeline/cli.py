"""``reconcile-pipeline`` command line. Subcommands live in :data:`COMMANDS`; add one by writing
a ``configure(parser)`` and a ``run(args) -> exit code`` and registering them there."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="directory to build (default: $DAGSTER_HOME/demo_app, where the pipeline looks)",
    )
    parser.add_argument(
        "--workspaces", type=int, default=200, help="Workspace rows, archived included"
    )
    parser.add_argument(
        "--projects", type=int, default=None, help="default: max(2, workspaces // 40)"
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same demo")
    parser.add_argument(
        "--force", action="store_true", help="delete an existing demo at --root first"
    )
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when a demo app is already there"
    )


def _run_demo(args: argparse.Namespace) -> int:
    # Imported here so that `--help` and other subcommands stay fast.
    from reconcile_pipeline.core.demo import DemoError, build_demo_app, demo_session_runtime
    from reconcile_pipeline.paths import demo_root

    root = args.root or demo_root()
    if args.if_missing and (root / "app.db").exists():
        print(f"demo app already at {root}")
        return 0
    started = time.perf_counter()
    try:
        app = build_demo_app(
            root,
            workspaces=args.workspaces,
            projects=args.projects,
            seed=args.seed,
            force=args.force,
        )
    except (DemoError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runtime = demo_session_runtime(app, seed=args.seed)
    elapsed = time.perf_counter() - started
    print(f"app DB URL: {app.app_db_url}")
    print(f"session runtime file: {app.session_runtime_path}")
    print(
        f"projects: {app.projects}  workspaces: {app.workspaces} "
        f"(active {app.active_workspaces}, archived {app.workspaces - app.active_workspaces})  "
        f"worktrees: {app.worktrees}  agent sessions: {app.agent_sessions}  "
        f"terminal sessions: {app.terminal_sessions}  runtime entries: {len(runtime['sessions'])}"
    )
    print(f"built in {elapsed:.1f} s at {app.root}")
    return 0


def _configure_sync(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print only the partition range")


def _run_sync(args: argparse.Namespace) -> int:
    """Make the instance's project partitions equal the app DB's live projects, print the range
    first...last that covers them all (for `dagster asset materialize --partition-range`)."""
    import dagster as dg

    from reconcile_pipeline.core.app_db import list_projects
    from reconcile_pipeline.partitions import PROJECTS, plan_sync
    from reconcile_pipeline.resources import default_resources

    app_db = default_resources()["app_db"]
    try:
        projects = list_projects(app_db.engine())
    except Exception as exc:
        print(f"error: cannot read projects from {app_db.display_url}: {exc}", file=sys.stderr)
        return 2
    live = projects.loc[~projects["is_archived"].astype(bool), "project_id"].astype(str).tolist()
    with dg.DagsterInstance.get() as instance:
        sync = plan_sync(instance.get_dynamic_partitions(PROJECTS), live)
        if sync.delete:
            for key in sync.delete:
                instance.delete_dynamic_partition(PROJECTS, key)
        if sync.add:
            instance.add_dynamic_partitions(PROJECTS, sync.add)
    if not sync.full_range:
        print(f"error: no live projects in {app_db.display_url}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(
            f"{len(sync.keys_after)} project partitions (+{len(sync.add)} -{len(sync.delete)})",
            file=sys.stderr,
        )
    print(sync.full_range)
    return 0


# name -> (help, configure, run)
COMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "demo": (
        "build a demo app: SQLite app DB plus real git repos and worktrees",
        _configure_demo,
        _run_demo,
    ),
    "sync-partitions": (
        "sync the project partitions with the app DB and print the full partition range",
        _configure_sync,
        _run_sync,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconcile-pipeline",
        description="Tools around the workspace snapshot reconciliation pipeline.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, configure, run) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        configure(command)
        command.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args._run(args)


if __name__ == "__main__":
    sys.exit(main())
