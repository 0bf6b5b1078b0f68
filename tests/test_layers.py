"""The layers are one-way and the module graph has no cycle.

- ``shm`` and ``recovery`` import neither each other nor ``engine``.
- ``engine.runtime`` executes plans: it imports the public definitions, ``shm`` and
  ``recovery``, never ``engine.testing``, ``engine.tools`` or the CLI entry ``engine.run``.
- The public API (``engine.dataflow``, ``engine.operators``, ``engine.inputs``, ...) never
  imports ``engine.tools``.
- No import cycle among the project's modules, counting every import statement: at
  module level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "shm", "recovery")
FORBIDDEN = {"shm": {"engine", "recovery"}, "recovery": {"engine", "shm"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import of ``name`` loads: the longest known prefix."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The project modules ``module`` imports, from every import statement in it."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import sub`` imports the submodule; ``from pkg import name``, pkg.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != module:
                yield resolved


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: set(_imports(name, path, modules)) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_and_type_checking_count(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from engine.dataflow import Dataflow\n"
        "def f():\n    from engine.runtime import supervisor\n"
        "    import shm\n"
    )
    path = tmp_path / "probe.py"
    path.write_text(source)
    modules = project_modules()
    found = set(_imports("engine.probe", path, modules))
    assert found == {"engine.dataflow", "engine.runtime.supervisor", "shm"}


def test_no_import_cycle_among_the_project_modules() -> None:
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles (break them by moving the shared code down a layer)"


def _offenders(graph: dict[str, set[str]], sources: str, targets: tuple[str, ...]) -> list[str]:
    def within(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    return sorted(
        f"{module} imports {target}"
        for module, imported in graph.items()
        if within(module, sources)
        for target in imported
        if any(within(target, t) for t in targets)
    )


def test_the_runtime_imports_no_test_helpers_tools_or_cli() -> None:
    graph = import_graph()
    assert (
        _offenders(graph, "engine.runtime", ("engine.testing", "engine.tools", "engine.run")) == []
    )


@pytest.mark.parametrize(
    "public",
    [
        "engine.dataflow",
        "engine.operators",
        "engine.inputs",
        "engine.outputs",
        "engine.errors",
        "engine.connectors",
        "engine.testing",
    ],
)
def test_the_public_api_imports_no_tools(public: str) -> None:
    assert _offenders(import_graph(), public, ("engine.tools",)) == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upper_layers(package: str) -> None:
    graph = import_graph()
    offenders = _offenders(graph, package, tuple(sorted(FORBIDDEN[package])))
    assert offenders == [], f"{package} must not import {sorted(FORBIDDEN[package])}"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_importing_a_lower_layer_loads_no_upper_layer(package: str) -> None:
    code = (
        f"import sys, {package}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'engine', 'shm', 'recovery'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == repr([package])
