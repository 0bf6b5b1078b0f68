"""Run an unchanged Bytewax flow file: ``bytewax.*`` imports answered by shmflow's modules.

``shmflow run --bytewax-imports flow.py`` (and ``python -m engine.run --bytewax-imports``)
loads and runs the flow inside :func:`bytewax_imports`, which puts a
:class:`BytewaxImportFinder` first on :data:`sys.meta_path`: ``import bytewax.operators
as op`` then gives ``engine.operators`` itself (the same module object, so the classes
are ours and ``isinstance`` checks hold), following :data:`BYTEWAX_MODULES`. A
``bytewax`` module without an equivalent (``bytewax.connectors.kafka``) fails with
:class:`NoBytewaxEquivalentError` (a ModuleNotFoundError) saying so, instead of silently
picking up the real Bytewax.

Only the importing process needs this: worker processes receive the compiled plan by
value and never import the flow, and the plan refers to ``engine`` modules by their own
names.

While active, an installed real ``bytewax`` cannot leak in: its modules already in
``sys.modules`` are set aside, and our finder answers every ``bytewax`` name before the
normal path search. Leaving the context removes the mapped modules and the finder and
puts the set-aside modules back. Our modules are imported lazily, when the flow imports
the ``bytewax`` name mapped to them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType

import cloudpickle

__all__ = [
    "BYTEWAX_MODULES",
    "BytewaxImportFinder",
    "NoBytewaxEquivalentError",
    "bytewax_imports",
    "is_bytewax_module",
]

#: Bytewax 0.21 module -> the shmflow module that stands in for it.
BYTEWAX_MODULES: Mapping[str, str] = {
    "bytewax.connectors": "engine.connectors",
    "bytewax.connectors.demo": "engine.connectors.demo",
    "bytewax.connectors.files": "engine.connectors.files",
    "bytewax.connectors.stdio": "engine.connectors.stdio",
    "bytewax.dataflow": "engine.dataflow",
    "bytewax.inputs": "engine.inputs",
    "bytewax.operators": "engine.operators",
    "bytewax.operators.helpers": "engine.operators.helpers",
    "bytewax.operators.windowing": "engine.operators.windowing",
    "bytewax.outputs": "engine.outputs",
    "bytewax.recovery": "engine.recovery",
    "bytewax.run": "engine.run",
    "bytewax.testing": "engine.testing",
    "bytewax.tracing": "engine.tracing",
    "bytewax.visualize": "engine.visualize",
}

_PACKAGE_DOC = """shmflow standing in for Bytewax (``--bytewax-imports``).

See :mod:`engine.tools.bytewax_imports`."""
_ERRORS_DOC = """``bytewax.errors`` under ``--bytewax-imports``: ``BytewaxRuntimeError`` is
:class:`engine.errors.EngineRuntimeError`."""


class NoBytewaxEquivalentError(ModuleNotFoundError):
    """A flow imported a ``bytewax`` module that shmflow has no stand-in for.

    Port that part of the flow by hand (or leave it out).
    """


def is_bytewax_module(name: str) -> bool:
    """Whether ``name`` is ``bytewax`` or a module inside it.

    >>> is_bytewax_module("bytewax.operators"), is_bytewax_module("bytewaxer")
    (True, False)
    """
    return name == "bytewax" or name.startswith("bytewax.")


class BytewaxImportFinder(importlib.abc.MetaPathFinder):
    """Answers imports of ``bytewax`` and ``bytewax.*`` with shmflow's modules.

    ``bytewax`` itself is an empty package and ``bytewax.errors`` a small module of its
    own; every other name in :data:`BYTEWAX_MODULES` is the shmflow module it maps to.
    Any other ``bytewax.*`` name raises ModuleNotFoundError.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not is_bytewax_module(fullname):
            return None
        if fullname == "bytewax":
            return importlib.util.spec_from_loader(fullname, _StandInLoader(), is_package=True)
        if fullname == "bytewax.errors":
            return importlib.util.spec_from_loader(fullname, _StandInLoader())
        ours = BYTEWAX_MODULES.get(fullname)
        if ours is None:
            raise NoBytewaxEquivalentError(_no_equivalent_message(fullname), name=fullname)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(fullname, ours))


def _no_equivalent_message(fullname: str) -> str:
    mapped = ", ".join(sorted(["bytewax.errors", *BYTEWAX_MODULES]))
    return (
        f"cannot import {fullname!r} under --bytewax-imports: shmflow has no equivalent of "
        f"it (mapped are: {mapped}); port that part of the flow by hand"
    )


class _AliasLoader(importlib.abc.Loader):
    """Loads a ``bytewax`` name as the very shmflow module it maps to."""

    def __init__(self, name: str, ours: str) -> None:
        self.name = name
        self.ours = ours
        self._own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        try:
            module = importlib.import_module(self.ours)
        except ModuleNotFoundError as ex:
            if ex.name is None or not self.ours.startswith(ex.name):
                raise
            raise NoBytewaxEquivalentError(
                f"cannot import {self.name!r} under --bytewax-imports: it maps to "
                f"{self.ours!r}, which this shmflow installation does not have ({ex})",
                name=self.name,
            ) from None
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system just set __spec__ to the alias spec; the module stays ours.
        module.__spec__ = self._own_spec


class _StandInLoader(importlib.abc.Loader):
    """Builds the modules of our own: the ``bytewax`` package and ``bytewax.errors``."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        if module.__name__ == "bytewax":
            module.__doc__ = _PACKAGE_DOC
        else:
            from engine import errors

            module.__doc__ = _ERRORS_DOC
            module.BytewaxRuntimeError = errors.EngineRuntimeError  # type: ignore[attr-defined]
            module.__all__ = ["BytewaxRuntimeError"]  # type: ignore[attr-defined]
        # Workers cannot import these names: ship them by value if a function refers to them.
        cloudpickle.register_pickle_by_value(module)


@contextmanager
def bytewax_imports() -> Iterator[None]:
    """Within the block, ``bytewax.*`` imports give shmflow's modules (see the module doc).

    >>> with bytewax_imports():
    ...     from bytewax.dataflow import Dataflow
    ...     from bytewax.errors import BytewaxRuntimeError
    >>> Dataflow.__module__, BytewaxRuntimeError.__name__
    ('engine.dataflow', 'EngineRuntimeError')
    """
    set_aside = _pop_bytewax_modules()
    finder = BytewaxImportFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for module in _pop_bytewax_modules().values():
            if isinstance(module.__loader__, _StandInLoader):
                cloudpickle.unregister_pickle_by_value(module)
        sys.modules.update(set_aside)


def _pop_bytewax_modules() -> dict[str, ModuleType]:
    names = [name for name in sys.modules if is_bytewax_module(name)]
    return {name: sys.modules.pop(name) for name in names}
