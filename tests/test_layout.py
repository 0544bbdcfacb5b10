"""The layout of core/ and app_pages/: one-way imports between stages, no cycles, readable sizes.

core/__init__.py names the order; this test holds the code to it. Imports are read from the
source (module level and inside functions alike), so a lazy import cannot hide a wrong direction.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core"

# Which stages each stage may import ("top" is core's top-level modules).
ALLOWED = {
    "top": {"top"},
    "labels": {"top", "labels"},
    "engine": {"top", "labels", "engine"},
    "fetch": {"top", "engine", "fetch"},
    "embeddings": {"top", "engine", "embeddings"},
    "bulk": {"top", "labels", "engine", "fetch", "embeddings", "bulk"},
    "training": {"top", "labels", "engine", "fetch", "embeddings", "bulk", "training"},
    "spark": {"top", "labels", "engine", "fetch", "embeddings", "bulk", "training", "spark"},
    "api": {"top", "labels", "engine", "fetch", "embeddings", "bulk", "training", "api"},
    "cli": {
        "top", "labels", "engine", "fetch", "embeddings", "bulk", "training", "spark", "api", "cli"
    },
}
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    """`core/engine/loading.py` -> `core.engine.loading`; a package's __init__ is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage(module: str) -> str:
    """The stage a core module belongs to: its package, or "top" for core's own modules."""
    if module == "core.__main__":
        return "cli"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or module in {f"core.{s}" for s in ALLOWED} else "top"


def imported_modules(path: Path) -> Iterator[str]:
    """Every module `path` imports, wherever the import statement stands (the project uses
    absolute imports only, so `from core.x import y` names core.x and, if a module, core.x.y)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path.name}:{node.lineno}: use an absolute import"
            yield node.module or ""
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """core module -> the core modules it imports (names that are not modules are dropped)."""
    modules = core_modules()
    return {
        name: {m for m in imported_modules(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_every_package_says_what_it_owns_and_may_import() -> None:
    for init in CORE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(ROOT)} has no docstring"
        if init.parent != CORE:
            assert "May import" in doc, f"{init.relative_to(ROOT)} does not say what it may import"


def test_imports_go_one_way() -> None:
    wrong = [
        f"{name} ({stage(name)}) imports {target} ({stage(target)})"
        for name, targets in import_graph().items()
        for target in targets
        if stage(target) not in ALLOWED[stage(name)]
    ]
    assert not wrong, "\n".join(wrong)


def test_core_never_imports_the_user_interface() -> None:
    for name, path in core_modules().items():
        for module in imported_modules(path):
            root = module.split(".")[0]
            assert root not in {"streamlit", "app_pages", "app"}, f"{name} imports {module}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in `graph`, as the modules around it, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            if cycle := visit(target, [*path, node]):
                return cycle
        done.add(node)
        return None

    for node in sorted(graph):
        if cycle := visit(node, []):
            return cycle
    return None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_checks_catch_what_they_are_for() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert stage("core.engine.loading") == "engine" and stage("core.config") == "top"
    assert "training" not in ALLOWED[stage("core.fetch.download")]


def python_files() -> list[Path]:
    return sorted([*CORE.rglob("*.py"), *(ROOT / "app_pages").rglob("*.py"), ROOT / "app.py"])


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_are_short_enough_to_read(path: Path) -> None:
    source = path.read_text()
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, ", ".join(long)
