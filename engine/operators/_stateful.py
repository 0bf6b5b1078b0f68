"""Keyed stateful operators, all built on :func:`~engine.operators.stateful_batch`.

Folding operators (``count_final``, ``reduce_final``, ``max_final``, ``min_final``)
pre-aggregate each batch per key in a stateless step before the keyed one, so only one
partial result per key and batch crosses workers. The runtime runs ``count_final`` on a
kernel that replaces that step and counts raw items into one partial per key and epoch.
"""

from __future__ import annotations

import builtins
import inspect
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import add as _add
from typing import Any, Generic, TypeVar

from engine._checks import require_callable
from engine._keyed import check_keyed, require_str_keys
from engine.dataflow import Stream, current_step_id, operator
from engine.errors import ItemTypeError, item_repr
from engine.operators._core import (
    KeyedStream,
    StatefulBatchLogic,
    StatefulKernel,
    flat_map_batch,
    stateful_batch,
)

__all__ = [
    "CountKernelParams",
    "StatefulLogic",
    "count_final",
    "fold_final",
    "max_final",
    "min_final",
    "reduce_final",
    "stateful",
    "stateful_flat_map",
    "stateful_map",
]

V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")
X = TypeVar("X")

_EMPTY: tuple[()] = ()


class StatefulLogic(ABC, Generic[V, W, S]):
    """The per-key logic of :func:`stateful`, one value at a time.

    Like :class:`~engine.operators.StatefulBatchLogic` but :meth:`on_item` is called once
    per value. Return ``(emits, discard)`` from each ``on_*`` call.
    """

    RETAIN: bool = False
    """Keep this key's logic after the call."""

    DISCARD: bool = True
    """Drop this key's logic after the call."""

    @abstractmethod
    def on_item(self, value: V) -> tuple[Iterable[W], bool]:
        """Handle one value for this key; return ``(emits, discard)``."""

    def on_notify(self) -> tuple[Iterable[W], bool]:
        """The time from :meth:`notify_at` has passed; return ``(emits, discard)``."""
        return (_EMPTY, StatefulLogic.RETAIN)

    def on_eof(self) -> tuple[Iterable[W], bool]:
        """The upstream ended for this execution; return ``(emits, discard)``."""
        return (_EMPTY, StatefulLogic.RETAIN)

    def notify_at(self) -> datetime | None:
        """When to call :meth:`on_notify` next (UTC), or ``None``."""
        return None

    @abstractmethod
    def snapshot(self) -> S:
        """An immutable, picklable copy of the state."""


class _PerItem(StatefulBatchLogic[V, W, S]):
    """Adapts a :class:`StatefulLogic` to the batch interface.

    Values after a discard go to a freshly built logic, as if they were new.
    """

    __slots__ = ("builder", "logic")

    def __init__(self, builder: Callable[[S | None], StatefulLogic[V, W, S]], logic: Any) -> None:
        self.builder = builder
        self.logic = logic

    def on_batch(self, values: list[V]) -> tuple[Iterable[W], bool]:
        out: list[W] = []
        discard = False
        for value in values:
            if discard:
                self.logic = self.builder(None)
            emits, discard = self.logic.on_item(value)
            out.extend(emits)
        return out, discard

    def on_notify(self) -> tuple[Iterable[W], bool]:
        return self.logic.on_notify()

    def on_eof(self) -> tuple[Iterable[W], bool]:
        return self.logic.on_eof()

    def notify_at(self) -> datetime | None:
        return self.logic.notify_at()

    def snapshot(self) -> S:
        return self.logic.snapshot()


@operator
def stateful(
    step_id: str,
    up: KeyedStream[V],
    builder: Callable[[S | None], StatefulLogic[V, W, S]],
) -> KeyedStream[W]:
    """Keyed stateful operator with one :class:`StatefulLogic` per key.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> class FirstTwo(op.StatefulLogic):
    ...     def __init__(self, seen):
    ...         self.seen = seen or 0
    ...     def on_item(self, value):
    ...         self.seen += 1
    ...         return ([value] if self.seen <= 2 else []), self.RETAIN
    ...     def snapshot(self):
    ...         return self.seen
    >>> flow = Dataflow("stateful_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", 1), ("a", 2), ("a", 3)]))
    >>> _ = op.inspect("show", op.stateful("first_two", pairs, FirstTwo))
    >>> run_main(flow)
    stateful_eg.show: ('a', 1)
    stateful_eg.show: ('a', 2)
    """

    def build(resume: S | None) -> _PerItem[V, W, S]:
        return _PerItem(builder, builder(resume))

    return stateful_batch("stateful_batch", up, build)


def mapper_result_error(
    operator_name: str, step_id: str, result: Any, value: Any, *, flat: bool = False
) -> ItemTypeError:
    """The error for a ``stateful_map``/``stateful_flat_map`` mapper's wrong return."""
    second = "iterable_of_emits" if flat else "emit_value"
    return ItemTypeError(
        f"mapper of {operator_name} step {step_id!r} must return a 2-tuple "
        f"(updated_state, {second}); it returned {type(result).__name__} "
        f"{item_repr(result)} for value {item_repr(value)}"
    )


class _StatefulMapperLogic(StatefulBatchLogic[V, W, S | None]):
    """Runs a ``stateful_map`` (or, ``flat``, ``stateful_flat_map``) mapper over the
    values of one key; a ``None`` state discards the key."""

    __slots__ = ("flat", "mapper", "state", "step_id")

    def __init__(
        self,
        step_id: str,
        mapper: Callable[[S | None, V], Any],
        state: S | None,
        *,
        flat: bool = False,
    ) -> None:
        self.step_id = step_id
        self.mapper = mapper
        self.state = state
        self.flat = flat

    def on_batch(self, values: list[V]) -> tuple[Iterable[W], bool]:
        mapper, state, out = self.mapper, self.state, []
        for value in values:
            result = mapper(state, value)
            if type(result) is not tuple or len(result) != 2:
                name = "stateful_flat_map" if self.flat else "stateful_map"
                raise mapper_result_error(name, self.step_id, result, value, flat=self.flat)
            state = result[0]
            if self.flat:
                out.extend(result[1])
            else:
                out.append(result[1])
        self.state = state
        return out, state is None

    def snapshot(self) -> S | None:
        return self.state


@operator
def stateful_map(
    step_id: str,
    up: KeyedStream[V],
    mapper: Callable[[S | None, V], tuple[S | None, W]],
) -> KeyedStream[W]:
    """Per key, call ``mapper(state, value) -> (new_state, emit)``; ``None`` state drops it.

    The first call for a key gets ``state=None``.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> def running_sum(total, value):
    ...     total = (total or 0) + value
    ...     return total, total
    >>> flow = Dataflow("smap_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", 1), ("a", 2), ("b", 5)]))
    >>> _ = op.inspect("show", op.stateful_map("sum", pairs, running_sum))
    >>> run_main(flow)
    smap_eg.show: ('a', 1)
    smap_eg.show: ('a', 3)
    smap_eg.show: ('b', 5)
    """
    outer = current_step_id()

    def build(resume: S | None) -> _StatefulMapperLogic[V, W, S]:
        return _StatefulMapperLogic(outer, mapper, resume)

    kernel = StatefulKernel("map", mapper, outer)
    return stateful_batch("stateful_batch", up, build, _kernel=kernel)


@operator
def stateful_flat_map(
    step_id: str,
    up: KeyedStream[V],
    mapper: Callable[[S | None, V], tuple[S | None, Iterable[W]]],
) -> KeyedStream[W]:
    """Like :func:`stateful_map` but the mapper returns an iterable of values to emit.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> def dedupe(seen, value):
    ...     seen = seen or set()
    ...     fresh = [] if value in seen else [value]
    ...     return seen | {value}, fresh
    >>> flow = Dataflow("sfm_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", 1), ("a", 1), ("a", 2)]))
    >>> _ = op.inspect("show", op.stateful_flat_map("dedupe", pairs, dedupe))
    >>> run_main(flow)
    sfm_eg.show: ('a', 1)
    sfm_eg.show: ('a', 2)
    """
    outer = current_step_id()

    def build(resume: S | None) -> _StatefulMapperLogic[V, W, S]:
        return _StatefulMapperLogic(outer, mapper, resume, flat=True)

    return stateful_batch("stateful_batch", up, build)


_NO_STATE = object()


class _FoldLogic(StatefulBatchLogic[V, S, S]):
    """Folds every value of a key; emits the result at EOF and discards."""

    __slots__ = ("folder", "state")

    def __init__(self, folder: Callable[[S, V], S], state: S) -> None:
        self.folder = folder
        self.state = state

    def on_batch(self, values: list[V]) -> tuple[Iterable[S], bool]:
        folder, state = self.folder, self.state
        for value in values:
            state = folder(state, value)
        self.state = state
        return _EMPTY, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[S], bool]:
        return (self.state,), StatefulBatchLogic.DISCARD

    def snapshot(self) -> S:
        return self.state


@operator
def fold_final(
    step_id: str,
    up: KeyedStream[V],
    builder: Callable[[], S],
    folder: Callable[[S, V], S],
) -> KeyedStream[S]:
    """Per key, fold every value into an accumulator from ``builder()``; emit it at EOF.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("fold_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", 1), ("b", 2), ("a", 3)]))
    >>> _ = op.inspect("show", op.fold_final("collect", pairs, list, lambda acc, v: acc + [v]))
    >>> run_main(flow)
    fold_eg.show: ('a', [1, 3])
    fold_eg.show: ('b', [2])
    """

    def build(resume: S | None) -> _FoldLogic[V, S]:
        return _FoldLogic(folder, builder() if resume is None else resume)

    return stateful_batch("stateful_batch", up, build)


def _pre_reduce(
    step_id: str, reducer: Callable[[V, V], V]
) -> Callable[[list[tuple[str, V]]], list[tuple[str, V]]]:
    """A batch mapper that reduces the values of each key within one batch."""

    def reduce_batch(batch: list[tuple[str, V]]) -> list[tuple[str, V]]:
        acc: dict[str, Any] = {}
        get = acc.get
        try:
            for key, value in batch:
                prev = get(key, _NO_STATE)
                acc[key] = value if prev is _NO_STATE else reducer(prev, value)
        except (TypeError, ValueError):
            check_keyed(step_id, batch)  # a malformed item: raises naming it
            raise
        return list(acc.items())

    return reduce_batch


class _ReduceLogic(StatefulBatchLogic[V, V, V]):
    __slots__ = ("reducer", "state")

    def __init__(self, reducer: Callable[[V, V], V], state: Any) -> None:
        self.reducer = reducer
        self.state = state

    def on_batch(self, values: list[V]) -> tuple[Iterable[V], bool]:
        reducer, state = self.reducer, self.state
        for value in values:
            state = value if state is _NO_STATE else reducer(state, value)
        self.state = state
        return _EMPTY, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[V], bool]:
        return (self.state,), StatefulBatchLogic.DISCARD

    def snapshot(self) -> V:
        return self.state


def _reduce_stateful(up: KeyedStream[V], reducer: Callable[[V, V], V]) -> KeyedStream[V]:
    step = current_step_id()
    partials = flat_map_batch("pre_reduce", up, _pre_reduce(step, reducer))

    def build(resume: V | None) -> _ReduceLogic[V]:
        return _ReduceLogic(reducer, _NO_STATE if resume is None else resume)

    kernel = StatefulKernel("fold", reducer, step)
    return stateful_batch("stateful_batch", partials, build, _kernel=kernel)


@operator
def reduce_final(step_id: str, up: KeyedStream[V], reducer: Callable[[V, V], V]) -> KeyedStream[V]:
    """Per key, combine all values with ``reducer(acc, value)``; emit the result at EOF.

    ``reducer`` must be associative: values are combined within each batch first.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("reduce_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", 1), ("a", 2), ("b", 7)]))
    >>> _ = op.inspect("show", op.reduce_final("sum", pairs, lambda a, b: a + b))
    >>> run_main(flow)
    reduce_eg.show: ('a', 3)
    reduce_eg.show: ('b', 7)
    """
    return _reduce_stateful(up, reducer)


@operator
def count_final(step_id: str, up: Stream[X], key: Callable[[X], str]) -> KeyedStream[int]:
    """Count the items per ``key(item)``; emit ``(key, count)`` at EOF.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("count_eg")
    >>> words = op.input("inp", flow, TestingSource(["a", "b", "a"]))
    >>> _ = op.inspect("show", op.count_final("count", words, lambda w: w))
    >>> run_main(flow)
    count_eg.show: ('a', 2)
    count_eg.show: ('b', 1)
    """
    require_callable(key, "key")
    step = current_step_id()
    keys_of = _CountKeys(step, None if _is_identity(key) else key)

    def count_batch(batch: list[X]) -> list[tuple[str, int]]:
        return list(Counter(keys_of(batch)).items())

    partials = flat_map_batch("count_batch", up, count_batch)

    def build(resume: int | None) -> _ReduceLogic[int]:
        return _ReduceLogic(_add, _NO_STATE if resume is None else resume)

    kernel = StatefulKernel("count", _add, step, CountKernelParams(keys_of, count_batch))
    return stateful_batch("stateful_batch", partials, build, _kernel=kernel)


class _CountKeys:
    """The keys of a batch for ``count_final``: ``key`` per item (the items themselves
    for an identity key), checked to be all ``str``."""

    def __init__(self, step: str, key: Callable[[Any], str] | None) -> None:
        self.step = step
        self.key = key

    def __call__(self, batch: list[Any]) -> list[str]:
        keys = batch if self.key is None else list(builtins.map(self.key, batch))
        require_str_keys(self.step, batch, keys)
        return keys


@dataclass(frozen=True)
class CountKernelParams:
    """What the runtime's ``count_final`` kernel needs: ``keys_of(batch)`` (the checked
    keys of a batch of raw items) and ``partials``, the per-batch pre-count mapper of the
    stateless step before the keyed one. The kernel replaces that step by counting the
    raw items itself, straight into per-epoch partial counts."""

    keys_of: Callable[[list[Any]], list[str]]
    partials: Callable[[list[Any]], list[tuple[str, int]]]


def _identity(x: Any) -> Any:
    return x


def _is_identity(fn: Any) -> bool:
    """Whether ``fn`` is a plain ``lambda x: x`` (then calling it per item can be skipped).

    >>> _is_identity(lambda w: w), _is_identity(str.lower), _is_identity(lambda w: w[0])
    (True, False, False)
    """
    code = getattr(fn, "__code__", None)
    reference = _identity.__code__
    return (
        code is not None
        and not getattr(fn, "__closure__", None)
        and not getattr(fn, "__defaults__", None)
        and code.co_argcount == 1
        and code.co_kwonlyargcount == 0
        and not code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)
        and code.co_code == reference.co_code
        and code.co_consts == reference.co_consts
    )


@operator
def max_final(
    step_id: str, up: KeyedStream[V], by: Callable[[V], Any] = _identity
) -> KeyedStream[V]:
    """Per key, the maximum value (compared by ``by(value)``), emitted at EOF.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("max_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", 3), ("a", 9), ("a", 4)]))
    >>> _ = op.inspect("show", op.max_final("max", pairs))
    >>> run_main(flow)
    max_eg.show: ('a', 9)
    """
    return _reduce_stateful(up, lambda a, b: b if by(b) > by(a) else a)


@operator
def min_final(
    step_id: str, up: KeyedStream[V], by: Callable[[V], Any] = _identity
) -> KeyedStream[V]:
    """Per key, the minimum value (compared by ``by(value)``), emitted at EOF.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("min_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", 3), ("a", 1), ("a", 4)]))
    >>> _ = op.inspect("show", op.min_final("min", pairs))
    >>> run_main(flow)
    min_eg.show: ('a', 1)
    """
    return _reduce_stateful(up, lambda a, b: b if by(b) < by(a) else a)
