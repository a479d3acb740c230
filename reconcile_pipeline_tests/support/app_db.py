"""Hand-built app DBs in any schema generation: the app's own tables (the demo's DDL, which
``test_app_schema.py`` holds against the app's migrations), written to as the app writes.

Workspaces are described in one logical vocabulary (the gen 1/2 ``Workspace`` column names plus
``hasMergeConflict`` and ``ratchetDispatchStalled``); each generation stores what it has: gen 3
moves the PR, ratchet (with its dispatch record), run-script and auto-iteration (``mode``,
``autoIterationStatus``) fields to its side tables and derives the ratchet state; gen 2 keeps
``mode``, ``autoIterationStatus``, ``ratchetDispatchOutcome`` and ``ratchetDispatchRetryCount`` on
``Workspace`` and has no merge-conflict or stalled flag; gen 1 has none of these. New workspaces
drop the fields their generation lacks; :meth:`AppDb.update_workspace` refuses them. Agent sessions
take ``name``, ``model``, ``workflow`` and ``provider`` (gen 2/3) like any other column. DateTimes
are given as epoch ms and stored the way the dialect's app client stores them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from reconcile_pipeline.demo.app_schema import (
    CURRENT_GENERATION,
    SIDE_TABLES,
    agent_session_table,
    app_rows,
    column_names,
    create_app_schema,
    datetime_columns,
    insert_app_rows,
)
from reconcile_pipeline_tests.support.databases import make_engine

BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z

# Logical workspace field -> (gen 3 side table, column).
SIDE_FIELDS = {
    "prUrl": ("WorkspacePR", "url"),
    "prNumber": ("WorkspacePR", "number"),
    "prState": ("WorkspacePR", "state"),
    "prReviewState": ("WorkspacePR", "reviewState"),
    "prCiStatus": ("WorkspacePR", "ciStatus"),
    "prUpdatedAt": ("WorkspacePR", "syncedAt"),
    "hasMergeConflict": ("WorkspacePR", "hasMergeConflict"),
    "ratchetEnabled": ("WorkspaceRatchet", "enabled"),
    "ratchetDispatchOutcome": ("WorkspaceRatchet", "dispatchOutcome"),
    "ratchetDispatchRetryCount": ("WorkspaceRatchet", "dispatchRetryCount"),
    "ratchetDispatchStalled": ("WorkspaceRatchet", "dispatchStalled"),
    "runScriptStatus": ("WorkspaceRunScript", "status"),
    "mode": ("WorkspaceAutoIteration", "mode"),
    "autoIterationStatus": ("WorkspaceAutoIteration", "status"),
}


def _quote(name: str) -> str:
    return f'"{name}"'


class AppDb:
    """A writable handle on a hand-built app DB (the pipeline itself opens it read-only).

    ``constraints=False`` builds the tables without NOT NULL, keys and foreign keys, to store
    what a broken app DB holds.
    """

    def __init__(
        self, url: str, *, generation: int = CURRENT_GENERATION, constraints: bool = True
    ) -> None:
        self.url = url
        self.generation = generation
        self.constraints = constraints
        self.engine = make_engine(url)
        create_app_schema(self.engine, generation, constraints=constraints)

    @property
    def agent_sessions(self) -> str:
        """The table of agent sessions in this generation."""
        return agent_session_table(self.generation)

    # -- raw access ---------------------------------------------------------------------------

    def _value(self, table: str, column: str, value: Any) -> Any:
        # PostgreSQL has TIMESTAMP(3): an epoch-ms int becomes a naive UTC datetime there.
        if (
            self.engine.dialect.name == "postgresql"
            and column in datetime_columns(self.generation, table)
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            return dt.datetime.fromtimestamp(value / 1000, dt.UTC).replace(tzinfo=None)
        return value

    def insert(self, table: str, row: Mapping[str, Any]) -> None:
        """One row as given (no logical mapping): bad-input tests store anything here."""
        row = {c: self._value(table, c, v) for c, v in row.items()}
        columns = ", ".join(_quote(c) for c in row)
        params = ", ".join(f":{c}" for c in row)
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {_quote(table)} ({columns}) VALUES ({params})"), row)

    def execute(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- the app's rows -----------------------------------------------------------------------

    def add_project(
        self, project_id: str, *, archived: bool = False, default_branch: str = "main"
    ) -> str:
        self._insert_rows(
            projects=[
                {
                    "id": project_id,
                    "name": f"Project {project_id}",
                    "slug": f"slug-{project_id}",
                    "repoPath": f"/nonexistent/{project_id}",
                    "worktreeBasePath": f"/nonexistent/{project_id}/wt",
                    "defaultBranch": default_branch,
                    "isArchived": archived,
                    "createdAt": BASE_MS,
                    "updatedAt": BASE_MS,
                }
            ]
        )
        return project_id

    def add_workspace(
        self,
        workspace_id: str,
        project_id: str,
        *,
        missing_side_rows: Iterable[str] = (),
        **fields: Any,
    ) -> str:
        """A workspace with the app's usual values, overridden by ``fields`` (logical names).
        ``missing_side_rows``: gen 3 side tables that get no row for it (the app's defaults)."""
        row = {
            "id": workspace_id,
            "projectId": project_id,
            "name": f"Workspace {workspace_id}",
            "status": "READY",
            "worktreePath": None,
            "branchName": f"feat/{workspace_id}",
            "runScriptStatus": "IDLE",
            "prState": "NONE",
            "prCiStatus": "UNKNOWN",
            "ratchetEnabled": True,
            "hasHadSessions": False,
            "createdAt": BASE_MS + 1_000,
            "updatedAt": BASE_MS + 2_000,
        }
        if self.generation < 3:
            row["ratchetState"] = "IDLE"
        row.update(fields)
        self._insert_rows(
            workspaces=[row],
            missing_side_rows=[(workspace_id, t) for t in missing_side_rows],
        )
        return workspace_id

    def add_project_with_workspaces(self, project_id: str, n: int) -> list[str]:
        self.add_project(project_id)
        return [self.add_workspace(f"{project_id}-w{i}", project_id) for i in range(n)]

    def add_agent_session(
        self,
        session_id: str,
        workspace_id: str,
        *,
        created: int = BASE_MS,
        updated: int = BASE_MS,
        **fields: Any,
    ) -> str:
        row = {"id": session_id, "workspaceId": workspace_id, "createdAt": created}
        self._insert_rows(agent_sessions=[{**row, "updatedAt": updated, **fields}])
        return session_id

    def add_terminal_session(
        self,
        session_id: str,
        workspace_id: str,
        *,
        created: int = BASE_MS,
        updated: int = BASE_MS,
        **fields: Any,
    ) -> str:
        row = {"id": session_id, "workspaceId": workspace_id, "createdAt": created}
        self._insert_rows(terminal_sessions=[{**row, "updatedAt": updated, **fields}])
        return session_id

    def _insert_rows(self, **described: Any) -> None:
        rows = app_rows(self.generation, **described)
        for table, table_rows in rows.items():
            rows[table] = [{c: self._value(table, c, v) for c, v in r.items()} for r in table_rows]
        with self.engine.begin() as conn:
            insert_app_rows(conn, rows)

    def update_workspace(self, workspace_id: str, **fields: Any) -> None:
        """Set logical fields; in gen 3 the side-table ones go to their table (row created when
        it was missing)."""
        own = set(column_names(self.generation, "Workspace"))
        by_table: dict[str, dict[str, Any]] = {}
        for name, value in fields.items():
            if name in own:
                by_table.setdefault("Workspace", {})[name] = value
            elif self.generation == 3 and name in SIDE_FIELDS:
                table, column = SIDE_FIELDS[name]
                by_table.setdefault(table, {})[column] = value
            elif not (self.generation == 3 and name == "ratchetState"):
                raise ValueError(f"gen {self.generation} has no workspace field {name!r}")
        with self.engine.begin() as conn:
            for table, values in by_table.items():
                values = {c: self._value(table, c, v) for c, v in values.items()}
                key = "id" if table == "Workspace" else "workspaceId"
                sets = ", ".join(f"{_quote(c)} = :{c}" for c in values)
                params = {**values, "_key": workspace_id}
                updated = conn.execute(
                    sa.text(f"UPDATE {_quote(table)} SET {sets} WHERE {_quote(key)} = :_key"),
                    params,
                ).rowcount
                if not updated and table in SIDE_TABLES:
                    columns = ", ".join(_quote(c) for c in ("workspaceId", *values))
                    marks = ", ".join(f":{c}" for c in ("_key", *values))
                    conn.execute(
                        sa.text(f"INSERT INTO {_quote(table)} ({columns}) VALUES ({marks})"),
                        params,
                    )

    def delete_project(self, project_id: str) -> None:
        """Delete a project with its workspaces (the app deletes the workspaces first: the
        foreign key is ON DELETE RESTRICT; their children cascade, done explicitly here because
        SQLite enforces foreign keys only with a PRAGMA)."""
        workspaces = 'SELECT "id" FROM "Workspace" WHERE "projectId" = :p'
        for child in self._children():
            self.execute(
                f'DELETE FROM "{child}" WHERE "workspaceId" IN ({workspaces})', p=project_id
            )
        self.execute('DELETE FROM "Workspace" WHERE "projectId" = :p', p=project_id)
        self.execute('DELETE FROM "Project" WHERE "id" = :p', p=project_id)

    def delete_all_workspaces(self) -> None:
        for child in self._children():
            self.execute(f'DELETE FROM "{child}"')
        self.execute('DELETE FROM "Workspace"')

    def _children(self) -> list[str]:
        children = [self.agent_sessions, "TerminalSession"]
        return children + (list(SIDE_TABLES) if self.generation == 3 else [])

    def archive_project(self, project_id: str, archived: bool = True) -> None:
        self.execute(
            'UPDATE "Project" SET "isArchived" = :a WHERE "id" = :p', a=archived, p=project_id
        )
