"""Shipping a plan to worker processes: user classes by value, real file names kept.

Workers are fresh interpreters that never import the user's script (``__main__``) nor
re-run a flow file loaded by path. cloudpickle ships the plan's functions and classes
by value, which covers the plan itself. Two things it does not cover:

- **Items and state that are instances of the user's classes.** They cross workers and
  go into snapshots with plain :mod:`pickle` (no per-item cloudpickle on the hot path),
  which stores a class *by reference*: ``module.QualName``. In a worker, that module
  (``__main__``, or the synthetic module of a flow file) does not hold the class, so
  pickling fails. :func:`dumps_plan` therefore ships, with the plan, the classes
  defined in every such *user module*, and :func:`loads_plan` installs them under
  their module name in the worker (the same objects the plan refers to), so plain
  pickle finds them both ways. Snapshots written this way load in any later process
  that loads the same flow, since the module name stays the same.
- **File names in tracebacks.** cloudpickle replaces every shipped function's file
  name with ``<dynamic-code>``; the plan's code objects are shipped with
  :mod:`marshal` instead, which keeps file names and line numbers, so a worker's
  traceback shows the user's file, line and source text as in-process runs do.

A user module is ``__main__`` and every module registered with
``cloudpickle.register_pickle_by_value`` (the CLI registers a flow file it loads).
"""

from __future__ import annotations

import copyreg
import io
import marshal
import pickle
import sys
import types
from collections import ChainMap
from typing import Any

import cloudpickle

__all__ = ["dumps_plan", "loads_plan", "user_modules"]


def user_modules() -> list[str]:
    """Names of the loaded modules whose objects workers cannot import by name."""
    names = ["__main__", *sorted(cloudpickle.list_registry_pickle_by_value())]
    return [name for name in names if name in sys.modules]


def _module_classes(name: str) -> dict[str, type]:
    """The classes defined at the top level of module ``name``."""
    module = sys.modules[name]
    found = {}
    for attr, value in list(vars(module).items()):
        if isinstance(value, type) and value.__module__ == name and value.__qualname__ == attr:
            try:
                cloudpickle.dumps(value)
            except Exception:  # a class the flow cannot be using across processes
                continue
            found[attr] = value
    return found


def _reduce_code(code: types.CodeType) -> tuple[Any, tuple[bytes]]:
    return marshal.loads, (marshal.dumps(code),)


class _PlanPickler(cloudpickle.Pickler):
    """cloudpickle, but code objects keep their file names (marshal is exact)."""

    dispatch_table = ChainMap(
        {types.CodeType: _reduce_code},
        cloudpickle.Pickler.dispatch_table,
        copyreg.dispatch_table,
    )


def dumps_plan(plan: Any) -> bytes:
    """Pickle ``plan`` for a worker process, with the classes of the user modules.

    Raises what cloudpickle raises for an object that cannot be pickled.
    """
    classes = {name: _module_classes(name) for name in user_modules()}
    buffer = io.BytesIO()
    _PlanPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump((plan, classes))
    return buffer.getvalue()


def loads_plan(data: bytes) -> Any:
    """Unpickle a plan from :func:`dumps_plan` and install the user classes it carries.

    Each class goes into ``sys.modules[module_name]`` (created if missing; a worker's own
    ``__main__`` gets the attributes), so plain pickle of items and state finds it.
    """
    plan, classes = pickle.loads(data)
    for name, namespace in classes.items():
        module = sys.modules.get(name)
        if module is None:
            module = sys.modules[name] = types.ModuleType(name)
        for attr, cls in namespace.items():
            if getattr(module, attr, None) is not cls:
                setattr(module, attr, cls)
    return plan
