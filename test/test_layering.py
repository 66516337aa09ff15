"""The package's layering: no import circle inside cgrs_ros, and the engine loads without the
procedural world generator (or the demo index) that only builds galleries.

The import graph is read from the source (AST), module-level imports only: an import inside a
function is a deliberate late import and cannot close a circle at import time.  Importing
``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, so those count as imported too (except
by a module inside them: its own packages are already being imported when it runs).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cgrs_ros"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module):
    """Import statements run at import time: top level, and inside top-level if/try (not TYPE_CHECKING)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}

    def add(source: str, target: str) -> None:
        parts = target.split(".")
        for n in range(1, len(parts) + 1):      # a.b.c runs a and a.b first
            name = ".".join(parts[:n])
            # the packages holding ``source`` are already being imported when it runs: no edge back to them
            if name in modules and name != source and not source.startswith(name + "."):
                graph[source].add(name)

    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _top_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(name, alias.name)
                continue
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            add(name, target)
            for alias in node.names:                # from pkg import submodule
                add(name, f"{target}.{alias.name}")
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_a_circle():
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert circles(graph) == [["p.a", "p.b", "p.c"]]


def test_the_graph_is_read_from_the_package():
    graph = import_graph()
    assert "cgrs_ros.fusion" in graph["cgrs_ros.engine"]           # from .fusion import fuse, rank_order
    assert {"cgrs_ros.errors", "cgrs_ros.models.registry"} <= graph["cgrs_ros.models.retrievers"]
    assert "cgrs_ros.models" not in graph["cgrs_ros.models.retrievers"]    # its own package: already importing


def test_no_import_circle_inside_cgrs_ros():
    assert circles(import_graph()) == []


def _modules_after(code: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                          "print(json.dumps(sorted(m for m in sys.modules if m.startswith('cgrs_ros'))))"],
                         env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_importing_the_engine_imports_no_world_generator():
    loaded = _modules_after("import cgrs_ros.engine")
    assert "cgrs_ros.engine" in loaded
    assert not [m for m in loaded if m.startswith("cgrs_ros.world")], loaded


def test_loading_an_engine_and_answering_imports_no_world_generator_nor_the_demo_index(tiny_engine_files):
    config_path, index_dir = tiny_engine_files
    loaded = _modules_after(
        "from cgrs_ros.config import load_engine_config\nfrom cgrs_ros.engine import CGRSEngine\n"
        f"engine = CGRSEngine.load(load_engine_config({str(config_path)!r}), {str(index_dir)!r})\n"
        "engine.query('a red roof')\nengine.close()")
    assert "cgrs_ros.models.onnx_text" in loaded and "cgrs_ros.paths" in loaded     # the ONNX cache was asked for
    assert not [m for m in loaded if m.startswith(("cgrs_ros.world", "cgrs_ros.demo"))], loaded
