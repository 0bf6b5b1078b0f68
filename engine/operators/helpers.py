"""Small helpers for writing the functions that operators take."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

__all__ = ["map_dict_value"]

K = TypeVar("K")
V = TypeVar("V")
M = TypeVar("M", bound=MutableMapping[Any, Any])


def map_dict_value(key: K, mapper: Callable[[V], V]) -> Callable[[M], M]:
    """A function that replaces ``d[key]`` with ``mapper(d[key])`` and returns ``d``.

    Meant as the mapper of :func:`~engine.operators.map` over dict items: one field
    changes, the others are left alone. The dict is updated in place, not copied; a
    missing ``key`` raises ``KeyError``.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("mdv_eg")
    >>> users = op.input("inp", flow, TestingSource([{"name": "ada", "id": 1}]))
    >>> _ = op.inspect("show", op.map("cap", users, map_dict_value("name", str.title)))
    >>> run_main(flow)
    mdv_eg.show: {'name': 'Ada', 'id': 1}
    """

    def map_one_value(obj: M) -> M:
        obj[key] = mapper(obj[key])
        return obj

    return map_one_value
