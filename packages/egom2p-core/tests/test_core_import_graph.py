"""egom2p.core's modules import each other without a cycle, counting the imports inside functions too: a cycle hidden
by a function-level import still ties two modules into one and breaks the day the import moves to the top."""

from __future__ import annotations

import ast
from pathlib import Path

import egom2p.core

CORE = Path(egom2p.core.__file__).parent
MODULES = {f"egom2p.core.{p.stem}": p for p in sorted(CORE.glob("*.py")) if p.stem != "__init__"}
MODULES["egom2p.core"] = CORE / "__init__.py"


def core_imports(module: str) -> set[str]:
    """The egom2p.core modules ``module`` imports anywhere in its source (top level, functions, ``if`` blocks)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # from egom2p.core import hub: the submodule hub; from egom2p.core import ShardError: the package
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_hidden_cycle():
    assert find_cycle({"cli": {"shards"}, "shards": {"s3"}, "s3": {"cli"}}) == ["cli", "shards", "s3", "cli"]
    assert find_cycle({"cli": {"errors"}, "shards": {"s3", "errors"}, "s3": {"errors"}, "errors": set()}) is None


def test_core_modules_import_each_other_without_a_cycle():
    graph = {module: core_imports(module) for module in MODULES}
    assert graph["egom2p.core.s3"] >= {"egom2p.core.errors"}  # the parser sees the imports it must see
    assert graph["egom2p.core.errors"] == set(), "errors.py is the bottom of core: it imports no egom2p module"
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle in egom2p.core: {' -> '.join(cycle)}"

