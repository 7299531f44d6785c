"""The three layers keep their shape: no import cycle between the project's modules, ``trainables/`` (the
lowest layer) imports neither ``sweeps/`` nor ``analysis/``, and ``analysis/`` never needs Ray. Imports are
read from the source (every ``import`` and ``from ... import``, function-local ones included: a cycle
counts even when one side imports late), so nothing is imported to check them."""

from __future__ import annotations

import ast
from functools import cache

import pytest

from tests.conftest import REPO

LAYERS = ("sweeps", "trainables", "analysis")


@cache
def modules() -> dict[str, set[str]]:
    """Each module of the three layers -> every top-level name it imports, resolved to a project module
    ('analysis.report') where it is one, else the imported package's top name ('ray', 'torch')."""
    files = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
        for layer in LAYERS
        for p in sorted((REPO / layer).rglob("*.py"))
    }
    return {name: _imports(name, path.read_text(), set(files)) for name, path in files.items()}


def _imports(name: str, source: str, project: set[str]) -> set[str]:
    found = set()
    package = name if name in LAYERS else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {_module(a.name, project) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from trainables import metrics` imports the module trainables.metrics
            subs = {f"{base}.{a.name}" for a in node.names} & project
            found |= subs or {_module(base, project)}
    found.discard(name)
    return found


def _module(dotted: str, project: set[str]) -> str:
    """The longest project module that ``dotted`` names, else its top-level package."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in project:
            return ".".join(parts[:n])
    return parts[0]


def reachable(start: str) -> dict[str, list[str]]:
    """Every name ``start`` imports directly or through project modules -> one import chain to it."""
    graph = modules()
    paths, todo = {start: [start]}, [start]
    while todo:
        here = todo.pop()
        for there in sorted(graph.get(here, ())):
            if there not in paths:
                paths[there] = [*paths[here], there]
                if there in graph:
                    todo.append(there)
    return paths


def cycles() -> list[list[str]]:
    """One cycle per strongly connected group of project modules (Tarjan), each as an import chain."""
    graph = {m: {d for d in deps if d in modules()} for m, deps in modules().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for group in groups:
        first = min(group)
        back = next(m for m in sorted(group) if first in graph[m] and first in reachable(m))
        out.append([*reachable(first)[back], first])
    return out


def test_the_import_graph_is_read():
    graph = modules()
    assert "trainables.metrics" in graph["trainables.engine"]  # from trainables import metrics as M
    assert "ray" in graph["trainables.trainable"]
    assert "trainables.detection" in graph["trainables.trainable"]  # a function-local import


def test_no_module_imports_itself_back():
    found = cycles()
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("lower", ["sweeps", "analysis"])
def test_trainables_never_import_the_layers_above(lower):
    bad = {m: deps for m, deps in modules().items() if m.startswith("trainables")}
    bad = {m: sorted(d for d in deps if d.split(".")[0] == lower) for m, deps in bad.items()}
    assert not {m: d for m, d in bad.items() if d}, f"trainables/ imports {lower}/: {bad}"


def test_analysis_never_needs_ray():
    """Not directly, nor through any project module it imports (a report is built where Ray is not)."""
    chains = {m: reachable(m).get("ray") for m in modules() if m.startswith("analysis")}
    assert not {m: c for m, c in chains.items() if c}, "analysis/ imports ray: " + "; ".join(
        " -> ".join(c) for c in chains.values() if c
    )
