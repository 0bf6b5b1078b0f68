"""shm is the bottom layer: it must not import engine or recovery."""

from __future__ import annotations

import ast
from pathlib import Path

import shm

FORBIDDEN = ("engine", "recovery")


def test_shm_imports_neither_engine_nor_recovery() -> None:
    package_dir = Path(shm.__file__).parent
    offenders = []
    for source in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                if module.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{source.name}:{node.lineno} imports {module}")
    assert offenders == []


def test_public_names_are_exported() -> None:
    for name in shm.__all__:
        assert hasattr(shm, name), name
    assert {"Ring", "Counters", "Segment", "cleanup_stale", "ShmError"} <= set(shm.__all__)
