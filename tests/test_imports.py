"""The import graph of edge_yolox and edge_yolox.train, built from the source: no cycles (imports inside functions
and importlib.import_module with a literal or f-string prefix count too), and the runtime never reaches torch or
the training package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from runtime_helpers import ROOT

PACKAGES = {"edge_yolox": ROOT / "edge_yolox", "edge_yolox.train": ROOT / "train"}


def modules() -> dict[str, Path]:
    """Module name -> source file; compiled extensions (CMakeLists' pybind11 modules) have no source here."""
    found = {f"edge_yolox.{name}": None for name in re.findall(r"pybind11_add_module\((\w+)",
                                                              (ROOT / "CMakeLists.txt").read_text())}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts))
            found[name] = path
    return found


def imported_names(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """Every module name `path` imports, anywhere in the file; dynamic imports by their literal prefix + '*'."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import submodule` imports the submodule; `from pkg import name` the package itself
            names.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                names.add(arg.values[0].value + "*")
    return names


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for module, path in known.items():
        if path is None:
            continue
        targets = set()
        for name in imported_names(path, module, known):
            if name.endswith("*"):
                targets.update(m for m in known if m.startswith(name[:-1]))
            elif name in known:
                targets.add(name)
        edges[module] = targets - {module}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_graph_sees_dynamic_and_function_level_imports():
    edges = graph()
    assert "edge_yolox.train.cli" in edges["edge_yolox.cli"]  # importlib.import_module("edge_yolox.train.cli")
    assert any(m.startswith("edge_yolox.backends.") for m in edges["edge_yolox.backends"] | edges.get(
        "edge_yolox.backends.registry", set()))  # the backend loader's f-string import
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert not cycle, " -> ".join(cycle)


def test_runtime_never_imports_training():
    edges = graph()
    runtime = {m for m in edges if not m.startswith("edge_yolox.train")} - {"edge_yolox.cli"}  # cli forwards
    for module in runtime:
        assert not {t for t in edges[module] if t.startswith("edge_yolox.train")}, module
        assert "torch" not in imported_names(modules()[module], module, modules()), module
