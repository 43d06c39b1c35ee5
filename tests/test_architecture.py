"""The library's house: its import graph, drawn from the modules' own imports, has no circle and no import that
climbs from a lower layer to a higher one. The layers are listed once, here, and ARCHITECTURE.md shows the
same list (checked below)."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "volbias"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("volbias", "registry", "profiles", "data", "losses", "metrics", "models"),
    ("theory",),
    ("provenance",),
    ("training",),
    ("analysis",),
    ("estimators",),
    ("audit",),
    ("bookbuild", "book_mathjax", "publish", "cli"),
)
"""Rooms (``volbias`` is the package itself, the others its subpackages and top modules) from the bottom up:
a room may import rooms of its own layer or below."""


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by the name of its ``__init__``)."""
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules it imports (anywhere in its code, function-level imports included).

    ``from package import name`` depends on the submodule ``package.name`` when there is one, else on the
    package itself (a name its ``__init__`` defines).
    """
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in found else source
                           for alias in node.names]
            for target in targets:
                while target and target not in found:
                    target = target.rpartition(".")[0]
                if target.startswith("volbias") and target != name:
                    edges[name].add(target)
    return edges


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "volbias"


def layer_of(name: str) -> int:
    for index, rooms in enumerate(LAYERS):
        if name in rooms:
            return index
    raise KeyError(f"room {name!r} is in no layer: add it to LAYERS (and to ARCHITECTURE.md)")


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def climbing(edges: dict[str, set[str]]) -> list[str]:
    """Imports from a lower layer to a higher one, as ``"a -> b"``."""
    return sorted(f"{source} -> {target}" for source, targets in edges.items() for target in targets
                  if layer_of(room(target)) > layer_of(room(source)))


def test_the_library_has_no_circle_and_no_climbing_import() -> None:
    found = modules()
    edges = import_graph(found)
    assert {room(m) for m in found} <= {r for rooms in LAYERS for r in rooms}, "a room is in no layer"
    assert circles(edges) == []
    assert climbing(edges) == []


def test_the_checks_catch_a_circle_and_a_climbing_import(tmp_path: Path) -> None:
    """A hand-made package: training imports analysis (climbing), and two audit modules import each other."""
    package = tmp_path / "volbias"
    for name, text in {
        "__init__.py": "",
        "training/__init__.py": "", "training/collect.py": "from volbias.analysis.tables import read\n",
        "analysis/__init__.py": "", "analysis/tables.py": "def read(): pass\n",
        "audit/__init__.py": "", "audit/run.py": "from .report import write\nclass Result: pass\n",
        "audit/report.py": "def write():\n    from volbias.audit.run import Result\n",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    edges = import_graph(modules(package))
    assert circles(edges) == [["volbias.audit.report", "volbias.audit.run"]]
    assert climbing(edges) == ["volbias.training.collect -> volbias.analysis.tables"]
    with pytest.raises(KeyError, match="in no layer"):
        layer_of("newroom")


def test_architecture_md_lists_the_same_layers() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", text, flags=re.MULTILINE)
    listed = [tuple(re.findall(r"`([a-z_]+)`", rooms)) for _, rooms in sorted(rows, key=lambda r: int(r[0]))]
    assert listed == list(LAYERS)
