"""What every running core step shares: :class:`Node`, its :class:`NodeContext`, and
:class:`EpochBuffer` for the steps that apply items in epoch order.

A node receives non-empty batches tagged with their epoch (``push`` from upstream on this
worker, ``deliver`` from other workers at exchange points), runs the step's user code
on the whole batch, and emits its output downstream. Its ``frontier`` is the oldest
epoch it may still see; the worker moves it forward and calls ``advance``. A node sees
its worker only through the :class:`NodeContext`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter_ns
from typing import Any

from engine._keyed import check_keyed
from engine.errors import EngineRuntimeError, ItemTypeError
from engine.runtime.plan import PlanStep
from engine.runtime.ports import (
    Exchange,
    LocalClaims,
    PartClaims,
    SnapshotRecorder,
    WorkerConfig,
)
from engine.runtime.progress import EpochClock, fold_frontiers

__all__ = [
    "EpochBuffer",
    "ExecutionAborted",
    "Node",
    "NodeContext",
    "StepStats",
    "WorkerCounters",
    "as_timestamp",
    "owned_parts",
]


class ExecutionAborted(Exception):
    """A source raised :class:`~engine.inputs.AbortExecution`: stop without closing epochs.

    ``step_index`` is the input step; ``detail`` the source's
    :attr:`~engine.inputs.AbortExecution.detail`, handed back to the source's
    ``on_abort`` in the caller.
    """

    def __init__(self, step_index: int, detail: Any) -> None:
        super().__init__(step_index, detail)
        self.step_index = step_index
        self.detail = detail


def owned_parts(parts: list[str], worker_index: int, worker_count: int) -> list[str]:
    """The partitions a worker owns: every ``worker_count``-th, starting at its index.

    Deterministic and balanced (counts differ by at most one between workers).

    >>> owned_parts(["a", "b", "c", "d", "e"], 1, 2)
    ['b', 'd']
    """
    return [p for i, p in enumerate(parts) if i % worker_count == worker_index]


def as_timestamp(when: datetime) -> float:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass(frozen=True)
class StepStats:
    """Metrics of one step on one worker."""

    step_id: str
    items_in: int
    items_out: int
    batches: int
    #: Nanoseconds spent in this step itself (its user code and the engine's work for
    #: it), excluding the steps downstream of it.
    busy_ns: int


@dataclass
class WorkerCounters:
    """Counters a worker's nodes bump (read by the worker's metrics publisher)."""

    #: Items read from this worker's input partitions / written to its sinks.
    items_in: int = 0
    items_out: int = 0
    #: Where to record the plan index + 1 of the step running now (stall reports).
    step_gauge: Any = None


@dataclass
class NodeContext:
    """What a node may use of its worker: config, epoch clock, exchange, snapshots,
    counters and partition claims, plus the worker's current epoch (kept up to date by
    the worker)."""

    config: WorkerConfig
    clock: EpochClock
    exchange: Exchange
    snapshots: SnapshotRecorder
    counters: WorkerCounters = field(default_factory=WorkerCounters)
    epoch: int = 0
    claims: PartClaims = field(default_factory=LocalClaims)


class EpochBuffer:
    """Batches that arrived for epochs after a step's frontier, kept until it gets there.

    Steps whose snapshots must match their effects exactly (stateful steps, partitioned
    sinks) apply items in epoch order: a batch of an epoch beyond the frontier, sent by
    a worker that is ahead, waits here. When the frontier advances, the step applies
    :meth:`take_before` the new frontier, snapshots the closed epochs, then applies
    :meth:`take` of the epoch that just opened.
    """

    __slots__ = ("_batches",)

    def __init__(self) -> None:
        self._batches: dict[int, list[list[Any]]] = {}

    def hold(self, epoch: int, batch: list[Any]) -> None:
        """Keep ``batch`` of ``epoch`` for later."""
        self._batches.setdefault(epoch, []).append(batch)

    def take_before(self, frontier: int) -> list[tuple[int, list[Any]]]:
        """Remove and return the held batches of epochs before ``frontier``, in order."""
        due = sorted(e for e in self._batches if e < frontier)
        return [(epoch, batch) for epoch in due for batch in self._batches.pop(epoch)]

    def take(self, epoch: int) -> list[list[Any]]:
        """Remove and return the held batches of ``epoch``."""
        return self._batches.pop(epoch, [])


class Node:
    """A running core step. Subclasses override what they need."""

    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        self.step = step
        self.step_id = step.step_id
        self.ctx = ctx
        self.frontier = ctx.config.first_epoch
        self.producers: list[Node] = []
        self.downstream: list[list[tuple[Node, int]]] = [[] for _ in step.downs]
        # Metrics (see StepStats): items and batches in, items out, and nanoseconds spent
        # in this step including (inclusive) and in its downstream steps.
        self.items_in = 0
        self.items_out = 0
        self.batches = 0
        self.inclusive_ns = 0
        self.downstream_ns = 0

    def stats(self) -> StepStats:
        """This step's metrics on this worker so far."""
        return StepStats(
            self.step_id,
            self.items_in,
            self.items_out,
            self.batches,
            max(0, self.inclusive_ns - self.downstream_ns),
        )

    def timed(self, call: Callable[..., Any], *args: Any) -> Any:
        """Run ``call`` (this step's work outside of ``emit``) and count its time."""
        started = perf_counter_ns()
        try:
            return call(*args)
        finally:
            self.inclusive_ns += perf_counter_ns() - started

    # -- data --------------------------------------------------------------------------
    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        """Receive a non-empty batch of ``epoch`` on input ``port``."""
        raise NotImplementedError

    def deliver(self, epoch: int, batch: list[Any]) -> None:
        """Receive a batch another worker routed here (exchange steps only)."""
        raise NotImplementedError

    def wired(self) -> None:
        """Called once every node of the worker is connected (``downstream`` is set)."""

    def emit(self, down: int, epoch: int, batch: list[Any]) -> None:
        """Send a non-empty batch downstream; each extra consumer gets its own copy."""
        self.emit_to(self.downstream[down], epoch, batch)

    def emit_to(self, consumers: list[tuple[Node, int]], epoch: int, batch: list[Any]) -> None:
        """:meth:`emit` to some of the consumers of one output (``(node, port)`` pairs)."""
        count = len(batch)
        self.items_out += count
        if not consumers:
            return
        gauge = self.ctx.counters.step_gauge
        copies = [batch] if len(consumers) == 1 else [batch] + [list(batch) for _ in consumers[1:]]
        for (node, port), copy in zip(consumers, copies, strict=True):
            if gauge is not None:
                gauge[0] = node.step.index + 1
            node.items_in += count
            node.batches += 1
            started = perf_counter_ns()
            node.push(port, epoch, copy)
            elapsed = perf_counter_ns() - started
            node.inclusive_ns += elapsed
            self.downstream_ns += elapsed
        if gauge is not None:
            gauge[0] = self.step.index + 1

    # -- progress ----------------------------------------------------------------------
    def route(self, epoch: int, batch: list[Any]) -> list[Any]:
        """Send the items other workers own (exchange steps); return this worker's share."""
        try:
            return self.ctx.exchange.route(self.step, epoch, batch)
        except Exception as ex:
            raise self.failure(epoch, ex, "while sending items to other workers") from ex

    def upstream_frontier(self) -> int:
        return fold_frontiers(p.frontier for p in self.producers)

    def before_marks(self, local_frontier: int) -> None:
        """This worker's input to this exchange step reached ``local_frontier``; send
        anything still held back before the end-of-epoch marks go out."""

    def advance(self, frontier: int) -> None:
        """The input frontier moved from ``self.frontier`` to ``frontier``."""
        self.frontier = frontier

    # -- timers ------------------------------------------------------------------------
    def next_wake(self) -> float:
        """Wall-clock time this node wants to be woken at (inf: never)."""
        return math.inf

    def wake(self, wall_now: float) -> bool:
        """Run due timers; return whether anything happened."""
        return False

    def close(self) -> None:
        """Release resources (partitions); called once, also after failures."""

    # -- errors ------------------------------------------------------------------------
    def keyed_failure(
        self, epoch: int, batch: list[Any], ex: BaseException, what: str = ""
    ) -> EngineRuntimeError:
        """The error for ``ex``, raised while unpacking the ``(key, value)`` items of
        ``batch``: the shape diagnosis of the first malformed item if there is one (the
        unpacking error is then noise), else ``ex`` itself as the cause.
        Raise it without ``from``: its cause is already set."""
        try:
            check_keyed(self.step_id, batch)
        except ItemTypeError as bad:
            error = self.failure(epoch, bad)
            error.__cause__, error.__suppress_context__ = None, True
            return error
        error = self.failure(epoch, ex, what)
        error.__cause__ = ex
        return error

    def failure(self, epoch: int, ex: BaseException, what: str = "") -> EngineRuntimeError:
        """An error naming this step, the worker and the epoch, for user exception ``ex``."""
        where = f"step {self.step_id!r} on worker {self.ctx.config.worker_index}, epoch {epoch}"
        if isinstance(ex, ItemTypeError):
            return ItemTypeError(
                f"{ex} ({where})",
                step_id=self.step_id,
                worker_index=self.ctx.config.worker_index,
                epoch=epoch,
            )
        detail = f" {what}" if what else ""
        return EngineRuntimeError(
            f"{where} failed{detail}: {type(ex).__name__}: {ex}. "
            "The traceback of the original exception is shown above; fix the user code "
            "of this step or the data reaching it.",
            step_id=self.step_id,
            worker_index=self.ctx.config.worker_index,
            epoch=epoch,
        )
