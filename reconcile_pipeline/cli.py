"""``reconcile-pipeline`` command line. Subcommands live in :data:`COMMANDS`; add one by writing
a ``configure(parser)`` and a ``run(args) -> exit code`` and registering them there."""

from __future__ import annotations

import argparse
import os
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
        "--schema-generation",
        type=int,
        choices=(1, 2, 3),
        default=3,
        help="the app's schema generation to build the DB in (default 3, the current app)",
    )
    parser.add_argument(
        "--force", action="store_true", help="delete an existing demo at --root first"
    )
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when a demo app is already there"
    )


def _run_demo(args: argparse.Namespace) -> int:
    # Imported here so that `--help` and other subcommands stay fast.
    from reconcile_pipeline.demo.build import DemoError, build_demo_app, demo_session_runtime
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
            generation=args.schema_generation,
            force=args.force,
        )
    except (DemoError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runtime = demo_session_runtime(app, seed=args.seed)
    elapsed = time.perf_counter() - started
    print(f"app DB URL: {app.app_db_url} (schema generation {app.generation})")
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


def _tick(instance, quiet: bool):
    """Plan the tick (core of the sensor's too) and apply its partition sync to ``instance``.
    Returns the TickPlan, or None after printing why not."""
    from reconcile_pipeline import settings
    from reconcile_pipeline.core.db import app_engine, safe_url
    from reconcile_pipeline.defs.reconciliation.partitions import PROJECTS
    from reconcile_pipeline.defs.reconciliation.tick import apply_sync, plan_tick

    url = settings.value("RECONCILE_APP_DB_URL")
    try:  # an unknown schema says what it lacks
        tick = plan_tick(app_engine(url), instance.get_dynamic_partitions(PROJECTS))
    except Exception as exc:
        print(f"error: cannot read projects from {safe_url(url)}: {exc}", file=sys.stderr)
        return None
    apply_sync(instance, tick.sync)
    if not tick.sync.full_range:
        print(f"error: no live projects in {safe_url(url)}", file=sys.stderr)
        return None
    if not quiet:
        print(
            f"{len(tick.sync.keys_after)} project partitions "
            f"(+{len(tick.sync.add)} -{len(tick.sync.delete)})",
            file=sys.stderr,
        )
    return tick


def _run_sync(args: argparse.Namespace) -> int:
    """Make the instance's project partitions equal the app DB's live projects, print the range
    first...last that covers them all (for `dg launch --partition-range`)."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        tick = _tick(instance, args.quiet)
    if tick is None:
        return 2
    print(tick.sync.full_range)
    return 0


def _configure_reconcile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")
    parser.add_argument(
        "--verbose", action="store_true", help="print Dagster's full log of the run as it goes"
    )


def _run_reconcile(args: argparse.Namespace) -> int:
    """Run reconcile_job over every project once, as the sensor would, on the DAGSTER_HOME
    instance, in this process (the run shows in the UI); print short progress and a summary."""
    import json

    import dagster as dg

    from reconcile_pipeline.definitions import reconcile_job_def

    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        tick = _tick(instance, quiet=True)
        if tick is None:
            return 2
        if not args.json:
            print(
                f"reconciling {tick.workspaces} workspaces of {len(tick.sync.keys_after)} projects",
                file=sys.stderr,
            )
        level = "DEBUG" if args.verbose else "CRITICAL" if args.json else "INFO"
        result = dg.execute_job(
            dg.reconstructable(reconcile_job_def),
            instance=instance,
            tags=tick.tags,
            run_config={
                **tick.run_config,
                "loggers": {"console": {"config": {"log_level": level}}},
            },
        )
        summary = run_summary(instance, result.run_id)
    summary["wall_s"] = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(summary_text(summary))
    return 0 if result.success else 1


def run_summary(instance, run_id: str) -> dict:
    """One reconcile run, from the instance's event log: what was materialized, every check
    result, the failed steps, and the run's figures (``RunSummary``, from its observation;
    None when the run ended before it)."""
    import dagster as dg

    from reconcile_pipeline.core.reconcile import RunSummary

    run = instance.get_run_by_id(run_id)
    logs = instance.all_logs(run_id)
    kinds = dg.DagsterEventType
    steps = {e.step_key for e in logs if e.dagster_event_type == kinds.STEP_START}
    figures = None
    built: dict[str, set] = {}
    checks = []
    failures = []
    for event in logs:
        kind = event.dagster_event_type
        if kind == kinds.ASSET_OBSERVATION:
            observation = event.dagster_event.event_specific_data.asset_observation
            figures = RunSummary.from_flat({k: v.value for k, v in observation.metadata.items()})
        elif kind == kinds.ASSET_MATERIALIZATION:
            materialization = event.dagster_event.event_specific_data.materialization
            key = materialization.asset_key.to_user_string()
            built.setdefault(key, set()).add(materialization.partition)
        elif kind == kinds.ASSET_CHECK_EVALUATION:
            evaluation = event.dagster_event.event_specific_data
            checks.append(
                {
                    "check": evaluation.check_name,
                    "passed": evaluation.passed,
                    "severity": evaluation.severity.value,
                    "description": evaluation.description,
                }
            )
        elif kind == kinds.STEP_FAILURE:
            error = event.dagster_event.event_specific_data.error
            reason = error.message.strip().splitlines()[-1] if error else "failed"
            failures.append({"step": event.step_key, "reason": reason})
    return {
        "phases": run_phases(logs),
        "run_id": run_id,
        "status": run.status.value,
        "steps": len(steps),
        "executor_mode": (run.run_config.get("execution") or {}).get("config", {}).get("mode"),
        "event_log_rows": len(logs),
        "built": {key: len(partitions) for key, partitions in built.items()},
        "checks": checks,
        "failed_steps": failures,
        # The run's figures under their observation keys (None when it ended before them).
        **(figures.flat() if figures else dict.fromkeys(RunSummary.keys())),
    }


def summary_text(summary: dict) -> str:
    """The run summary as a person reads it."""
    from reconcile_pipeline.core.reconcile import RunSummary

    lines = [f"run {summary['run_id']}: {summary['status']} in {summary['wall_s']} s"]
    if summary["built"]:
        partitions = max(summary["built"].values())
        lines.append(f"  built:      {', '.join(summary['built'])} ({partitions} projects)")
    if summary["workspaces"] is not None:
        run = RunSummary.from_flat(summary)
        workspaces = f"  workspaces: {run.workspaces}; {run.worktrees} worktrees"
        if run.worktrees:
            workspaces += f", {run.git_coverage:.0%} with git stats"
        lines.append(workspaces)
        lines.append(
            f"  rules:      {run.rule_set} (app DB schema generation {run.schema_generation})"
        )
        removed = f"{run.stale_removed} stale removed"
        if run.prune_blocked:
            removed = "stale removal BLOCKED by the prune guard (nothing removed)"
        lines.append(
            f"  written:    {run.rows_written} rows ({run.rows_inserted} new, "
            f"{run.rows_updated} updated); {run.drift_records} drift records in "
            f"{run.drifted_workspaces} workspaces; {removed}"
        )
    for failure in summary["failed_steps"]:
        lines.append(f"  FAILED step {failure['step']}: {failure['reason']}")
    bad = [c for c in summary["checks"] if not c["passed"]]
    passed = len(summary["checks"]) - len(bad)
    lines.append(f"  checks:     {passed} passed" + (f", {len(bad)} not" if bad else ""))
    for check in bad:
        label = "FAILED" if check["severity"] == "ERROR" else "WARN"
        lines.append(f"    {label} {check['check']}: {check['description']}")
    lines.append(f"  UI:         `make dev`, then http://127.0.0.1:3000/runs/{summary['run_id']}")
    return "\n".join(lines)


def run_phases(logs) -> list[tuple[str, float]]:
    """Where a run's time went, from its event log, in order: the bookkeeping before the first
    step launches, then each step from its launch to its end (mapped steps of one op as one
    phase, from the first launch to the last end), then the whole run."""
    import re

    import dagster as dg

    if not logs:
        return []
    kinds = dg.DagsterEventType
    launches: dict[str, float] = {}
    ends: dict[str, float] = {}
    finished = logs[-1].timestamp
    for e in logs:
        kind = e.dagster_event_type
        if e.step_key is None:
            if kind in (kinds.RUN_SUCCESS, kinds.RUN_FAILURE):
                finished = e.timestamp
            continue
        name = re.sub(r"\[.*\]$", "", e.step_key)
        if kind in (kinds.STEP_WORKER_STARTING, kinds.STEP_START):
            launches.setdefault(name, e.timestamp)
        elif kind in (kinds.STEP_SUCCESS, kinds.STEP_FAILURE):
            ends[name] = e.timestamp
    begun = logs[0].timestamp
    phases = [("before the first step", min(launches.values(), default=finished) - begun)]
    phases += [(name, ends[name] - launches[name]) for name in launches if name in ends]
    phases.append(("whole run", finished - begun))
    return [(name, round(seconds, 2)) for name, seconds in phases]


def _configure_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check", action="store_true", help="parse every setting that is set; exit 2 on a bad one"
    )


def _run_settings(args: argparse.Namespace) -> int:
    """Print the configuration table (the README's), or check the environment's settings."""
    from reconcile_pipeline import settings

    if args.check:
        try:
            settings.check_all()
        except settings.SettingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print("every setting that is set parses")
        return 0
    print(settings.markdown_table())
    return 0


def _configure_suppress(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--workspace", help="the workspace id whose drift to mute")
    scope.add_argument("--project", help="the project id whose drift to mute (every workspace)")
    parser.add_argument("--field", required=True, help="the drifting field, or '*' for every one")
    parser.add_argument("--reason", required=True, help="why this drift is known and accepted")
    parser.add_argument(
        "--for",
        dest="duration",
        required=True,
        help="how long until it expires by itself: e.g. 90m, 12h, 7d",
    )


_UNITS_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _duration_ms(text: str) -> int:
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in _UNITS_MS or not text[:-1].replace(".", "", 1).isdigit():
        raise ValueError(f"a duration is a number and m, h or d (90m, 12h, 7d), got {text!r}")
    return round(float(text[:-1]) * _UNITS_MS[text[-1]])


def _ledger():
    from reconcile_pipeline import settings
    from reconcile_pipeline.core.ledger import DriftLedger

    return DriftLedger(settings.value("RECONCILE_PIPELINE_DB_URL"))


def _run_suppress(args: argparse.Namespace) -> int:
    """Mute a known drift: it stays in the ledger, marked, and leaves the drift rate until it
    expires."""
    import getpass

    from reconcile_pipeline.core import fields as F
    from reconcile_pipeline.core.db import db_now_ms

    if args.field != "*" and args.field not in F.DRIFT_FIELDS:
        print(
            f"error: {args.field!r} is not a drift-compared field: {F.DRIFT_FIELDS}",
            file=sys.stderr,
        )
        return 2
    ledger = _ledger()
    try:
        duration = _duration_ms(args.duration)
        with ledger.engine.connect() as conn:
            expires = db_now_ms(conn) + duration
        suppression = ledger.suppress(
            field=args.field,
            reason=args.reason,
            expires_at=expires,
            workspace_id=args.workspace,
            project_id=args.project,
            created_by=getpass.getuser(),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = args.workspace or f"project {args.project}"
    print(f"suppression {suppression}: {args.field} of {target}, for {args.duration}")
    return 0


def _configure_suppressions(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="expired ones too")


def _run_suppressions(args: argparse.Namespace) -> int:
    """List the drift suppressions in force (or all of them)."""
    from reconcile_pipeline.core.db import db_now_ms
    from reconcile_pipeline.core.values import is_missing

    ledger = _ledger()
    with ledger.engine.connect() as conn:
        now = db_now_ms(conn)
    frame = ledger.suppressions(active_at=None if args.all else now)
    if frame.empty:
        print("no suppressions" + ("" if args.all else " in force"))
        return 0
    for s in frame.itertuples(index=False):
        left = (s.expires_at - now) / 3_600_000
        state = f"expires in {left:.1f} h" if left > 0 else "expired"
        target = f"project {s.project_id}" if is_missing(s.workspace_id) else s.workspace_id
        print(f"{s.id}: {s.field} of {target} ({state}; by {s.created_by or '?'}): {s.reason}")
    return 0


def _configure_unsuppress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=int, help="the suppression's id (see `suppressions`)")


def _run_unsuppress(args: argparse.Namespace) -> int:
    if not _ledger().unsuppress(args.id):
        print(f"error: no suppression {args.id}", file=sys.stderr)
        return 2
    print(f"suppression {args.id} removed")
    return 0


def _configure_changes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--after", type=int, default=0, help="the cursor: the last seq seen")
    parser.add_argument("--limit", type=int, default=100)


def _run_changes(args: argparse.Namespace) -> int:
    """Print the table's changes after a cursor, one per line (seq, kind, workspace, version)."""
    from reconcile_pipeline import settings
    from reconcile_pipeline.core.store import SnapshotStore

    store = SnapshotStore(settings.value("RECONCILE_PIPELINE_DB_URL"))
    for c in store.changes(after=args.after, limit=args.limit):
        print(f"{c.seq}\t{c.kind}\t{c.workspace_id}\tv{c.version}\t{c.project_id}\t{c.source}")
    return 0


# name -> (help, configure, run)
def _configure_dev(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-H", "--host", default="127.0.0.1", help="the UI's address")
    parser.add_argument("-p", "--port", type=int, default=3000, help="the UI's port")


def _run_dev(args: argparse.Namespace) -> int:
    from reconcile_pipeline.dev_stack import serve

    return serve(args.host, args.port)


COMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "demo": (
        "build a demo app: SQLite app DB plus real git repos and worktrees",
        _configure_demo,
        _run_demo,
    ),
    "dev": (
        "the UI and the daemon (sensor on) over one code server, for running the pipeline",
        _configure_dev,
        _run_dev,
    ),
    "sync-partitions": (
        "sync the project partitions with the app DB and print the full partition range",
        _configure_sync,
        _run_sync,
    ),
    "reconcile": (
        "reconcile every project once now (the sensor's run), on the DAGSTER_HOME instance",
        _configure_reconcile,
        _run_reconcile,
    ),
    "settings": (
        "print the configuration table (every setting, its default and meaning)",
        _configure_settings,
        _run_settings,
    ),
    "suppress": (
        "mute a known drift (one workspace or a project, one field) for a while, with a reason",
        _configure_suppress,
        _run_suppress,
    ),
    "suppressions": (
        "list the drift suppressions in force",
        _configure_suppressions,
        _run_suppressions,
    ),
    "unsuppress": ("remove a drift suppression", _configure_unsuppress, _run_unsuppress),
    "changes": (
        "print the snapshot table's changes after a cursor (the change feed)",
        _configure_changes,
        _run_changes,
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
    if not os.environ.get("DAGSTER_HOME"):
        from reconcile_pipeline.paths import dagster_home

        # As everywhere in the project: an unset DAGSTER_HOME means ./dagster_home.
        if not (dagster_home() / "dagster.yaml").is_file() and args.command != "settings":
            print(
                f"error: DAGSTER_HOME is not set and {dagster_home()} has no dagster.yaml; "
                "run from the project directory or set DAGSTER_HOME",
                file=sys.stderr,
            )
            return 2
        os.environ["DAGSTER_HOME"] = str(dagster_home())
    return args._run(args)


def console() -> None:
    """The ``reconcile-pipeline`` command. After ``reconcile`` everything is written and
    committed, and the interpreter's teardown of Dagster's object graph would only cost
    another half second per tick: end the process at once."""
    code = main()
    if sys.argv[1:2] == ["reconcile"]:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console()
