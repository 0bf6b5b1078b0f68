"""Gathering the values of a key into lists: :func:`collect`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias, TypeVar

from engine.dataflow import current_step_id, operator
from engine.operators._core import KeyedStream, StatefulBatchLogic, stateful_batch

__all__ = ["collect"]

V = TypeVar("V")

#: Snapshot of a collecting key: the values gathered so far and when they are due.
CollectState: TypeAlias = tuple[tuple[Any, ...], datetime | None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _CollectLogic(StatefulBatchLogic[V, list[V], CollectState]):
    """The list being gathered for one key and its deadline.

    As in Bytewax 0.21, the deadline restarts at every value: it is ``timeout`` after the
    last value added to the list (``None`` if that is beyond what a datetime can hold). A
    list is emitted when it reaches ``max_size``, by :meth:`on_notify` at its deadline,
    or at EOF. A value arriving after the deadline but before the notification ran joins
    the list and restarts the deadline (the runtime calls ``on_batch`` before
    ``on_notify`` within an activation).
    """

    __slots__ = ("acc", "deadline", "max_size", "now_getter", "timeout")

    def __init__(
        self,
        timeout: timedelta,
        max_size: int,
        now_getter: Callable[[], datetime],
        resume: CollectState | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_size = max_size
        self.now_getter = now_getter
        values, self.deadline = resume if resume is not None else ((), None)
        self.acc: list[V] = list(values)

    def _deadline_from(self, now: datetime) -> datetime | None:
        try:
            return now + self.timeout
        except OverflowError:  # e.g. timedelta.max: never time out
            return None

    def on_batch(self, values: list[V]) -> tuple[Iterable[list[V]], bool]:
        out: list[list[V]] = []
        acc, max_size = self.acc, self.max_size
        start, count = 0, len(values)
        while start < count:
            end = start + max_size - len(acc)
            acc.extend(values[start:end])
            start = end
            if len(acc) >= max_size:
                out.append(acc)
                acc = []
        self.acc = acc
        self.deadline = self._deadline_from(self.now_getter()) if acc else None
        # An empty list has nothing left to time out: drop the key's state.
        return out, not acc

    def on_notify(self) -> tuple[Iterable[list[V]], bool]:
        return self._flush()

    def on_eof(self) -> tuple[Iterable[list[V]], bool]:
        return self._flush()

    def _flush(self) -> tuple[Iterable[list[V]], bool]:
        return ((self.acc,) if self.acc else ()), StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime | None:
        return self.deadline

    def snapshot(self) -> CollectState:
        return tuple(self.acc), self.deadline


@operator
def collect(
    step_id: str, up: KeyedStream[V], timeout: timedelta, max_size: int
) -> KeyedStream[list[V]]:
    """Per key, gather values into lists of up to ``max_size`` values.

    A list is emitted as soon as it holds ``max_size`` values, or when ``timeout`` has
    passed since its latest value (each value restarts the timeout, as in Bytewax),
    whichever comes first; lists still open when the
    upstream ends are emitted then. ``max_size`` must be a positive int and ``timeout``
    a non-negative timedelta (``timedelta.max`` never times out).

    >>> import engine.operators as op
    >>> from datetime import timedelta
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("collect_eg")
    >>> pairs = op.input("inp", flow, TestingSource(
    ...     [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5), ("a", 6)]))
    >>> lists = op.collect("pairs", pairs, timeout=timedelta(minutes=1), max_size=2)
    >>> _ = op.inspect("show", lists)
    >>> run_main(flow)
    collect_eg.show: ('a', [1, 3])
    collect_eg.show: ('b', [2, 5])
    collect_eg.show: ('a', [4, 6])
    """
    outer = current_step_id()
    if not isinstance(timeout, timedelta):
        msg = f"collect {outer!r}: timeout must be a timedelta; got {timeout!r}"
        raise TypeError(msg)
    if timeout < timedelta(0):
        msg = f"collect {outer!r}: timeout must not be negative; got {timeout}"
        raise ValueError(msg)
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
        msg = f"collect {outer!r}: max_size must be a positive int; got {max_size!r}"
        raise ValueError(msg)

    def build(resume: CollectState | None) -> _CollectLogic[V]:
        return _CollectLogic(timeout, max_size, _utc_now, resume)

    return stateful_batch("stateful_batch", up, build)
