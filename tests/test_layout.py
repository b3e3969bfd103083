"""The package's shape: no import cycle, no private name imported across modules, and the
direction of imports the README's "Layout" section promises (the library never imports the
trainer or the command line; data never imports models).

Imports are read from the source (every ``import`` statement, at module level or inside a
function), so a cycle hidden behind a lazy import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "umt"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _reexports(package: str) -> dict[str, str]:
    """Names a package's ``__init__`` imports from its own submodules: name -> submodule."""
    out: dict[str, str] = {}
    tree = ast.parse(MODULES[package].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _absolute(package, node)
            if target.startswith(package + ".") and target in MODULES:
                for alias in node.names:
                    out[alias.asname or alias.name] = target
    return out


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported umt module, imported name or None, line) for each import in ``module``."""
    found: list[tuple[str, str | None, int]] = []
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "umt":
                    found.append((alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            if target.split(".")[0] != "umt":
                continue
            for alias in node.names:
                found.append((target, alias.name, node.lineno))
    return found


def _edges() -> dict[str, set[str]]:
    """module -> the umt modules it imports; a name taken from a package's ``__init__`` that
    the package re-exports from a submodule counts as an import of that submodule."""
    reexports = {name: _reexports(name) for name in MODULES if _is_package(name)}
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for module in MODULES:
        for target, name, _ in _imports(module):
            if name is not None and f"{target}.{name}" in MODULES:
                dest = f"{target}.{name}"
            elif name is not None and name in reexports.get(target, {}):
                dest = reexports[target][name]
            else:
                dest = target
            if dest != module and dest in MODULES and not module.startswith(dest + "."):
                graph[module].add(dest)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_the_import_graph_has_no_cycle() -> None:
    assert _cycles(_edges()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module() -> None:
    offenders = [
        f"{MODULES[module].relative_to(SRC)}:{line}: {target}.{name}"
        for module in MODULES
        for target, name, line in _imports(module)
        if name is not None and name.startswith("_") and not name.startswith("__")
    ]
    assert offenders == []


LAYERS = {
    # library part -> what it must never import
    "umt.models": ("umt.train", "umt.cli", "umt.evaluate", "umt.infer", "umt.data", "umt.serve"),
    "umt.data": ("umt.train", "umt.cli", "umt.evaluate", "umt.infer", "umt.models", "umt.serve"),
    "umt.masking": ("umt.train", "umt.cli", "umt.evaluate", "umt.infer", "umt.serve"),
    "umt.losses": ("umt.train", "umt.cli", "umt.evaluate", "umt.infer", "umt.serve"),
    "umt.text": ("umt.train", "umt.cli", "umt.evaluate", "umt.infer", "umt.serve"),
    "umt.utils": ("umt.train", "umt.cli", "umt.evaluate", "umt.infer", "umt.models", "umt.serve"),
    "umt.evaluate": ("umt.train", "umt.cli", "umt.serve"),
    "umt.infer": ("umt.train", "umt.cli", "umt.serve"),
    "umt.train": ("umt.cli", "umt.serve"),
    "umt.serve": ("umt.cli",),
}


@pytest.mark.parametrize("part", sorted(LAYERS))
def test_imports_point_down(part: str) -> None:
    graph = _edges()
    wrong = sorted(
        f"{module} -> {dest}"
        for module, dests in graph.items()
        if module == part or module.startswith(part + ".")
        for dest in dests
        if any(dest == bad or dest.startswith(bad + ".") for bad in LAYERS[part])
    )
    assert wrong == []
