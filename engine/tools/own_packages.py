"""Import shmflow's own top-level packages from shmflow's location, whatever the user's directory.

A user's ``recovery.py``, ``shm.py`` or ``engine.py`` (Bytewax's recovery guide saves its
flow as ``recovery.py``) would shadow our packages of the same name as soon as the user's
directory is on ``sys.path``. The commands therefore call :func:`import_own_packages`
before any user directory goes on ``sys.path``: it puts ``shm``, ``recovery`` and
``engine`` into :data:`sys.modules` from the directory holding this package. Their
submodules, imported lazily later, resolve through the package's ``__path__`` and so
cannot be shadowed either.

``python -m engine.run`` puts the current directory first on ``sys.path`` before any of
our code runs: with an ``engine.py`` there Python cannot find ``engine.run`` at all (use
``shmflow run``, which does not put the current directory on ``sys.path``). A
``recovery.py`` or ``shm.py`` there is harmless, because ``engine.run`` calls
:func:`import_own_packages` before importing anything else.

Only the standard library is imported here.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["OWN_PACKAGES", "PACKAGE_ROOT", "import_own_packages", "is_own_package"]

#: shmflow's top-level packages; ``engine`` imports the other two, they import nothing of ours.
OWN_PACKAGES = ("shm", "recovery", "engine")
#: The directory holding ``engine/``, ``shm/`` and ``recovery/``.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def is_own_package(name: str) -> bool:
    """Whether ``name`` is, or is inside, one of shmflow's top-level packages.

    >>> is_own_package("recovery"), is_own_package("engine.operators"), is_own_package("flow")
    (True, True, False)
    """
    return name.partition(".")[0] in OWN_PACKAGES


def import_own_packages() -> None:
    """Put ``shm``, ``recovery`` and ``engine`` from :data:`PACKAGE_ROOT` into ``sys.modules``.

    Idempotent. Raises ImportError if a module of one of these names was already imported
    from somewhere else (a user's file shadowed it before this ran).

    >>> import_own_packages()
    >>> Path(sys.modules["recovery"].__file__).parent.parent == PACKAGE_ROOT
    True
    """
    for name in OWN_PACKAGES:
        module = sys.modules.get(name)
        if module is None:
            _import_from_root(name)
        elif not _is_ours(module):
            raise ImportError(
                f"the module {name!r} was imported from {getattr(module, '__file__', '?')}, "
                f"not from shmflow's package in {PACKAGE_ROOT}; rename that file or start "
                "the flow with `shmflow run path/to/flow.py`"
            )


def _is_ours(module: ModuleType) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().parent.parent == PACKAGE_ROOT


def _import_from_root(name: str) -> None:
    spec = importlib.machinery.PathFinder.find_spec(name, [str(PACKAGE_ROOT)])
    if spec is None or spec.loader is None:
        raise ImportError(f"shmflow's package {name!r} is missing from {PACKAGE_ROOT}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
