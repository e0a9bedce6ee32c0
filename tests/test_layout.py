"""The import directions of the design (docs/architecture.md), enforced.

harness -> workloads -> checkers; harness -> nemesis; harness -> checkers;
node and checkers import nothing else of the project; nemesis imports nothing
else of the project; nothing imports harness.cli (the composition root),
except harness.cli itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("node", "harness", "nemesis", "checkers", "workloads")

# Only the composition root may name node/ (to wire in `squall node`); `squall
# sim` runs the node's simulator as a child process instead of importing it.
NODE_COMPOSERS = {"harness/cli.py"}

# package -> the project packages it may import (besides itself)
ALLOWED = {
    "node": set(),
    "checkers": set(),
    "nemesis": set(),
    "workloads": {"checkers"},
    # the composition root (harness/cli.py) may also name node's CLI entry points
    "harness": {"workloads", "nemesis", "checkers"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _lazy_command_targets() -> list[str]:
    """Modules that harness/cli.py imports by name (lazy subcommands)."""
    tree = ast.parse((ROOT / "harness" / "cli.py").read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.split(".")[0] in PACKAGES and "." in node.value:
                names.append(node.value)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_package_has_docstring(package: str) -> None:
    init = ROOT / package / "__init__.py"
    assert init.exists(), f"{package}/__init__.py is missing"
    assert ast.get_docstring(ast.parse(init.read_text())), (
        f"{package}/__init__.py needs a docstring saying what lives there"
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_import_directions(package: str) -> None:
    violations = []
    for path in _python_files(package):
        rel = path.relative_to(ROOT)
        for lineno, module in _imports(path):
            top = module.split(".")[0]
            if top not in PACKAGES or top == package:
                continue
            if rel.as_posix() in NODE_COMPOSERS and top == "node":
                continue  # the composition root wires the node's CLI and simulator in
            if top not in ALLOWED[package]:
                violations.append(f"{rel}:{lineno} imports {module}")
    assert not violations, (
        f"{package}/ may import only {sorted(ALLOWED[package]) or 'nothing'} of the project:\n" + "\n".join(violations)
    )


def test_nothing_imports_the_composition_root() -> None:
    offenders = []
    for package in PACKAGES:
        for path in _python_files(package):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "harness/cli.py":
                continue
            for lineno, module in _imports(path):
                if module == "harness.cli":
                    offenders.append(f"{rel}:{lineno}")
    assert not offenders, "only the console script may import harness.cli:\n" + "\n".join(offenders)


def test_lazy_commands_respect_directions() -> None:
    """harness/cli.py's lazily imported command modules are named, not hidden."""
    for target in _lazy_command_targets():
        top = target.split(".")[0]
        assert top in ("harness", "node"), f"harness/cli.py wires in {target}, outside harness/ and node/"


def test_results_folder_is_ignored_but_documented() -> None:
    assert (ROOT / "results" / "README.md").exists()
    assert "/results/*" in (ROOT / ".gitignore").read_text()


# -- the database seam: backends run what a database's prepare returns and ask
# the database for a node's status; none of them knows any database's formats,
# files, programs or clients. Code is scanned (names and string literals);
# comments and docstrings may mention a database as the reason for a design.
DB_SPECIFIC = (
    "srvr",
    "mntr",
    "ruok",
    "imok",
    "zoo.cfg",
    "myid",
    "zxid",
    "kazoo",
    "four_letter",
    "quorumlisten",
    "zookeeper",
    "etcd",
    "java",
    "jre",
    "harness.dbs.squall",
    "harness.dbs.zk",
)
DB_SPECIFIC_CASED = ("Mode:",)  # srvr's role line
DB_NEUTRAL_DIRS = ("harness/backends",)


def _code_tokens(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every name and string literal that is not a docstring."""
    import io
    import tokenize

    text = path.read_text(encoding="utf-8")
    docstrings = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                docstrings.add(body[0].lineno)
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.NAME, tokenize.STRING) or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            if tok.type == tokenize.STRING and tok.start[0] in docstrings:
                continue
            out.append((tok.start[0], tok.string))
    return out


def test_backends_contain_nothing_database_specific() -> None:
    leaks = []
    for d in DB_NEUTRAL_DIRS:
        for path in sorted((ROOT / d).rglob("*.py")):
            for lineno, text in _code_tokens(path):
                hits = [w for w in DB_SPECIFIC if w in text.lower()] + [w for w in DB_SPECIFIC_CASED if w in text]
                leaks += [f"{path.relative_to(ROOT)}:{lineno}: {w!r} in {text[:80]}" for w in hits]
    assert not leaks, "backends must not know any database (harness/dbs/base.py is the seam):\n" + "\n".join(leaks)


def test_the_layout_test_sees_a_leak(tmp_path) -> None:
    bad = tmp_path / "leaky.py"
    bad.write_text(
        '"""Docstrings may say srvr."""\n# and comments: zoo.cfg\nMODE = "Mode: leader"\n'
        'def f(kazoo_client):\n    return open("zoo.cfg")\n'
    )
    found = [t for _, t in _code_tokens(bad) if any(w in t.lower() for w in DB_SPECIFIC) or "Mode:" in t]
    assert found == ['"Mode: leader"', "kazoo_client", '"zoo.cfg"']


def test_the_readme_lists_every_registered_database() -> None:
    from harness import plugins

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = readme.split("## Databases", 1)[1].split("\n## ", 1)[0] if "## Databases" in readme else ""
    ours = [p.name for p in plugins.discover().of("db") if p.dist == plugins.SELF]
    assert ours, 'squall registers its databases in pyproject.toml ([project.entry-points."squall.dbs"])'
    missing = [name for name in ours if f"`{name}`" not in listed]
    assert not missing, f'README.md\'s "## Databases" section must list {missing}'
