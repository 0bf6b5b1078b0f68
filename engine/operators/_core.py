"""The eight core operators: the only steps the runtime executes.

Every other operator in :mod:`engine.operators` is a composition of these.
"""

from __future__ import annotations

import contextlib
import contextvars
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeAlias, TypeVar

from engine._checks import require_callable
from engine.dataflow import Dataflow, Stream, add_core_step, operator
from engine.inputs import Source
from engine.outputs import Sink

__all__ = [
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
]

X = TypeVar("X")
Y = TypeVar("Y")
V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")

KeyedStream: TypeAlias = Stream[tuple[str, V]]
"""A stream of ``(key, value)`` 2-tuples with ``str`` keys, as keyed steps need."""

_EMPTY: tuple[()] = ()


@operator(_core=True)
def input(step_id: str, flow: Dataflow, source: Source[X]) -> Stream[X]:
    """Introduce items from ``source`` into ``flow``.

    Partitions of a :class:`~engine.inputs.FixedPartitionedSource` are spread over the
    workers; a :class:`~engine.inputs.DynamicSource` is built once on every worker.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("input_eg")
    >>> _ = op.inspect("show", op.input("inp", flow, TestingSource(["a", "b"])))
    >>> run_main(flow)
    input_eg.show: 'a'
    input_eg.show: 'b'
    """
    if not isinstance(flow, Dataflow):
        msg = f"input {step_id!r}: flow must be a Dataflow; got {type(flow).__name__}"
        raise TypeError(msg)
    if not isinstance(source, Source):
        msg = (
            f"input {step_id!r}: source must be a FixedPartitionedSource or DynamicSource; "
            f"got {type(source).__name__}"
        )
        raise TypeError(msg)
    (down,) = add_core_step("input", flow, [], ["down"], source=source)
    return down


@operator(_core=True)
def output(step_id: str, up: Stream[X], sink: Sink[X]) -> None:
    """Write every item of ``up`` to ``sink``.

    Items for a :class:`~engine.outputs.FixedPartitionedSink` must be ``(key, value)``
    pairs; they are routed to the worker owning the key's partition and the partition
    writes the values.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSink, TestingSource, run_main
    >>> out = []
    >>> flow = Dataflow("output_eg")
    >>> op.output("out", op.input("inp", flow, TestingSource([1, 2])), TestingSink(out))
    >>> run_main(flow)
    >>> out
    [1, 2]
    """
    if not isinstance(sink, Sink):
        msg = (
            f"output {step_id!r}: sink must be a FixedPartitionedSink or DynamicSink; "
            f"got {type(sink).__name__}"
        )
        raise TypeError(msg)
    add_core_step("output", up.flow(), [up], [], sink=sink)


@operator(_core=True)
def flat_map_batch(
    step_id: str, up: Stream[X], mapper: Callable[[list[X]], Iterable[Y]]
) -> Stream[Y]:
    """Call ``mapper`` once per batch of items; emit every item of what it returns.

    The fastest way to run Python over a stream: there is no per-item dispatch.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSink, TestingSource, run_main
    >>> out = []
    >>> flow = Dataflow("fmb_eg")
    >>> nums = op.input("inp", flow, TestingSource([1, 2, 3], batch_size=3))
    >>> sums = op.flat_map_batch("sum_batch", nums, lambda batch: [sum(batch)])
    >>> op.output("out", sums, TestingSink(out))
    >>> run_main(flow)
    >>> out
    [6]
    """
    require_callable(mapper, "mapper")
    (down,) = add_core_step("flat_map_batch", up.flow(), [up], ["down"], mapper=mapper)
    return down


@dataclass(frozen=True)
class BranchOut(Generic[X, Y]):
    """The two streams of :func:`branch`."""

    trues: Stream[X]
    falses: Stream[Y]


@operator(_core=True)
def branch(step_id: str, up: Stream[X], predicate: Callable[[X], bool]) -> BranchOut[X, X]:
    """Split ``up`` in two by ``predicate``; it must return a ``bool``.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSink, TestingSource, run_main
    >>> evens, odds = [], []
    >>> flow = Dataflow("branch_eg")
    >>> split = op.branch("even", op.input("inp", flow, TestingSource(range(5))),
    ...                   lambda x: x % 2 == 0)
    >>> op.output("evens", split.trues, TestingSink(evens))
    >>> op.output("odds", split.falses, TestingSink(odds))
    >>> run_main(flow)
    >>> evens, odds
    ([0, 2, 4], [1, 3])
    """
    require_callable(predicate, "predicate")
    trues, falses = add_core_step(
        "branch", up.flow(), [up], ["trues", "falses"], predicate=predicate
    )
    return BranchOut(trues, falses)


@operator(_core=True)
def merge(step_id: str, *ups: Stream[Any]) -> Stream[Any]:
    """Combine several streams into one (no order is promised between them).

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSink, TestingSource, run_main
    >>> out = []
    >>> flow = Dataflow("merge_eg")
    >>> a = op.input("a", flow, TestingSource([1, 2]))
    >>> b = op.input("b", flow, TestingSource([3]))
    >>> op.output("out", op.merge("both", a, b), TestingSink(out))
    >>> run_main(flow)
    >>> sorted(out)
    [1, 2, 3]
    """
    if not ups:
        msg = f"merge {step_id!r} needs at least one upstream stream"
        raise TypeError(msg)
    (down,) = add_core_step("merge", ups[0].flow(), list(ups), ["down"])
    return down


@operator(_core=True)
def redistribute(step_id: str, up: Stream[X]) -> Stream[X]:
    """Spread the items of ``up`` over all workers (balances an uneven input).

    With one worker this passes items through unchanged.
    """
    (down,) = add_core_step("redistribute", up.flow(), [up], ["down"])
    return down


def _print_debug_line(step_id: str, item: Any, epoch: int, worker_index: int) -> None:
    print(f"{step_id} W{worker_index} @{epoch}: {item!r}", flush=True)


@operator(_core=True)
def inspect_debug(
    step_id: str,
    up: Stream[X],
    inspector: Callable[[str, X, int, int], None] = _print_debug_line,
) -> Stream[X]:
    """Call ``inspector(step_id, item, epoch, worker_index)`` on every item; pass it on.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("dbg_eg")
    >>> _ = op.inspect_debug("dbg", op.input("inp", flow, TestingSource(["x"])))
    >>> run_main(flow)
    dbg_eg.dbg W0 @1: 'x'
    """
    require_callable(inspector, "inspector")
    (down,) = add_core_step("inspect_debug", up.flow(), [up], ["down"], inspector=inspector)
    return down


class StatefulBatchLogic(ABC, Generic[V, W, S]):
    """The per-key logic of :func:`stateful_batch`.

    For each key, per activation, the runtime calls :meth:`on_batch` once with the values
    that arrived, then :meth:`on_notify` if :meth:`notify_at` has passed, then
    :meth:`on_eof` when the upstream has ended. Each returns ``(emits, discard)``: the
    values to emit (wrapped as ``(key, value)`` downstream) and whether to drop this
    key's logic (:attr:`DISCARD`) or keep it (:attr:`RETAIN`). :meth:`notify_at` is read
    again after every call on a retained logic; :meth:`snapshot` at the close of every
    epoch in which the key was touched.
    """

    RETAIN: bool = False
    """Keep this key's logic after the call."""

    DISCARD: bool = True
    """Drop this key's logic after the call (its snapshot becomes a tombstone)."""

    @abstractmethod
    def on_batch(self, values: list[V]) -> tuple[Iterable[W], bool]:
        """Handle the values that arrived for this key; return ``(emits, discard)``."""

    def on_notify(self) -> tuple[Iterable[W], bool]:
        """The time from :meth:`notify_at` has passed; return ``(emits, discard)``."""
        return (_EMPTY, StatefulBatchLogic.RETAIN)

    def on_eof(self) -> tuple[Iterable[W], bool]:
        """The upstream ended for this execution; return ``(emits, discard)``."""
        return (_EMPTY, StatefulBatchLogic.RETAIN)

    def notify_at(self) -> datetime | None:
        """When to call :meth:`on_notify` next (UTC), or ``None`` for never."""
        return None

    @abstractmethod
    def snapshot(self) -> S:
        """An immutable, picklable copy of the state; passed to the builder on resume."""


@dataclass(frozen=True)
class StatefulKernel:
    """Declares that a ``stateful_batch`` builder is one of the runtime's fast kernels.

    ``kind="map"``: the builder's logic is exactly ``stateful_map(fn)``; ``kind="fold"``:
    it reduces values with the associative ``fn`` and emits the result at EOF;
    ``kind="count"``: the fold of ``count_final``, whose ``params`` (a
    ``CountKernelParams``) let the runtime count raw items in place of the pre-count
    step before it; ``kind="window"``: it is a fold window step whose clock, windower
    and folds are in ``params`` (a ``WindowKernelParams``) and ``fn`` is the folder. The
    runtime then keeps plain per-key states in one dict instead of a logic object per
    key; results and snapshots are the same as running the builder's logic.
    """

    kind: str
    fn: Callable[..., Any]
    user_step_id: str
    #: What else the kernel needs (e.g. the clock and windower of ``kind="window"``).
    params: Any = None


_use_kernels: contextvars.ContextVar[bool] = contextvars.ContextVar("shmflow_kernels", default=True)


@contextlib.contextmanager
def general_path() -> Iterator[None]:
    """Stateful steps defined inside this block run one logic per key, never a kernel.

    For operators that want the general path (``collect_window``) and for tests and
    benchmarks comparing the two.
    """
    token = _use_kernels.set(False)
    try:
        yield
    finally:
        _use_kernels.reset(token)


def kernels_enabled() -> bool:
    """Whether stateful steps defined now may run on a batch kernel (see general_path)."""
    return _use_kernels.get()


@operator(_core=True)
def stateful_batch(
    step_id: str,
    up: KeyedStream[V],
    builder: Callable[[S | None], StatefulBatchLogic[V, W, S]],
    *,
    _kernel: StatefulKernel | None = None,
) -> KeyedStream[W]:
    """The general keyed stateful operator: one :class:`StatefulBatchLogic` per key.

    ``builder(resume_state)`` makes the logic for a key seen for the first time
    (``resume_state`` is ``None`` unless resuming from a snapshot). Items must be
    ``(str, value)`` pairs; they are routed to the worker owning the key.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSink, TestingSource, run_main
    >>> class RunningSum(op.StatefulBatchLogic):
    ...     def __init__(self, total):
    ...         self.total = total or 0
    ...     def on_batch(self, values):
    ...         self.total += sum(values)
    ...         return [self.total], self.RETAIN
    ...     def snapshot(self):
    ...         return self.total
    >>> out = []
    >>> flow = Dataflow("sb_eg")
    >>> pairs = op.input("inp", flow, TestingSource([("a", 1), ("b", 5), ("a", 2)]))
    >>> op.output("out", op.stateful_batch("sum", pairs, RunningSum), TestingSink(out))
    >>> run_main(flow)
    >>> out
    [('a', 1), ('b', 5), ('a', 3)]
    """
    require_callable(builder, "builder")
    # ``_kernel`` is for the operators of this package only: it tells the plan that
    # ``builder`` is one of the runtime's batch kernels (see StatefulKernel).
    kernel = _kernel if kernels_enabled() else None
    (down,) = add_core_step(
        "stateful_batch", up.flow(), [up], ["down"], builder=builder, kernel=kernel
    )
    return down
