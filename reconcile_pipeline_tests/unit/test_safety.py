"""Safety, read from the source: SQL is parameterised and git never runs through a shell. (Git
never running outside the configured roots is ``e2e/test_git_allowed_roots.py``; passwords never
reaching the event log, ``integration/test_secrets.py``.)

- Static: an AST scan of the package for SQL built from f-strings / ``.format`` / ``%`` / ``+``
  (anything that looks like SQL, and anything handed to ``text()``/``execute*()``), against a
  short allow-list of DDL built from constants; ruff's S608 enabled and clean; no ``shell=``
  anywhere but ``False``, and no GitPython shell switch.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib

from reconcile_pipeline_tests.support.processes import BIN, REPO

PACKAGE = REPO / "reconcile_pipeline"

# ---- static: SQL built from strings -----------------------------------------------------------

_SQL = re.compile(
    r"(?i)\b(select\s.+\sfrom|insert\s+into|update\s+\S+\s+set|delete\s+from|"
    r"create\s+(table|(unique\s+)?index|database|trigger|function)|alter\s+(table|database)|"
    r"drop\s+(table|index|database)|truncate\s|pragma\s|begin\s|grant\s)"
)
_SQL_SINKS = {"text", "exec_driver_sql", "execute", "executemany", "executescript"}

# (file, source snippet) -> why it is safe. Everything else built from strings is a finding.
ALLOWED = {
    ("core/db.py", 'f"ALTER TABLE {table.name} ADD COLUMN {ddl}"'): (
        "migration DDL: a constant table name and a column definition compiled by SQLAlchemy "
        "from the Table object"
    ),
    ("demo/app_schema.py", """f'CREATE TABLE IF NOT EXISTS "{table}" (\\n    {body}\\n)'"""): (
        "the app schema DDL (demo and tests only) from the TABLES constants"
    ),
    ("core/db.py", 'f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}"'): "a constant",
    ("metadata.py", "This run's drift, in the pipeline DB"): (
        "queries shown to the user in the UI to copy and run; never executed here"
    ),
    ("core/db.py", 'f"BEGIN {mode}"'): (
        "the package's own execution option (DEFERRED or IMMEDIATE), never user input"
    ),
}


def _template(node: ast.AST) -> str | None:
    """The constant text of a string built at run time, with {} for the variable parts."""
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
            for v in node.values
        )
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
    ):
        return node.func.value.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        parts = [
            n.value
            for n in (node.left, node.right)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        ]
        if parts:
            return "{}".join(parts)
    return None


def find_string_built_sql() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        rel = path.relative_to(PACKAGE).as_posix()
        flagged: set[int] = set()
        for node in ast.walk(tree):
            candidates = []
            template = _template(node)
            if template is not None and _SQL.search(template):
                candidates.append(node)
            if isinstance(node, ast.Call) and node.args:
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in _SQL_SINKS and _template(node.args[0]) is not None:
                    candidates.append(node.args[0])
            for candidate in candidates:
                if id(candidate) in flagged:
                    continue
                flagged.add(id(candidate))
                segment = ast.get_source_segment(source, candidate) or ""
                found.append((rel, candidate.lineno, segment))
    return found


def test_sql_is_never_built_from_strings_outside_the_allow_list():
    found = find_string_built_sql()
    unexpected = [
        f"{rel}:{line}: {segment[:120]}"
        for rel, line, segment in found
        if not any(rel == f and snippet in segment for f, snippet in ALLOWED)
    ]
    assert unexpected == [], "SQL built from strings:\n" + "\n".join(unexpected)
    # The allow-list is not stale: each entry still matches something.
    stale = [
        key
        for key in ALLOWED
        if not any(rel == key[0] and key[1] in segment for rel, _, segment in found)
    ]
    assert stale == [], f"allow-list entries that match nothing any more: {stale}"


def test_the_scanner_finds_what_it_must():
    """The scanner itself, on known-bad snippets (so a green scan means something)."""
    bad = [
        "conn.execute(sa.text(f\"SELECT * FROM t WHERE id = '{x}'\"))",
        "conn.exec_driver_sql('DELETE FROM t WHERE id = %s' % x)",
        "q = 'UPDATE t SET a = {}'.format(v)",
        "q = 'INSERT INTO t VALUES (' + v + ')'",
        "cursor.execute(f'{stmt}')",
    ]
    for snippet in bad:
        tree = ast.parse(snippet)
        hits = [
            n
            for n in ast.walk(tree)
            if (_template(n) is not None and _SQL.search(_template(n) or ""))
            or (
                isinstance(n, ast.Call)
                and n.args
                and getattr(n.func, "attr", None) in _SQL_SINKS
                and _template(n.args[0]) is not None
            )
        ]
        assert hits, snippet


def test_ruff_s608_is_enabled_and_clean():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    selected = config.get("select", []) + config.get("extend-select", [])
    assert any(code in ("S608", "S60", "S6", "S") for code in selected), selected
    assert not any("S608".startswith(code) for code in config.get("ignore", []))
    for pattern, codes in config.get("per-file-ignores", {}).items():
        if any("S608".startswith(code) for code in codes):
            assert "test" in pattern, f"S608 ignored for product files: {pattern}"
    proc = subprocess.run(
        [str(BIN / "ruff"), "check", "--select", "S608", "--no-cache", str(PACKAGE)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_shell_anywhere_and_git_bounded_in_time():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.keyword)
                and node.arg == "shell"
                and not (isinstance(node.value, ast.Constant) and node.value.value is False)
            ):
                offenders.append(f"{rel}:{node.value.lineno}: shell={ast.unparse(node.value)}")
            if isinstance(node, ast.Attribute) and node.attr == "USE_SHELL":
                offenders.append(f"{rel}:{node.lineno}: GitPython USE_SHELL")
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) in ("system", "popen")
                and getattr(node.func.value, "id", None) == "os"
            ):
                offenders.append(f"{rel}:{node.lineno}: os.{node.func.attr}")
    assert offenders == [], offenders
    git_stats = (PACKAGE / "core" / "git_stats.py").read_text()
    # git runs from one place, with an argument list and a deadline that kills it.
    assert git_stats.count("subprocess.Popen(") == 1 and "subprocess.run(" not in git_stats
    assert "timeout=remaining" in git_stats and "os.killpg(" in git_stats


if __name__ == "__main__":  # pragma: no cover - list the scan's findings
    for finding in find_string_built_sql():
        print(*finding, sep="\t", file=sys.stdout)
