"""The modules of egom2p.model import one another at top level, without a cycle.

Read from the sources (no module is executed): every import of an ``egom2p.model`` module, wherever it stands, is an
edge of the import graph, which must have no cycle. An import inside a function is allowed only of a kernel module
(``egom2p.model.kernels.*``: the Triton kernels are imported on first use, so that the package imports without
triton); everywhere else a cycle cannot hide behind one. Imports under ``if TYPE_CHECKING:`` are never executed and
are not edges.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

PACKAGE = "egom2p.model"


def _modules() -> dict[str, Path]:
    """``{module name: source file}`` of every module of the package (found without importing it)."""
    root = Path(importlib.util.find_spec(PACKAGE).submodule_search_locations[0])
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join((PACKAGE, *parts[:-1])) if parts[-1] == "__init__" else ".".join((PACKAGE, *parts))
        out[name] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """``(imported module of the package, at top level?)`` for every import statement of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = {id(node) for node in tree.body}
    typing_only = {id(inner) for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) in
                   ("TYPE_CHECKING", "typing.TYPE_CHECKING") for inner in ast.walk(node)}  # never executed
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from .kernels import reference` imports a module; `from .config import X` a module's name
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found += [(target, id(node) in top) for target in targets if target in known and target != name]
    return found


def test_the_package_imports_at_top_level_without_a_cycle():
    modules = _modules()
    assert {"egom2p.model.model", "egom2p.model.checkpoint", "egom2p.model.hub"} <= set(modules)
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for target, top_level in _imports(name, path, set(modules)):
            graph[name].add(target)
            assert top_level or target.startswith(f"{PACKAGE}.kernels."), (
                f"{name} imports {target} inside a function: import it at top level")

    # depth-first search for a back edge
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            assert state.get(target) != 1, f"import cycle: {' -> '.join([*path, name, target])}"
            if target not in state:
                visit(target, [*path, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_graph_reader_sees_function_level_imports(tmp_path):
    """The checker itself: an import inside a function is an edge, marked as not at top level."""
    path = tmp_path / "a.py"
    path.write_text("from typing import TYPE_CHECKING\nfrom .b import x\n\nif TYPE_CHECKING:\n    from .e import z\n\n"
                    "def f():\n    from .c import y\n    import egom2p.model.d\n")
    known = {"egom2p.model.a", "egom2p.model.b", "egom2p.model.c", "egom2p.model.d", "egom2p.model.e"}
    assert sorted(_imports("egom2p.model.a", path, known)) == [
        ("egom2p.model.b", True), ("egom2p.model.c", False), ("egom2p.model.d", False)]
