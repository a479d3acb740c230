"""Record the factory-factory app's SQLite schema for one schema generation, as JSON.

The app builds its database with Prisma migrations (prisma/migrations/<dir>/migration.sql,
applied in lexical order of <dir>). This script replays those migrations on a fresh in-memory
SQLite database and prints the columns, foreign keys, indexes and triggers of the tables this
project reads, so tests can compare the project's own DDL against the app's real schema, one
schema generation at a time. Run it against a factory-factory checkout, either its git
directory at a pinned commit:

    .venv/bin/python scripts/app_schema_fingerprint.py \\
        --migrations-from-git /path/to/factory-factory/.git --commit 6c25f7f9 \\
        > reconcile_pipeline_tests/data/app_schema_gen3.json

or a checked-out migrations folder:

    .venv/bin/python scripts/app_schema_fingerprint.py \\
        --migrations-dir /path/to/factory-factory/prisma/migrations
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

TABLES: tuple[str, ...] = (
    "Project",
    "Workspace",
    "ClaudeSession",
    "AgentSession",
    "TerminalSession",
    "WorkspacePR",
    "WorkspaceRatchet",
    "WorkspaceRunScript",
    "WorkspaceAutoIteration",
)
MIGRATION_FILE = "migration.sql"
DEFAULT_REPO_PATH = "prisma/migrations"

Migration = tuple[str, str]  # (migration directory name, SQL text)
JsonObject = dict[str, Any]


class MigrationError(RuntimeError):
    """A migration script failed to apply."""


def _git(git_dir: str, *args: str) -> bytes:
    result = subprocess.run(
        ["git", "-C", git_dir, *args],
        check=False,
        capture_output=True,
    )
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip()
        raise SystemExit(f"git {' '.join(args)} failed in {git_dir}: {stderr}")
    return result.stdout


def resolve_commit(git_dir: str, commit: str) -> str:
    """The full object name of ``commit`` in ``git_dir``."""
    return _git(git_dir, "rev-parse", "--verify", f"{commit}^{{commit}}").decode().strip()


def migrations_from_git(git_dir: str, commit: str, repo_path: str) -> list[Migration]:
    """Every ``<dir>/migration.sql`` under ``repo_path`` at ``commit``, by lexical <dir> order."""
    listing = _git(git_dir, "ls-tree", "-r", "-z", "--name-only", commit, "--", f"{repo_path}/")
    migrations: list[Migration] = []
    for raw in listing.split(b"\0"):
        if not raw:
            continue
        path = PurePosixPath(raw.decode("utf-8"))
        if path.name != MIGRATION_FILE or str(path.parent.parent) != repo_path.rstrip("/"):
            continue
        sql = _git(git_dir, "show", f"{commit}:{path}").decode("utf-8")
        migrations.append((path.parent.name, sql))
    return sorted(migrations, key=lambda migration: migration[0])


def migrations_from_dir(directory: Path) -> list[Migration]:
    """Every ``<dir>/migration.sql`` in ``directory``, in lexical order of <dir>."""
    if not directory.is_dir():
        raise SystemExit(f"not a directory: {directory}")
    return [
        (sql_file.parent.name, sql_file.read_text(encoding="utf-8"))
        for sql_file in sorted(directory.glob(f"*/{MIGRATION_FILE}"), key=lambda p: p.parent.name)
    ]


def apply_migrations(migrations: Sequence[Migration]) -> sqlite3.Connection:
    """A fresh in-memory database with ``migrations`` applied in order."""
    if not migrations:
        raise SystemExit("no migration.sql files found")
    conn = sqlite3.connect(":memory:")
    # Prisma's SQLite connections run with foreign key enforcement on.
    conn.execute("PRAGMA foreign_keys = ON")
    for name, sql in migrations:
        try:
            conn.executescript(sql)
        except sqlite3.Error as exc:
            conn.close()
            raise MigrationError(f"migration {name} failed: {exc}") from exc
    return conn


def _table_exists(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def _columns(conn: sqlite3.Connection, table: str) -> list[JsonObject]:
    rows = conn.execute(
        'SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid',
        (table,),
    ).fetchall()
    return [
        {
            "name": name,
            "type": col_type,
            "notnull": bool(notnull),
            "default": default,
            "pk": bool(pk),
        }
        for name, col_type, notnull, default, pk in rows
    ]


def _foreign_keys(conn: sqlite3.Connection, table: str) -> list[JsonObject]:
    rows = conn.execute(
        'SELECT "from", "table", "to", on_delete FROM pragma_foreign_key_list(?) ORDER BY id, seq',
        (table,),
    ).fetchall()
    keys = [
        {
            "column": column,
            "references_table": ref_table,
            "references_column": ref_column,
            "on_delete": on_delete,
        }
        for column, ref_table, ref_column, on_delete in rows
    ]
    return sorted(keys, key=lambda fk: (fk["column"], fk["references_table"]))


def _indexes(conn: sqlite3.Connection, table: str) -> list[JsonObject]:
    index_rows = conn.execute(
        'SELECT name, "unique" FROM pragma_index_list(?) ORDER BY name', (table,)
    ).fetchall()
    indexes: list[JsonObject] = []
    for name, unique in index_rows:
        if name.startswith("sqlite_autoindex_"):
            continue
        columns = [
            column
            for (column,) in conn.execute(
                "SELECT name FROM pragma_index_info(?) ORDER BY seqno", (name,)
            ).fetchall()
        ]
        indexes.append({"name": name, "columns": columns, "unique": bool(unique)})
    return indexes


def _triggers(conn: sqlite3.Connection, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? ORDER BY name",
        (table,),
    ).fetchall()
    return [name for (name,) in rows]


def fingerprint(conn: sqlite3.Connection, tables: Sequence[str] = TABLES) -> dict[str, JsonObject]:
    """Columns, foreign keys, indexes and trigger names of each of ``tables`` in ``conn``."""
    return {
        table: {
            "columns": _columns(conn, table),
            "foreign_keys": _foreign_keys(conn, table),
            "indexes": _indexes(conn, table),
            "triggers": _triggers(conn, table),
        }
        for table in tables
        if _table_exists(conn, table)
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--migrations-from-git",
        metavar="GIT_DIR",
        help="git directory (or work tree) of a factory-factory repository; needs --commit",
    )
    source.add_argument(
        "--migrations-dir",
        type=Path,
        metavar="DIR",
        help="a checked-out prisma/migrations folder",
    )
    parser.add_argument(
        "--commit",
        help="commit to read the migrations from (with --migrations-from-git); with "
        "--migrations-dir it is only recorded in the output",
    )
    parser.add_argument(
        "--repo-path",
        default=DEFAULT_REPO_PATH,
        help=f"migrations folder inside the repository (default: {DEFAULT_REPO_PATH})",
    )
    parser.add_argument("--output", type=Path, help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    if args.migrations_from_git and not args.commit:
        parser.error("--migrations-from-git needs --commit")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    commit: str | None
    if args.migrations_from_git:
        commit = resolve_commit(args.migrations_from_git, args.commit)
        repo_path = args.repo_path.strip("/")
        migrations = migrations_from_git(args.migrations_from_git, commit, repo_path)
    else:
        commit = args.commit
        migrations = migrations_from_dir(args.migrations_dir)
    try:
        conn = apply_migrations(migrations)
    except MigrationError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        result: JsonObject = {"commit": commit, "tables": fingerprint(conn)}
    finally:
        conn.close()
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
