"""The data layer has no import circle, counting the imports inside functions (they hide one until run)."""

from __future__ import annotations

import ast
from pathlib import Path

import itpn.data

PACKAGE = Path(itpn.data.__file__).parent


def _imports(path: Path, depth: int = 1) -> set[str]:
    """The sibling modules of ``itpn.data`` one module imports, anywhere in its body; ``depth`` 2 for a
    module inside one of its packages (``coco/dataset.py``: ``..fs`` is a sibling, ``.layout`` its own)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == depth and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == depth:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("itpn.data."):
                found.add(node.module.split(".")[2])
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_cycle_finder_finds_a_circle_through_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import y\n")
    graph = {p.stem: _imports(p) for p in tmp_path.glob("*.py")}
    assert _cycle(graph) == ["a", "b", "a"]


def test_itpn_data_modules_import_each_other_without_a_circle():
    """A package of ``itpn.data`` (``coco/``, ``dota/`` ...) is one module here, importing what its files import."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if parts != ("__init__.py",):
            found.setdefault(parts[0].removesuffix(".py"), set()).update(_imports(path, len(parts)))
    graph = {name: imported & set(found) - {name} for name, imported in found.items()}
    assert _cycle(graph) is None, f"import circle in itpn/data: {' -> '.join(_cycle(graph) or [])}"
