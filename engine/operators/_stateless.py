"""Stateless operators, all built on :func:`~engine.operators.flat_map_batch`.

Each one maps over the whole batch in one comprehension, so the per-item cost is the
user's function plus a few tens of nanoseconds.
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from engine._checks import require_callable
from engine._keyed import check_keyed, require_str_keys
from engine.dataflow import Stream, current_step_id, operator
from engine.errors import ItemTypeError, item_repr
from engine.operators._core import KeyedStream, flat_map_batch, inspect_debug, output
from engine.outputs import DynamicSink, StatelessSinkPartition

__all__ = [
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
]

X = TypeVar("X")
Y = TypeVar("Y")
V = TypeVar("V")
W = TypeVar("W")


#: Callables whose calls CPython (3.11+) inlines when made from Python code: for them a
#: comprehension beats ``map`` by ~5 ns per item (~15% of a ``lambda x: x + 1`` step);
#: for builtins and other callables ``map`` (C calling C) is the faster.
_INLINED_CALLS = (types.FunctionType, types.MethodType)


def _applier(fn: Callable[[X], Y]) -> Callable[[list[X]], list[Y]]:
    """``batch -> [fn(x) for x in batch]``, in the faster of two ways for ``fn``'s kind.

    >>> _applier(lambda x: x + 1)([1, 2]), _applier(abs)([-1, 2])
    ([2, 3], [1, 2])
    """
    if isinstance(fn, _INLINED_CALLS):

        def apply_python(batch: list[X]) -> list[Y]:
            return [fn(x) for x in batch]

        return apply_python

    def apply_builtin(batch: list[X]) -> list[Y]:
        return list(builtins.map(fn, batch))

    return apply_builtin


def _check_bools(step_id: str, batch: list[Any], flags: list[Any], what: str) -> None:
    """Raise ItemTypeError unless every flag is a bool."""
    if {type(f) for f in flags} <= {bool}:
        return
    for item, flag in zip(batch, flags, strict=True):
        if type(flag) is not bool:
            msg = (
                f"{what} in step {step_id!r} must return a bool; it returned "
                f"{type(flag).__name__} {item_repr(flag)} for item {item_repr(item)}"
            )
            raise ItemTypeError(msg)


def _not_iterable(step_id: str, result: object, item: object) -> ItemTypeError:
    return ItemTypeError(
        f"mapper of step {step_id!r} must return an iterable (it expects mapper results "
        f"to be iterables); it returned {type(result).__name__} {item_repr(result)} for "
        f"item {item_repr(item)}. Return a list, e.g. [value], or [] to emit nothing"
    )


@operator
def map(step_id: str, up: Stream[X], mapper: Callable[[X], Y]) -> Stream[Y]:
    """Transform every item with ``mapper``.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("map_eg")
    >>> _ = op.inspect("show", op.map("inc", op.input("inp", flow, TestingSource([1, 2])),
    ...                           lambda x: x + 1))
    >>> run_main(flow)
    map_eg.show: 2
    map_eg.show: 3
    """
    require_callable(mapper, "mapper")

    return flat_map_batch("flat_map_batch", up, _applier(mapper))


@operator
def map_value(step_id: str, up: KeyedStream[V], mapper: Callable[[V], W]) -> KeyedStream[W]:
    """Transform the value of every ``(key, value)`` item, keeping the key.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("mv_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", 1)]))
    >>> _ = op.inspect("show", op.map_value("neg", pairs, lambda v: -v))
    >>> run_main(flow)
    mv_eg.show: ('a', -1)
    """
    require_callable(mapper, "mapper")
    step = current_step_id()

    def map_value_batch(batch: list[tuple[str, V]]) -> list[tuple[str, W]]:
        try:
            return [(k, mapper(v)) for k, v in batch]
        except (TypeError, ValueError):
            check_keyed(step, batch)
            raise

    return flat_map_batch("flat_map_batch", up, map_value_batch)


@operator
def flat_map(step_id: str, up: Stream[X], mapper: Callable[[X], Iterable[Y]]) -> Stream[Y]:
    """Emit every item of the iterable ``mapper`` returns for each item.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("fm_eg")
    >>> words = op.flat_map("split", op.input("inp", flow, TestingSource(["a b"])), str.split)
    >>> _ = op.inspect("show", words)
    >>> run_main(flow)
    fm_eg.show: 'a'
    fm_eg.show: 'b'
    """
    require_callable(mapper, "mapper")

    step = current_step_id()

    def flat_map_each(batch: list[X]) -> list[Y]:
        out: list[Y] = []
        extend = out.extend
        for x in batch:
            ys = mapper(x)
            try:
                extend(ys)
            except TypeError:
                if not isinstance(ys, Iterable):
                    raise _not_iterable(step, ys, x) from None
                raise
        return out

    return flat_map_batch("flat_map_batch", up, flat_map_each)


@operator
def flat_map_value(
    step_id: str, up: KeyedStream[V], mapper: Callable[[V], Iterable[W]]
) -> KeyedStream[W]:
    """Emit ``(key, w)`` for every ``w`` that ``mapper(value)`` returns.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("fmv_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("k", "x y")]))
    >>> _ = op.inspect("show", op.flat_map_value("split", pairs, str.split))
    >>> run_main(flow)
    fmv_eg.show: ('k', 'x')
    fmv_eg.show: ('k', 'y')
    """
    require_callable(mapper, "mapper")
    step = current_step_id()

    def flat_map_value_batch(batch: list[tuple[str, V]]) -> list[tuple[str, W]]:
        out: list[tuple[str, W]] = []
        append = out.append
        try:
            for k, v in batch:
                ws = mapper(v)
                try:
                    for w in ws:
                        append((k, w))
                except TypeError:
                    if not isinstance(ws, Iterable):
                        raise _not_iterable(step, ws, v) from None
                    raise
        except ItemTypeError:
            raise
        except (TypeError, ValueError):
            check_keyed(step, batch)
            raise
        return out

    return flat_map_batch("flat_map_batch", up, flat_map_value_batch)


@operator
def flatten(step_id: str, up: Stream[Iterable[X]]) -> Stream[X]:
    """Emit every element of every (iterable) item.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("flat_eg")
    >>> _ = op.inspect("show", op.flatten("f", op.input("inp", flow, TestingSource([[1, 2]]))))
    >>> run_main(flow)
    flat_eg.show: 1
    flat_eg.show: 2
    """
    step = current_step_id()

    def flatten_batch(batch: list[Iterable[X]]) -> list[X]:
        try:
            return [x for xs in batch for x in xs]
        except TypeError:
            bad = next(xs for xs in batch if not isinstance(xs, Iterable))
            msg = (
                f"step {step!r} needs iterable items (it requires upstream to be iterables); "
                f"got {type(bad).__name__} {item_repr(bad)}"
            )
            raise ItemTypeError(msg) from None

    return flat_map_batch("flat_map_batch", up, flatten_batch)


@operator
def filter(step_id: str, up: Stream[X], predicate: Callable[[X], bool]) -> Stream[X]:
    """Keep the items for which ``predicate`` returns True (it must return a bool).

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("filter_eg")
    >>> nums = op.input("inp", flow, TestingSource(range(4)))
    >>> _ = op.inspect("show", op.filter("odd", nums, lambda x: x % 2 == 1))
    >>> run_main(flow)
    filter_eg.show: 1
    filter_eg.show: 3
    """
    require_callable(predicate, "predicate")
    step = current_step_id()

    flags_of = _applier(predicate)

    def filter_batch(batch: list[X]) -> list[X]:
        flags = flags_of(batch)
        _check_bools(step, batch, flags, "predicate")
        return [x for x, keep in zip(batch, flags, strict=True) if keep]

    return flat_map_batch("flat_map_batch", up, filter_batch)


@operator
def filter_value(
    step_id: str, up: KeyedStream[V], predicate: Callable[[V], bool]
) -> KeyedStream[V]:
    """Keep the ``(key, value)`` items whose value passes ``predicate``.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("fv_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", 1), ("b", -1)]))
    >>> _ = op.inspect("show", op.filter_value("pos", pairs, lambda v: v > 0))
    >>> run_main(flow)
    fv_eg.show: ('a', 1)
    """
    require_callable(predicate, "predicate")
    step = current_step_id()

    def filter_value_batch(batch: list[tuple[str, V]]) -> list[tuple[str, V]]:
        try:
            flags = [predicate(v) for _, v in batch]
        except (TypeError, ValueError):
            check_keyed(step, batch)
            raise
        _check_bools(step, batch, flags, "predicate")
        return [kv for kv, keep in zip(batch, flags, strict=True) if keep]

    return flat_map_batch("flat_map_batch", up, filter_value_batch)


@operator
def filter_map(step_id: str, up: Stream[X], mapper: Callable[[X], Y | None]) -> Stream[Y]:
    """Map every item and drop the results that are ``None``.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("fmap_eg")
    >>> raw = op.input("inp", flow, TestingSource(["1", "x", "3"]))
    >>> parse = lambda s: int(s) if s.isdigit() else None
    >>> _ = op.inspect("show", op.filter_map("parse", raw, parse))
    >>> run_main(flow)
    fmap_eg.show: 1
    fmap_eg.show: 3
    """
    require_callable(mapper, "mapper")

    apply = _applier(mapper)

    def filter_map_batch(batch: list[X]) -> list[Y]:
        return [y for y in apply(batch) if y is not None]

    return flat_map_batch("flat_map_batch", up, filter_map_batch)


@operator
def filter_map_value(
    step_id: str, up: KeyedStream[V], mapper: Callable[[V], W | None]
) -> KeyedStream[W]:
    """Map every value and drop the ``(key, value)`` items whose result is ``None``.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("fmapv_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", "1"), ("b", "x")]))
    >>> _ = op.inspect("show", op.filter_map_value("parse", pairs,
    ...                                        lambda s: int(s) if s.isdigit() else None))
    >>> run_main(flow)
    fmapv_eg.show: ('a', 1)
    """
    require_callable(mapper, "mapper")
    step = current_step_id()

    def filter_map_value_batch(batch: list[tuple[str, V]]) -> list[tuple[str, W]]:
        try:
            mapped = [(k, mapper(v)) for k, v in batch]
        except (TypeError, ValueError):
            check_keyed(step, batch)
            raise
        return [(k, w) for k, w in mapped if w is not None]

    return flat_map_batch("flat_map_batch", up, filter_map_value_batch)


@operator
def key_on(step_id: str, up: Stream[X], key: Callable[[X], str]) -> KeyedStream[X]:
    """Make ``(key(item), item)`` pairs; ``key`` must return a ``str``.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("key_eg")
    >>> users = op.input("inp", flow, TestingSource([{"id": "u1"}]))
    >>> _ = op.inspect("show", op.key_on("by_id", users, lambda u: u["id"]))
    >>> run_main(flow)
    key_eg.show: ('u1', {'id': 'u1'})
    """
    require_callable(key, "key")
    step = current_step_id()

    keys_of = _applier(key)

    def key_batch(batch: list[X]) -> list[tuple[str, X]]:
        keys = keys_of(batch)
        require_str_keys(step, batch, keys)
        return list(zip(keys, batch, strict=True))

    return flat_map_batch("flat_map_batch", up, key_batch)


@operator
def key_rm(step_id: str, up: KeyedStream[X]) -> Stream[X]:
    """Drop the keys of ``(key, value)`` items, keeping the values.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("keyrm_eg")
    >>> _ = op.inspect("show", op.key_rm("rm", op.input("inp", flow, TestingSource([("a", 1)]))))
    >>> run_main(flow)
    keyrm_eg.show: 1
    """
    step = current_step_id()

    def key_rm_batch(batch: list[tuple[str, X]]) -> list[X]:
        try:
            return [v for _, v in batch]
        except (TypeError, ValueError):
            check_keyed(step, batch)
            raise

    return flat_map_batch("flat_map_batch", up, key_rm_batch)


def _print_step_and_item(step_id: str, item: Any) -> None:
    print(f"{step_id}: {item!r}", flush=True)


@dataclass(frozen=True)
class _PrintItems:
    """The default inspector of :func:`inspect`: prints ``step_id: item``.

    It runs where the item is inspected, also on a worker process (``runs_in_worker``,
    see :mod:`engine.runtime.relay`), so each line shows the item before later steps
    change it and comes out in order with that worker's other output.
    """

    runs_in_worker: ClassVar[bool] = True
    step_id: str

    def __call__(self, _step_id: str, item: Any, _epoch: int, _worker: int) -> None:
        _print_step_and_item(self.step_id, item)


@operator
def inspect(
    step_id: str,
    up: Stream[X],
    inspector: Callable[[str, X], None] = _print_step_and_item,
) -> Stream[X]:
    """Call ``inspector(step_id, item)`` on every item (default: print it); pass it on.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("insp_eg")
    >>> _ = op.inspect("show", op.input("inp", flow, TestingSource(["hi"])))
    >>> run_main(flow)
    insp_eg.show: 'hi'
    """
    require_callable(inspector, "inspector")
    outer = current_step_id()
    if inspector is _print_step_and_item:
        return inspect_debug("inspect_debug", up, _PrintItems(outer))

    def shim(_inner_step_id: str, item: X, _epoch: int, _worker: int) -> None:
        inspector(outer, item)

    return inspect_debug("inspect_debug", up, shim)


class _RaisePartition(StatelessSinkPartition[Any]):
    def __init__(self, step_id: str) -> None:
        self._step_id = step_id

    def write_batch(self, items: list[Any]) -> None:
        msg = f"step {self._step_id!r} (op.raises) received item {item_repr(items[0])}"
        raise RuntimeError(msg)


class _RaiseSink(DynamicSink[Any]):
    def __init__(self, step_id: str) -> None:
        self._step_id = step_id

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RaisePartition:
        return _RaisePartition(self._step_id)


@operator
def raises(step_id: str, up: Stream[Any]) -> None:
    """Fail the run if any item arrives (for asserting a stream stays empty)."""
    output("output", up, _RaiseSink(current_step_id()))
