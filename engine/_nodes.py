"""The running form of the core steps (except ``stateful_batch``, see _stateful_nodes).

A node receives non-empty batches tagged with their epoch (``push`` from upstream on this
worker, ``deliver`` from other workers at exchange points), runs the step's user code
on the whole batch, and emits its output downstream. Its ``frontier`` is the oldest
epoch it may still see; the worker moves it forward and calls ``advance``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from engine._keyed import check_keyed
from engine._plan import PlanStep
from engine._progress import EOF_FRONTIER, fold_frontiers
from engine.errors import EngineRuntimeError, ItemTypeError, item_repr
from engine.inputs import AbortExecution, DynamicSource, FixedPartitionedSource
from engine.outputs import DynamicSink, FixedPartitionedSink
from recovery import TOMBSTONE

if TYPE_CHECKING:
    from engine._executor import Worker

__all__ = [
    "EMPTY_POLL_COOLDOWN_S",
    "TOMBSTONE",
    "BranchNode",
    "EpochBuffer",
    "ExecutionAborted",
    "FlatMapBatchNode",
    "InputNode",
    "InspectNode",
    "Node",
    "OutputNode",
    "PassNode",
    "RedistributeNode",
    "StepStats",
    "as_timestamp",
    "owned_parts",
]

#: How long to wait before polling again a partition that returned an empty batch and
#: asked for no particular awake time.
EMPTY_POLL_COOLDOWN_S = 0.001


class ExecutionAborted(Exception):
    """A source raised :class:`~engine.inputs.AbortExecution`: stop without closing epochs.

    ``step_index`` is the input step; ``marker_index`` the position of the
    ``TestingSource.ABORT`` marker that fired, if it was one.
    """

    def __init__(self, step_index: int, marker_index: int | None) -> None:
        super().__init__(step_index, marker_index)
        self.step_index = step_index
        self.marker_index = marker_index


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

    def __init__(self, step: PlanStep, worker: Worker) -> None:
        self.step = step
        self.step_id = step.step_id
        self.worker = worker
        self.frontier = worker.config.first_epoch
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

    def emit(self, down: int, epoch: int, batch: list[Any]) -> None:
        """Send a non-empty batch downstream; each extra consumer gets its own copy."""
        consumers = self.downstream[down]
        count = len(batch)
        self.items_out += count
        if not consumers:
            return
        gauge = self.worker.step_gauge
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
            return self.worker.exchange.route(self.step, epoch, batch)
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
    def failure(self, epoch: int, ex: BaseException, what: str = "") -> EngineRuntimeError:
        """An error naming this step, the worker and the epoch, for user exception ``ex``."""
        where = f"step {self.step_id!r} on worker {self.worker.config.worker_index}, epoch {epoch}"
        if isinstance(ex, ItemTypeError):
            return ItemTypeError(
                f"{ex} ({where})",
                step_id=self.step_id,
                worker_index=self.worker.config.worker_index,
                epoch=epoch,
            )
        detail = f" {what}" if what else ""
        return EngineRuntimeError(
            f"{where} failed{detail}: {type(ex).__name__}: {ex}. "
            "The traceback of the original exception is shown above; fix the user code "
            "of this step or the data reaching it.",
            step_id=self.step_id,
            worker_index=self.worker.config.worker_index,
            epoch=epoch,
        )


class InputNode(Node):
    """Polls this worker's partitions of a source."""

    def __init__(self, step: PlanStep, worker: Worker) -> None:
        super().__init__(step, worker)
        self.source = step.config["source"]
        self.partitions: list[Partition] = []
        self.stateful = isinstance(self.source, FixedPartitionedSource)
        #: Index of the partition to poll first (round-robin with untimed epochs).
        self._cursor = 0

    def open(self) -> None:
        cfg = self.worker.config
        try:
            if isinstance(self.source, FixedPartitionedSource):
                all_parts = list(self.source.list_parts())
                for name in owned_parts(all_parts, cfg.worker_index, cfg.worker_count):
                    resume = self.worker.snapshots.resume_state(self.step_id, name)
                    part = self.source.build_part(self.step_id, name, resume)
                    self.partitions.append(Partition(name, part))
            elif isinstance(self.source, DynamicSource):
                dynamic = self.source.build(self.step_id, cfg.worker_index, cfg.worker_count)
                self.partitions.append(Partition(f"worker-{cfg.worker_index}", dynamic))
        except Exception as ex:
            raise self.failure(cfg.first_epoch, ex, "while building its partitions") from ex

    @property
    def live(self) -> bool:
        return any(not p.eof for p in self.partitions)

    def poll(self, epoch: int, wall_now: float) -> bool:
        """Poll every due partition once; return whether any produced items."""
        produced = False
        count = len(self.partitions)
        start = self._cursor
        for offset in range(count):
            p = self.partitions[(start + offset) % count]
            if p.eof or p.awake_at > wall_now:
                continue
            if self.worker.step_gauge is not None:
                self.worker.step_gauge[0] = self.step.index + 1
            try:
                batch = p.part.next_batch()
                if type(batch) is not list:
                    batch = list(batch)
                next_awake = p.part.next_awake()
            except StopIteration:
                self._partition_eof(p, epoch)
                continue
            except AbortExecution as ex:
                marker = getattr(ex, "marker_index", None)
                raise ExecutionAborted(self.step.index, marker) from None
            except Exception as ex:
                raise self.failure(epoch, ex, f"reading partition {p.name!r}") from ex
            if next_awake is not None:
                p.awake_at = as_timestamp(next_awake)
            elif not batch:
                p.awake_at = wall_now + EMPTY_POLL_COOLDOWN_S
            if batch:
                produced = True
                self.worker.items_in += len(batch)
                self.emit(0, epoch, batch)
                if not self.worker.clock.timed:
                    # Untimed epochs: one batch per epoch; the next partition goes next.
                    self._cursor = (start + offset + 1) % count
                    return True
        return produced

    def _partition_eof(self, p: Partition, epoch: int) -> None:
        p.eof = True
        self._snapshot_partition(p, epoch)
        self._close_partition(p, epoch)

    def _snapshot_partition(self, p: Partition, epoch: int) -> None:
        if not self.stateful:
            return
        try:
            state = p.part.snapshot()
        except Exception as ex:
            raise self.failure(epoch, ex, f"snapshotting partition {p.name!r}") from ex
        self.worker.snapshots.record_partition(self.step_id, p.name, epoch, state)

    def _close_partition(self, p: Partition, epoch: int) -> None:
        if p.closed:
            return
        p.closed = True
        try:
            p.part.close()
        except Exception as ex:
            raise self.failure(epoch, ex, f"closing partition {p.name!r}") from ex

    def advance(self, frontier: int) -> None:
        closed_epoch = frontier - 1 if frontier != EOF_FRONTIER else self.frontier
        for p in self.partitions:
            if not p.eof:
                self._snapshot_partition(p, closed_epoch)
        self.frontier = frontier

    def next_wake(self) -> float:
        return min((p.awake_at for p in self.partitions if not p.eof), default=math.inf)

    def close(self) -> None:
        for p in self.partitions:
            if not p.closed:
                p.closed = True
                try:
                    p.part.close()
                except Exception:  # already failing or finishing; closing is best effort
                    pass


@dataclass
class Partition:
    name: str
    part: Any
    awake_at: float = 0.0
    eof: bool = False
    closed: bool = False


class FlatMapBatchNode(Node):
    def __init__(self, step: PlanStep, worker: Worker) -> None:
        super().__init__(step, worker)
        self.mapper = step.config["mapper"]

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        try:
            out = self.mapper(batch)
            if type(out) is not list:
                out = list(out)
        except Exception as ex:
            raise self.failure(epoch, ex) from ex
        if out:
            self.emit(0, epoch, out)


class BranchNode(Node):
    def __init__(self, step: PlanStep, worker: Worker) -> None:
        super().__init__(step, worker)
        self.predicate = step.config["predicate"]

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        try:
            flags = list(map(self.predicate, batch))
        except Exception as ex:
            raise self.failure(epoch, ex) from ex
        if not {type(f) for f in flags} <= {bool}:
            bad = next(x for x, f in zip(batch, flags, strict=True) if type(f) is not bool)
            flag = next(f for f in flags if type(f) is not bool)
            wrong = ItemTypeError(
                f"branch {self.step_id!r}: predicate must return a bool; it returned "
                f"{item_repr(flag)} for item {item_repr(bad)}"
            )
            raise self.failure(epoch, wrong)
        trues = [x for x, f in zip(batch, flags, strict=True) if f]
        falses = [x for x, f in zip(batch, flags, strict=True) if not f]
        if trues:
            self.emit(0, epoch, trues)
        if falses:
            self.emit(1, epoch, falses)


class PassNode(Node):
    """``merge``: items pass unchanged."""

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        self.emit(0, epoch, batch)


class RedistributeNode(Node):
    """``redistribute``: batches are spread over the workers."""

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        batch = self.route(epoch, batch)
        if batch:
            self.emit(0, epoch, batch)

    def deliver(self, epoch: int, batch: list[Any]) -> None:
        self.emit(0, epoch, batch)


class InspectNode(Node):
    def __init__(self, step: PlanStep, worker: Worker) -> None:
        super().__init__(step, worker)
        self.inspector = step.config["inspector"]

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        inspector, step_id, index = self.inspector, self.step_id, self.worker.config.worker_index
        try:
            for item in batch:
                inspector(step_id, item, epoch, index)
        except Exception as ex:
            raise self.failure(epoch, ex) from ex
        self.emit(0, epoch, batch)


class OutputNode(Node):
    """Writes to this worker's sink partitions."""

    def __init__(self, step: PlanStep, worker: Worker) -> None:
        super().__init__(step, worker)
        self.sink = step.config["sink"]
        self.parts: dict[int, tuple[str, Any]] = {}
        self.part_count = 0
        self.dynamic_part: Any = None
        #: Batches of epochs after the frontier, written when it gets there.
        self.pending = EpochBuffer()
        #: Partition index of each key seen (part_fn is user code; call it once per key).
        self._partition_of: dict[str, int] = {}

    def open(self) -> None:
        cfg = self.worker.config
        try:
            if isinstance(self.sink, FixedPartitionedSink):
                names = list(self.sink.list_parts())
                self.part_count = len(names)
                owned = set(owned_parts(names, cfg.worker_index, cfg.worker_count))
                for index, name in enumerate(names):
                    if name in owned:
                        resume = self.worker.snapshots.resume_state(self.step_id, name)
                        self.parts[index] = (name, self.sink.build_part(self.step_id, name, resume))
            elif isinstance(self.sink, DynamicSink):
                self.dynamic_part = self.sink.build(
                    self.step_id, cfg.worker_index, cfg.worker_count
                )
        except Exception as ex:
            raise self.failure(cfg.first_epoch, ex, "while building its partitions") from ex

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        if self.dynamic_part is not None:
            self.worker.items_out += len(batch)
            try:
                self.dynamic_part.write_batch(batch)
            except Exception as ex:
                raise self.failure(epoch, ex) from ex
            return
        batch = self.route(epoch, batch)
        if batch:
            self.deliver(epoch, batch)

    def deliver(self, epoch: int, batch: list[Any]) -> None:
        """Write a batch of ``(key, value)`` routed to this worker's partitions.

        Items of an epoch after this step's frontier (sent by a worker that is ahead)
        wait until the frontier reaches it: a partition's snapshot at the close of
        epoch ``e`` must cover exactly the writes of epochs up to ``e``, or a resume
        would write them twice (or skip them).
        """
        if epoch > self.frontier:
            self.pending.hold(epoch, batch)
            return
        self.write(epoch, batch)

    def write(self, epoch: int, batch: list[Any]) -> None:
        """Write items to their partitions, keeping their order within each partition."""
        by_part: dict[int, list[Any]] = {}
        index_of = self._partition_of
        try:
            for key, value in batch:
                index = index_of.get(key)
                if index is None:
                    if type(key) is not str:
                        raise TypeError(key)
                    index = index_of[key] = self.sink.part_fn(key) % self.part_count
                values = by_part.get(index)
                if values is None:
                    by_part[index] = [value]
                else:
                    values.append(value)
        except (TypeError, ValueError):
            try:
                check_keyed(self.step_id, batch)
            except ItemTypeError as bad:
                raise self.failure(epoch, bad) from None
            raise
        self.worker.items_out += len(batch)
        try:
            for index, values in by_part.items():
                self.parts[index][1].write_batch(values)
        except Exception as ex:
            raise self.failure(epoch, ex) from ex

    def advance(self, frontier: int) -> None:
        closed_epoch = frontier - 1 if frontier != EOF_FRONTIER else self.frontier
        for epoch, batch in self.pending.take_before(frontier):
            self.write(epoch, batch)
        self.frontier = frontier
        for name, part in self.parts.values():
            try:
                state = part.snapshot()
            except Exception as ex:
                raise self.failure(closed_epoch, ex, f"snapshotting partition {name!r}") from ex
            self.worker.snapshots.record_partition(self.step_id, name, closed_epoch, state)
        for batch in self.pending.take(frontier):  # the epoch that just opened
            self.write(frontier, batch)

    def close(self) -> None:
        parts = [p for _, p in self.parts.values()]
        if self.dynamic_part is not None:
            parts.append(self.dynamic_part)
        for part in parts:
            try:
                part.close()
            except Exception:  # best effort: the run is over either way
                pass
