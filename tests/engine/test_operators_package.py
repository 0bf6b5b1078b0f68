"""``engine.operators`` loads an operator's module when one of its names is first used:
its table of names (``_HOMES``) must stay in step with ``__all__`` and the modules."""

from __future__ import annotations

import importlib

import engine.operators as op

#: Names a module of the package exports for the runtime, not for flows.
INTERNAL = {"CountKernelParams"}


def test_the_name_table_is_the_public_api() -> None:
    assert sorted(op.__all__) == sorted(op._HOMES)
    assert sorted(dir(op)) == sorted(op.__all__)


def test_every_operator_module_is_exported_whole_and_from_its_module() -> None:
    for module_name in set(op._HOMES.values()):
        module = importlib.import_module(f"engine.operators.{module_name}")
        listed = {name for name, home in op._HOMES.items() if home == module_name}
        assert listed == set(module.__all__) - INTERNAL, module_name
        for name in listed:
            assert getattr(op, name) is getattr(module, name)
