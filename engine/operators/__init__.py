"""Operators: the building blocks of a dataflow.

The runtime executes only eight core operators (:func:`input`, :func:`output`,
:func:`flat_map_batch`, :func:`stateful_batch`, :func:`branch`, :func:`merge`,
:func:`redistribute`, :func:`inspect_debug`); every other operator here is a short
composition of them. Windowing lives in :mod:`engine.operators.windowing`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.operators._collect import collect
    from engine.operators._core import (
        BranchOut,
        KeyedStream,
        StatefulBatchLogic,
        branch,
        flat_map_batch,
        input,
        inspect_debug,
        merge,
        output,
        redistribute,
        stateful_batch,
    )
    from engine.operators._enrich import TTLCache, enrich_cached
    from engine.operators._join import JoinEmitMode, JoinInsertMode, join
    from engine.operators._stateful import (
        StatefulLogic,
        count_final,
        fold_final,
        max_final,
        min_final,
        reduce_final,
        stateful,
        stateful_flat_map,
        stateful_map,
    )
    from engine.operators._stateless import (
        filter,
        filter_map,
        filter_map_value,
        filter_value,
        flat_map,
        flat_map_value,
        flatten,
        inspect,
        key_on,
        key_rm,
        map,
        map_value,
        raises,
    )

#: The module defining each name, imported when one of its names is first used: a worker
#: process unpickling a flow loads the operators that flow uses, not all of them.
_HOMES = {
    name: module
    for module, names in {
        "_collect": ("collect",),
        "_core": (
            "BranchOut",
            "KeyedStream",
            "StatefulBatchLogic",
            "branch",
            "flat_map_batch",
            "input",
            "inspect_debug",
            "merge",
            "output",
            "redistribute",
            "stateful_batch",
        ),
        "_enrich": ("TTLCache", "enrich_cached"),
        "_join": ("JoinEmitMode", "JoinInsertMode", "join"),
        "_stateful": (
            "StatefulLogic",
            "count_final",
            "fold_final",
            "max_final",
            "min_final",
            "reduce_final",
            "stateful",
            "stateful_flat_map",
            "stateful_map",
        ),
        "_stateless": (
            "filter",
            "filter_map",
            "filter_map_value",
            "filter_value",
            "flat_map",
            "flat_map_value",
            "flatten",
            "inspect",
            "key_on",
            "key_rm",
            "map",
            "map_value",
            "raises",
        ),
    }.items()
    for name in names
}


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.operators' has no attribute {name!r}")
    value = getattr(import_module(f"engine.operators.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BranchOut",
    "JoinEmitMode",
    "JoinInsertMode",
    "KeyedStream",
    "StatefulBatchLogic",
    "StatefulLogic",
    "TTLCache",
    "branch",
    "collect",
    "count_final",
    "enrich_cached",
    "filter",
    "filter_map",
    "filter_map_value",
    "filter_value",
    "flat_map",
    "flat_map_batch",
    "flat_map_value",
    "flatten",
    "fold_final",
    "input",
    "inspect",
    "inspect_debug",
    "join",
    "key_on",
    "key_rm",
    "map",
    "map_value",
    "max_final",
    "merge",
    "min_final",
    "output",
    "raises",
    "redistribute",
    "reduce_final",
    "stateful",
    "stateful_batch",
    "stateful_flat_map",
    "stateful_map",
]
