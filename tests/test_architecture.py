"""The package's shape, checked: layers import only downwards, no cycles, a light plugin.

docs/architecture.md describes the layers; these tests keep the description
true (tests/plugin/test_plugin_import.py checks that the plugin imports light).
Imports are read from the source, function-local imports and ``if
TYPE_CHECKING:`` blocks included: a cycle cannot hide inside a function body,
and an annotation that names a higher layer's type ties the layers together
as much as a call does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_tcav"

#: Which top-level parts of the package each part may import (besides itself), TYPE_CHECKING imports
#: included.  Calls and imports run one way: plugin / cli / api -> reports -> checks -> session -> engine
#: -> storage, with the leaves (errors, _version, tables, atomic_files) and config below them all.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "atomic_files": set(),
    "tables": set(),
    "config": {"errors"},
    "storage": {"config", "errors", "_version"},
    "engine": {"storage", "config", "errors", "tables", "_version"},
    "session": {"engine", "storage", "config", "errors", "atomic_files"},
    "checks": {"session", "engine", "config", "errors", "tables", "atomic_files", "_version"},
    "reports": {"checks", "engine", "config", "errors", "tables", "atomic_files", "_version"},
    "api": {"checks", "session", "engine", "errors"},
    "cli": {"reports", "checks", "session", "engine", "storage", "config", "errors", "tables", "atomic_files",
            "_version"},
    "plugin": {"api", "reports", "checks", "session", "engine", "storage", "config", "errors", "tables",
               "atomic_files", "_version"},
    "__init__": {"api", "checks", "config", "engine", "errors", "session", "storage", "_version"},
    "__main__": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, name: str, *, type_checking: bool = True) -> set[str]:
    """Every module of ours that ``path`` imports (at any depth of the file; ``type_checking``: for annotations too)."""
    tree = ast.parse(path.read_text(), str(path))
    modules = _modules()
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child) and not type_checking:
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("pytest_tcav"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    module = f"{base}.{child.module}" if child.module else base
                else:
                    module = child.module or ""
                if module.startswith("pytest_tcav"):
                    # `from pytest_tcav.plugin import reporting` imports the submodule; its package's
                    # __init__ runs first in any case, so that is no edge of the graph.
                    submodules = {f"{module}.{a.name}" for a in child.names} & set(modules)
                    found.update(submodules or {module})
            visit(child)

    visit(tree)
    return {m for m in found if m in modules and m != name}


def _graph(*, type_checking: bool = True) -> dict[str, set[str]]:
    return {name: _imports(path, name, type_checking=type_checking) for name, path in _modules().items()}


def _part(module: str) -> str:
    """The layer a module belongs to: ``pytest_tcav.engine.tcav`` -> ``engine``."""
    rest = module.removeprefix("pytest_tcav").lstrip(".") or "__init__"
    return rest.split(".")[0]


@pytest.mark.parametrize("type_checking", [False, True], ids=["run-time", "with-type-checking"])
def test_no_import_cycles(type_checking: bool) -> None:
    graph = _graph(type_checking=type_checking)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for other in sorted(graph[node]):
            if state.get(other) == 1:
                cycles.append([*stack[stack.index(other):], other])
            elif other not in state:
                walk(other)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_import_only_what_docs_architecture_allows() -> None:
    wrong = []
    for module, imports in sorted(_graph().items()):
        part = _part(module)
        for other in sorted(imports):
            target = _part(other)
            if target == part or other == "pytest_tcav":
                continue
            if target not in ALLOWED[part]:
                wrong.append(f"{module} imports {other}")
    assert not wrong, "imports that cross the layers the wrong way:\n" + "\n".join(wrong)


def test_engine_is_free_of_pytest_yaml_and_the_session() -> None:
    for name, path in _modules().items():
        if _part(name) not in ("engine", "storage", "checks", "session", "reports", "tables"):
            continue
        tree = ast.parse(path.read_text())
        heavy = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        heavy |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "pytest" not in heavy, f"{name} imports pytest; only pytest_tcav.plugin may"
        if _part(name) in ("engine", "storage"):
            assert "yaml" not in heavy, f"{name} imports yaml"

