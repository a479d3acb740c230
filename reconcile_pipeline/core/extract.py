"""The one read of the app DB per run: every non-archived workspace with its project and
sessions, in ONE statement, shaped into the canonical :class:`AppExtract` whatever the schema
generation (:mod:`reconcile_pipeline.core.generations`) the database is in.

The pipeline never writes here. The app DB is not trusted: unknown enum values, NULLs in NOT NULL
columns, unparseable DateTimes, out-of-range numbers and non-boolean booleans never raise; the
cell becomes NA and a row in ``AppExtract.problems`` says why, so that the consumer can treat
that cell as unknown instead of writing garbage. A field the database's generation does not have
at all is listed in ``AppExtract.unknown_fields``: unknown for every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from reconcile_pipeline.core import fields as F
from reconcile_pipeline.core.cells import (
    PROBLEM_COLUMNS,
    bool_values,
    empty,
    problem_rows,
    raw_text,
    shape_column,
    text_values,
)
from reconcile_pipeline.core.datetimes import parse_datetime_series
from reconcile_pipeline.core.generations import (
    APP_FIELDS,
    GENERATIONS,
    Generation,
    detect_generation,
    ratchet_state,
)
from reconcile_pipeline.core.rules import AUTO, LEGACY, resolve
from reconcile_pipeline.core.values import is_missing

# The app's fields the extract reads, in the snapshot's column order (core/fields.py is their one
# home): every group the app DB holds (sessions and git stats come from elsewhere), then the
# last activity the extract computes.
WORKSPACE_COLUMNS: tuple[str, ...] = (
    "workspace_id",
    "project_id",
    "project_slug",
    "project_name",
    "default_branch",
    "worktree_path",
    *(f for g in ("workspace", "pr", "ratchet", "run_script") for f in F.GROUPS[g]),
    "last_activity_at",
)
SESSION_COLUMNS: tuple[str, ...] = (
    "session_id",
    "workspace_id",
    "kind",
    "status",
    "provider",
    "name",
    "workflow",
    "model",
    "created_at",
    "updated_at",
)
PROJECT_COLUMNS: tuple[str, ...] = (
    "project_id",
    "slug",
    "name",
    "is_archived",
    "default_branch",
    "workspaces",
)
_KIND_DTYPES = {"text": "string", "bool": "boolean", "datetime": "Int64", "count": "Int64"}
# Column -> pandas dtype, over every generation's columns (enums are "string").
_CANONICAL_DTYPES = {
    c.name: _KIND_DTYPES.get(c.kind, "string") if isinstance(c.kind, str) else "string"
    for g in GENERATIONS
    for c in (*g.columns, *(c for places in g.optional for c in places))
} | {"ratchet_state": "string", "last_activity_at": "Int64"}


@dataclass(frozen=True)
class AppExtract:
    """One consistent read of the app DB. See the module docstring for the problem contract.

    - ``workspaces``: one row per non-archived workspace of a non-archived project, columns
      :data:`WORKSPACE_COLUMNS`; text/enum columns ``string``, timestamps and ``pr_number``
      ``Int64`` (epoch ms UTC), booleans ``boolean``; NA = NULL, a problem cell, or a field of
      ``unknown_fields``.
    - ``sessions``: agent and terminal sessions of those workspaces, columns
      :data:`SESSION_COLUMNS`; ``provider`` (CLAUDE or CODEX) is NA before gen 2.
    - ``problems``: one row per bad cell (``workspace_id``, ``field`` = workspaces column,
      ``value`` = raw value as str, ``'NULL'`` for NULL, ``reason``); that cell is NA. Two
      row-level fields are not cells: ``workspace_id`` (duplicate id, first row kept) and
      ``project_is_archived`` (unreadable Project.isArchived, workspace kept).
    - ``unknown_fields``: snapshot fields the database's generation does not have.
    """

    workspaces: pd.DataFrame
    sessions: pd.DataFrame
    problems: pd.DataFrame
    live_projects: tuple[str, ...] = ()  # ids of every non-archived project in the app DB
    generation: int = 0
    unknown_fields: frozenset[str] = frozenset()


def _table(name: str, columns: Sequence[str]) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in dict.fromkeys(columns)))


def _tables(generation: Generation) -> dict[str, sa.TableClause]:
    return {name: _table(name, columns) for name, columns in generation.requires.items()}


def _row_flag(table: str) -> str:
    return f"_row_{table}"


def build_extract_statement(
    generation: Generation, project_ids: Sequence[str] | None = None
) -> sa.CompoundSelect:
    """The single statement of :func:`extract_workspaces` for ``generation``.

    Workspace rows and session rows come back as one UNION ALL (column ``row_kind`` tells them
    apart) instead of a join, so a workspace with many sessions is not repeated and genuinely
    duplicated Workspace ids stay visible. Sessions are restricted with a semi-join on the
    selected workspaces, so they are never duplicated either. Gen 3's side tables are LEFT
    JOINed (a 1:1 row that may be missing), with a flag per table saying whether the row exists.
    """
    t = _tables(generation)
    workspace, project = t["Workspace"], t["Project"]
    archived = sa.bindparam("archived_status", "ARCHIVED")
    where = [
        sa.or_(workspace.c.status.is_(None), workspace.c.status != archived),
        sa.or_(
            project.c.isArchived.is_(None),
            project.c.isArchived != sa.bindparam("archived_true", True),
        ),
    ]
    if project_ids is not None:
        where.append(
            workspace.c.projectId.in_(
                sa.bindparam("project_ids", list(project_ids), expanding=True)
            )
        )
    joined = workspace.join(project, project.c.id == workspace.c.projectId)
    for side in generation.side_tables:
        joined = joined.outerjoin(t[side], t[side].c.workspaceId == workspace.c.id)
    selected = {c.name: t[c.table].c[c.column] for c in generation.columns}
    selected["project_is_archived"] = project.c.isArchived
    selected.update({_row_flag(s): t[s].c.workspaceId for s in generation.side_tables})
    names = list(selected)
    ws = (
        sa.select(
            sa.bindparam("kind_workspace", "workspace").label("row_kind"),
            *(column.label(name) for name, column in selected.items()),
        )
        .select_from(joined)
        .where(*where)
        .cte("ws")
    )
    # The session NULLs belong in the outer SELECT, not the CTE: PostgreSQL types an untyped
    # NULL in a CTE as text, which then cannot UNION with the sessions' TIMESTAMP columns.
    branches = [sa.select(ws, *(sa.null().label(name) for name in _SESSION_SELECT))]
    for kind, table_name in (("agent", generation.agent_session_table), ("terminal", None)):
        table = t[table_name or "TerminalSession"]
        provider = table.c.provider if kind == "agent" and generation.has_provider else sa.null()
        branches.append(
            sa.select(
                sa.bindparam(f"kind_{kind}", kind).label("row_kind"),
                table.c.workspaceId.label("workspace_id"),
                *(sa.null().label(name) for name in names[1:]),
                table.c.id.label("session_id"),
                table.c.status.label("session_status"),
                provider.label("session_provider"),
                table.c.name.label("session_name"),
                (table.c.workflow if kind == "agent" else sa.null()).label("session_workflow"),
                (table.c.model if kind == "agent" else sa.null()).label("session_model"),
                table.c.createdAt.label("session_created_at"),
                table.c.updatedAt.label("session_updated_at"),
            ).where(table.c.workspaceId.in_(sa.select(ws.c.workspace_id)))
        )
    # Every project's id and archived flag (all projects, whatever the filter): stale cleanup
    # must know which projects are still live without a second query.
    branches.append(
        sa.select(
            sa.bindparam("kind_project", "project").label("row_kind"),
            *(
                project.c.id.label(name)
                if name == "project_id"
                else project.c.isArchived.label(name)
                if name == "project_is_archived"
                else sa.null().label(name)
                for name in names
            ),
            *(sa.null().label(name) for name in _SESSION_SELECT),
        )
    )
    return sa.union_all(*branches)


_SESSION_SELECT = (
    "session_id",
    "session_status",
    "session_provider",
    "session_name",
    "session_workflow",
    "session_model",
    "session_created_at",
    "session_updated_at",
)


def extract_workspaces(
    engine: sa.Engine,
    project_ids: Sequence[str] | None = None,
    *,
    generation: Generation | None = None,
) -> AppExtract:
    """Read all non-archived workspaces (of ``project_ids``, all projects when None) with their
    project and sessions in ONE statement, and shape them into an :class:`AppExtract`.

    ``generation`` is detected from the database when not given (an
    :class:`~reconcile_pipeline.core.generations.UnknownSchemaError` when it matches none).
    """
    if isinstance(project_ids, str):
        raise TypeError("project_ids must be a sequence of ids, not one string")
    generation = generation or detect_generation(engine)
    statement = build_extract_statement(generation, project_ids)
    with engine.connect() as conn:
        result = conn.execute(statement)
        columns = list(result.keys())
        rows = result.fetchall()
    # object dtype keeps the raw driver values (ints, text, datetimes) for validation.
    raw = pd.DataFrame([tuple(r) for r in rows], columns=columns, dtype=object)
    ws_raw = raw[raw["row_kind"] == "workspace"].reset_index(drop=True)
    sess_raw = raw[raw["row_kind"].isin(["agent", "terminal"])].reset_index(drop=True)
    project_raw = raw[raw["row_kind"] == "project"]
    # Anything but a clear "archived" counts as live, as for the workspaces above.
    archived, _bad = bool_values(project_raw["project_is_archived"])
    live_projects = sorted(
        project_raw.loc[~archived.fillna(False).astype(bool).to_numpy(), "project_id"].astype(str)
    )
    problems: list[pd.DataFrame] = []
    workspaces = _shape_workspaces(ws_raw, generation, problems)
    sessions = _shape_sessions(sess_raw)
    sources = {"agent": generation.agent_session_table, "terminal": "TerminalSession"}
    workspaces = _add_last_activity(workspaces, sessions, sess_raw, sources, problems)
    problem_frame = (
        pd.concat(problems, ignore_index=True) if problems else empty(PROBLEM_COLUMNS)
    ).astype("string")
    return AppExtract(
        workspaces=workspaces.sort_values("workspace_id", kind="stable").reset_index(drop=True),
        sessions=sessions.sort_values(
            ["workspace_id", "kind", "session_id"], kind="stable"
        ).reset_index(drop=True),
        problems=problem_frame.reset_index(drop=True),
        live_projects=tuple(live_projects),
        generation=generation.number,
        unknown_fields=frozenset(APP_FIELDS) - generation.snapshot_fields,
    )


def list_projects(engine: sa.Engine) -> pd.DataFrame:
    """All projects (archived too), one statement: project_id, slug, name, is_archived,
    default_branch, and ``workspaces``: how many non-archived workspaces each has (the fleet
    size a run will read). The Project table is the same in every generation, but a database in
    none of them could not be reconciled: its schema is checked first (an UnknownSchemaError
    that names what it lacks), so whoever plans runs from the projects never plans a doomed one."""
    detect_generation(engine)
    project = _table("Project", ["id", "slug", "name", "isArchived", "defaultBranch"])
    workspace = _table("Workspace", ["projectId", "status"])
    live = sa.or_(workspace.c.status.is_(None), workspace.c.status != sa.bindparam("a", "ARCHIVED"))
    counts = (
        sa.select(workspace.c.projectId.label("project_id"), sa.func.count().label("n"))
        .where(live)
        .group_by(workspace.c.projectId)
        .subquery()
    )
    statement = (
        sa.select(
            project.c.id.label("project_id"),
            project.c.slug.label("slug"),
            project.c.name.label("name"),
            project.c.isArchived.label("is_archived"),
            project.c.defaultBranch.label("default_branch"),
            sa.func.coalesce(counts.c.n, 0).label("workspaces"),
        )
        .select_from(project.outerjoin(counts, counts.c.project_id == project.c.id))
        .order_by(project.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(statement).fetchall()
    raw = pd.DataFrame([tuple(r) for r in rows], columns=list(PROJECT_COLUMNS), dtype=object)
    out = pd.DataFrame(index=raw.index)
    for col in ("project_id", "slug", "name", "default_branch"):
        out[col] = text_values(raw[col])[0]
    out["is_archived"] = bool_values(raw["is_archived"])[0]
    out["workspaces"] = pd.to_numeric(raw["workspaces"]).astype("int64")
    return out[list(PROJECT_COLUMNS)]


# ---- shaping ---------------------------------------------------------------------------------


def _shape_workspaces(
    ws_raw: pd.DataFrame, generation: Generation, problems: list[pd.DataFrame]
) -> pd.DataFrame:
    def add(frame: pd.DataFrame | None) -> None:
        if frame is not None:
            problems.append(frame)

    # Project archived flag stored as non-0/1 (e.g. 'true' text on SQLite): SQL could not
    # filter it, so finish the filter here; an unreadable flag keeps the workspace (reported).
    is_archived, bad_archived = bool_values(ws_raw["project_is_archived"])
    ws_raw = ws_raw[~is_archived.fillna(False).to_numpy(bool)].reset_index(drop=True)
    bad_archived = bad_archived[~is_archived.fillna(False).to_numpy(bool)]
    ids = ws_raw["workspace_id"]
    add(
        problem_rows(
            ids,
            ws_raw["project_is_archived"],
            bad_archived,
            "project_is_archived",
            lambda v: f"non-boolean Project.isArchived {v!r}; treated as not archived",
        )
    )

    # A row without an id cannot be addressed by the consumer: report it and drop it.
    null_id = ids.isna().to_numpy()
    add(problem_rows(ids, ids, null_id, "workspace_id", "NULL Workspace.id; row skipped"))
    ws_raw = ws_raw[~null_id].reset_index(drop=True)
    ids = ws_raw["workspace_id"]

    duplicated = ids.duplicated(keep="first").to_numpy()
    # One reason per duplicated id, however many copies (a join can multiply them).
    reported = duplicated & ~ids.where(duplicated).duplicated(keep="first").to_numpy()
    add(
        problem_rows(
            ids,
            ids,
            reported,
            "workspace_id",
            lambda v: f"duplicate Workspace.id {v!r}; kept the first row",
        )
    )
    ws_raw = ws_raw[~duplicated].reset_index(drop=True)
    ids = ws_raw["workspace_id"]

    out = pd.DataFrame(index=ws_raw.index)
    for column in generation.columns:
        if column.table in generation.side_tables:
            # An optional 1:1 row: where it is missing, the app's defaults apply.
            present = ws_raw[_row_flag(column.table)].notna().to_numpy()
        else:
            present = np.ones(len(ws_raw), dtype=bool)
        out[column.name] = shape_column(ids, ws_raw[column.name], column, present, add)
    for name in WORKSPACE_COLUMNS:
        if name not in out:  # a field this generation does not have: unknown everywhere
            out[name] = pd.array([None] * len(out), dtype=_CANONICAL_DTYPES[name])
    if generation.derives_ratchet_state:
        out["ratchet_state"] = _derived_ratchet_state(out, ids, problems)
    return out[list(WORKSPACE_COLUMNS)]


# The inputs of gen 3's projected ratchet state (the app's rule, generations.ratchet_state).
_RATCHET_INPUTS = ("ratchet_enabled", "pr_state", "pr_ci_status", "has_merge_conflict")


def _derived_ratchet_state(
    out: pd.DataFrame, ids: pd.Series, problems: list[pd.DataFrame]
) -> pd.Series:
    """ratchet_state projected from each row's PR observation; unknown (NA plus a problem row)
    where an input is unreadable, since the true state might then be any."""
    review = out.get("pr_review_state")
    bad_inputs = {
        str(w)
        for frame in problems
        for w, f in zip(frame["workspace_id"], frame["field"], strict=True)
        if f in (*_RATCHET_INPUTS, "pr_review_state")
    }
    columns = [out[name].astype(object).to_numpy() for name in _RATCHET_INPUTS]
    reviews = review.astype(object).to_numpy() if review is not None else np.full(len(out), None)
    states: list[str | None] = []
    unknown: list[bool] = []
    for workspace_id, enabled, pr_state, ci, conflict, review_state in zip(
        ids, *columns, reviews, strict=True
    ):
        if str(workspace_id) in bad_inputs or any(
            is_missing(v) for v in (enabled, pr_state, ci, conflict)
        ):
            states.append(None)
            unknown.append(True)
            continue
        states.append(
            ratchet_state(
                enabled=bool(enabled),
                pr_state=pr_state,
                pr_ci_status=ci,
                has_merge_conflict=bool(conflict),
                review_state=None if is_missing(review_state) else review_state,
            )
        )
        unknown.append(False)
    mask = np.array(unknown, dtype=bool)
    if mask.any():
        problems.append(
            pd.DataFrame(
                {
                    "workspace_id": ids[mask].map(raw_text).to_numpy(),
                    "field": "ratchet_state",
                    "value": "NULL",
                    "reason": "ratchetState cannot be derived: an input of the PR observation "
                    "is unreadable",
                }
            )
        )
    return pd.Series(pd.array(states, dtype="string"), index=out.index)


def _shape_sessions(sess_raw: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=sess_raw.index)
    out["session_id"] = text_values(sess_raw["session_id"])[0]
    out["workspace_id"] = text_values(sess_raw["workspace_id"])[0]
    out["kind"] = pd.array(sess_raw["row_kind"].astype(str).to_numpy(), dtype="string")
    out["status"] = text_values(sess_raw["session_status"])[0]
    out["provider"] = text_values(sess_raw["session_provider"])[0]
    for column in ("name", "workflow", "model"):
        out[column] = text_values(sess_raw[f"session_{column}"])[0]
    # Session createdAt is informational (not part of the snapshot): NA when unparseable.
    out["created_at"] = parse_datetime_series(sess_raw["session_created_at"])[0]
    out["updated_at"] = parse_datetime_series(sess_raw["session_updated_at"])[0]
    return out[list(SESSION_COLUMNS)]


def _add_last_activity(
    workspaces: pd.DataFrame,
    sessions: pd.DataFrame,
    sess_raw: pd.DataFrame,
    sources: dict[str, str],
    problems: list[pd.DataFrame],
) -> pd.DataFrame:
    """last_activity_at = latest session updatedAt; unknown (NA + problem) if any session of
    the workspace has an unreadable updatedAt, since the true maximum might be that one."""
    if sessions.empty:
        return workspaces
    unreadable = sessions["updated_at"].isna().to_numpy()
    if unreadable.any():
        raw = sess_raw["session_updated_at"]
        kinds = sess_raw["row_kind"].map(sources)
        sids = sess_raw["session_id"].map(raw_text)
        frame = pd.DataFrame(
            {
                "workspace_id": sessions["workspace_id"][unreadable].astype(object).to_numpy(),
                "field": "last_activity_at",
                "value": raw[unreadable].map(raw_text).to_numpy(),
                "reason": [
                    f"{'NULL' if pd.isna(v) else 'unparseable'} {k}.updatedAt {v!r} of session {s!r}"
                    for v, k, s in zip(
                        raw[unreadable], kinds[unreadable], sids[unreadable], strict=True
                    )
                ],
            }
        )
        problems.append(frame)
    latest = sessions.groupby("workspace_id", sort=False)["updated_at"].max()
    tainted = set(sessions["workspace_id"][unreadable].dropna())
    mapped = workspaces["workspace_id"].map(latest).astype("Int64")
    mapped[workspaces["workspace_id"].isin(tainted).to_numpy()] = pd.NA
    workspaces = workspaces.copy()
    workspaces["last_activity_at"] = mapped
    return workspaces


@dataclass(frozen=True)
class ExtractBatch:
    """The extract stage's value: one run's read of the app DB, passed whole to the next stages.

    It belongs to exactly one run. Its poll start was taken from the pipeline DB's clock before
    the read, and every write it leads to is stamped with it, so an event written meanwhile stays
    newer. The chain hands it from step to step inside that run: a batch is never put together
    from partitions read by different runs, so there is never more than one poll start.
    """

    poll_start_ts: int
    projects: tuple[str, ...]  # the run's project partitions
    extract: AppExtract
    rule_set: str = LEGACY  # the rule set the run derives with (core/rules)

    @property
    def workspaces(self) -> pd.DataFrame:
        return self.extract.workspaces

    @property
    def generation(self) -> int:
        return self.extract.generation

    @property
    def live_projects(self) -> tuple[str, ...]:
        return self.extract.live_projects

    def problems_by_project(self) -> pd.DataFrame:
        """Every problem row with the project of its workspace (NA for rows that were skipped:
        no workspace left to attach them to)."""
        return self.extract.problems.merge(
            self.workspaces[["workspace_id", "project_id"]], on="workspace_id", how="left"
        )


def read_batch(
    engine: sa.Engine,
    projects: Sequence[str],
    *,
    poll_start_ts: int,
    rule_set: str = AUTO,
) -> ExtractBatch:
    """The extract stage: ONE read of ``projects`` (the schema generation detected first; an
    UnknownSchemaError when it matches none) and the rule set to derive with (``rule_set``:
    "auto" picks the generation's). ``poll_start_ts`` was taken from the pipeline DB's clock
    before this read. A source only: the caller keeps the problems (``problems_by_project``)."""
    generation = detect_generation(engine)
    return ExtractBatch(
        poll_start_ts=poll_start_ts,
        projects=tuple(projects),
        extract=extract_workspaces(engine, list(projects), generation=generation),
        rule_set=resolve(rule_set, generation.number),
    )
