"""hack/ is dev tooling the tests import, never the reverse, and its modules import no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from hack.paths import REPO

HACK = REPO / "hack"


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                here = _module(path).split(".")
                anchor = here[: len(here) - node.level + (path.name == "__init__.py")]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module(f): f for f in HACK.rglob("*.py")}
    return {mod: {i for i in _imports(f) if i in files and i != mod} for mod, f in files.items()}


def test_nothing_outside_tests_imports_tests() -> None:
    offenders = []
    for f in REPO.rglob("*.py"):
        rel = f.relative_to(REPO)
        # service_template/tests is the template's own test package, not this repository's.
        if rel.parts[0] in ("tests", ".venv", "build") or "tests" in rel.parts:
            continue
        if any(i == "tests" or i.startswith("tests.") for i in _imports(f)):
            offenders.append(str(rel))
    assert not offenders, offenders


def test_hack_does_not_import_pytest() -> None:
    offenders = [
        str(f.relative_to(REPO))
        for f in HACK.rglob("*.py")
        if any(i.split(".")[0] in ("pytest", "_pytest") for i in _imports(f))
    ]
    assert not offenders, offenders


def test_hack_modules_import_no_cycle() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(mod: str, stack: list[str]) -> None:
        if mod in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(mod) :], mod]))
        if mod in done:
            return
        for dep in sorted(graph[mod]):
            visit(dep, [*stack, mod])
        done.add(mod)

    for mod in sorted(graph):
        visit(mod, [])


def test_the_cycle_check_sees_lazy_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from hack.cluster import kind\n")
    assert "hack.cluster.kind" in _imports(f)
