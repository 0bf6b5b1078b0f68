"""The executor: runs a :class:`~engine._plan.Plan` as one worker of a cluster of N.

Each core step becomes a node. Batches are pushed synchronously from the inputs through
the nodes; every batch carries its epoch. After every round the worker recomputes each
node's frontier in topological order and tells nodes whose frontier advanced, so they
can close epochs (snapshot touched state) and, when their frontier becomes empty, run
their end-of-stream logic.

Exchange points (keyed stateful steps, partitioned sinks, ``redistribute``) go through
an :class:`Exchange`. With one worker, :class:`LocalExchange` hands every batch straight
back; the multi-process runtime plugs in an exchange over shared-memory rings.
"""

from __future__ import annotations

import heapq
import math
import operator
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import perf_counter_ns
from typing import Any, Protocol

from engine._keyed import check_keyed, group_by_key
from engine._plan import Plan, PlanStep
from engine._progress import EOF_FRONTIER, FIRST_EPOCH, EpochClock, fold_frontiers
from engine.errors import EngineRuntimeError, ItemTypeError, item_repr
from engine.inputs import (
    AbortExecution,
    DynamicSource,
    FixedPartitionedSource,
)
from engine.operators._core import StatefulBatchLogic
from engine.outputs import DynamicSink, FixedPartitionedSink

__all__ = [
    "TOMBSTONE",
    "Exchange",
    "ExecutionAborted",
    "LocalExchange",
    "NullSnapshots",
    "SnapshotRecorder",
    "StepStats",
    "Worker",
    "WorkerConfig",
    "owned_parts",
]

#: How long to wait before polling again a partition that returned an empty batch and
#: asked for no particular awake time.
EMPTY_POLL_COOLDOWN_S = 0.001
#: Upper bound on one idle sleep, so the worker stays responsive to its environment.
MAX_IDLE_SLEEP_S = 0.05
#: First idle sleep; doubles with every further idle round (up to MAX_IDLE_SLEEP_S).
MIN_IDLE_SLEEP_S = 0.00005


class _Tombstone:
    """Snapshot value of a key whose logic was discarded."""

    def __repr__(self) -> str:
        return "TOMBSTONE"

    def __reduce__(self) -> str:
        return "TOMBSTONE"


TOMBSTONE = _Tombstone()


class ExecutionAborted(Exception):
    """A source raised :class:`~engine.inputs.AbortExecution`: stop without closing epochs."""


class SnapshotRecorder(Protocol):
    """Where snapshots go (the recovery store, or nowhere)."""

    def resume_state(self, step_id: str, key: str) -> Any:
        """The state to resume ``key`` (a source/sink partition) of ``step_id`` from."""

    def resume_states(self, step_id: str) -> dict[str, Any]:
        """Every key state of a stateful step owned by this worker, to rebuild up front."""

    def record(self, step_id: str, key: str, epoch: int, state: Any) -> None:
        """Remember the state of (step, key) at the close of ``epoch``."""

    def commit(self, frontier: int) -> None:
        """Everything before ``frontier`` is recorded; make it durable."""


class NullSnapshots:
    """Snapshots are taken (so user ``snapshot()`` code runs) but not kept."""

    def resume_state(self, step_id: str, key: str) -> Any:
        return None

    def resume_states(self, step_id: str) -> dict[str, Any]:
        return {}

    def record(self, step_id: str, key: str, epoch: int, state: Any) -> None:
        pass

    def commit(self, frontier: int) -> None:
        pass


class Exchange(Protocol):
    """Moves batches between workers at exchange points."""

    def route(self, step: PlanStep, epoch: int, batch: list[Any]) -> list[Any]:
        """Send the items of ``batch`` owned by other workers; return this worker's share."""

    def remote_frontier(self, step: PlanStep) -> int:
        """The oldest epoch other workers may still send to ``step`` (EOF if none)."""

    def close_epochs(self, step: PlanStep, frontier: int) -> None:
        """This worker will route nothing more to ``step`` before ``frontier``."""

    def receive(self, worker: Worker) -> bool:
        """Deliver batches and marks other workers sent; return whether any arrived."""


class LocalExchange:
    """The exchange of a one-worker run: everything stays here."""

    def route(self, step: PlanStep, epoch: int, batch: list[Any]) -> list[Any]:
        return batch

    def remote_frontier(self, step: PlanStep) -> int:
        return EOF_FRONTIER

    def close_epochs(self, step: PlanStep, frontier: int) -> None:
        pass

    def receive(self, worker: Worker) -> bool:
        return False


def owned_parts(parts: list[str], worker_index: int, worker_count: int) -> list[str]:
    """The partitions a worker owns: every ``worker_count``-th, starting at its index.

    Deterministic and balanced (counts differ by at most one between workers).

    >>> owned_parts(["a", "b", "c", "d", "e"], 1, 2)
    ['b', 'd']
    """
    return [p for i, p in enumerate(parts) if i % worker_count == worker_index]


@dataclass
class WorkerConfig:
    """What a worker needs to know about the run it belongs to."""

    worker_index: int = 0
    worker_count: int = 1
    epoch_interval_s: float = 10.0
    #: Monotonic time epochs are counted from (shared by all workers of a run).
    start: float = field(default_factory=time.monotonic)
    first_epoch: int = FIRST_EPOCH
    #: Wall clock (UTC, seconds) used for notify timers and awake times.
    wall_now: Callable[[], float] = time.time


def _as_timestamp(when: datetime) -> float:
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


class _Node:
    """A running core step. Subclasses override what they need."""

    def __init__(self, step: PlanStep, worker: Worker) -> None:
        self.step = step
        self.step_id = step.step_id
        self.worker = worker
        self.frontier = worker.config.first_epoch
        self.producers: list[_Node] = []
        self.downstream: list[list[tuple[_Node, int]]] = [[] for _ in step.downs]
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


class _InputNode(_Node):
    """Polls this worker's partitions of a source."""

    def __init__(self, step: PlanStep, worker: Worker) -> None:
        super().__init__(step, worker)
        self.source = step.config["source"]
        self.partitions: list[_Partition] = []
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
                    self.partitions.append(_Partition(name, part))
            elif isinstance(self.source, DynamicSource):
                dynamic = self.source.build(self.step_id, cfg.worker_index, cfg.worker_count)
                self.partitions.append(_Partition(f"worker-{cfg.worker_index}", dynamic))
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
            except AbortExecution:
                raise ExecutionAborted(self.step_id) from None
            except Exception as ex:
                raise self.failure(epoch, ex, f"reading partition {p.name!r}") from ex
            if next_awake is not None:
                p.awake_at = _as_timestamp(next_awake)
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

    def _partition_eof(self, p: _Partition, epoch: int) -> None:
        p.eof = True
        self._snapshot_partition(p, epoch)
        self._close_partition(p, epoch)

    def _snapshot_partition(self, p: _Partition, epoch: int) -> None:
        if not self.stateful:
            return
        try:
            state = p.part.snapshot()
        except Exception as ex:
            raise self.failure(epoch, ex, f"snapshotting partition {p.name!r}") from ex
        self.worker.snapshots.record(self.step_id, p.name, epoch, state)

    def _close_partition(self, p: _Partition, epoch: int) -> None:
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
class _Partition:
    name: str
    part: Any
    awake_at: float = 0.0
    eof: bool = False
    closed: bool = False


class _FlatMapBatchNode(_Node):
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


class _BranchNode(_Node):
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


class _PassNode(_Node):
    """``merge``: items pass unchanged."""

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        self.emit(0, epoch, batch)


class _RedistributeNode(_Node):
    """``redistribute``: batches are spread over the workers."""

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        batch = self.route(epoch, batch)
        if batch:
            self.emit(0, epoch, batch)

    def deliver(self, epoch: int, batch: list[Any]) -> None:
        self.emit(0, epoch, batch)


class _InspectNode(_Node):
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


class _StatefulNode(_Node):
    """``stateful_batch``: one logic per key, epoch-ordered, snapshots at epoch close."""

    def __init__(self, step: PlanStep, worker: Worker) -> None:
        super().__init__(step, worker)
        self.builder = step.config["builder"]
        self.logics: dict[str, StatefulBatchLogic[Any, Any, Any]] = {}
        self.touched: set[str] = set()
        self.timers: dict[str, float] = {}
        self.timer_heap: list[tuple[float, str]] = []
        #: Batches of epochs after the frontier (from faster workers), applied in order.
        self.pending: dict[int, list[list[Any]]] = {}

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        batch = self.route(epoch, batch)
        if batch:
            self.deliver(epoch, batch)

    def deliver(self, epoch: int, batch: list[Any]) -> None:
        """Apply a batch routed to this worker (buffer it if its epoch is not open yet)."""
        if epoch > self.frontier and self.frontier != EOF_FRONTIER:
            self.pending.setdefault(epoch, []).append(batch)
            return
        self.apply(epoch, batch)

    def apply(self, epoch: int, batch: list[Any]) -> None:
        try:
            groups = group_by_key(self.step_id, batch)
        except ItemTypeError as ex:
            raise self.failure(epoch, ex) from None
        logics, touched = self.logics, self.touched
        out: list[Any] = []
        append = out.append
        key = ""
        try:
            for key, values in groups.items():
                logic = logics.get(key)
                if logic is None:
                    logic = self._build(key)
                emits, discard = logic.on_batch(values)
                for w in emits:
                    append((key, w))
                touched.add(key)
                self._after_call(key, logic, discard)
        except Exception as ex:
            raise self.failure(epoch, ex, f"for key {key!r}") from ex
        if out:
            self.emit(0, epoch, out)

    def _build(self, key: str) -> StatefulBatchLogic[Any, Any, Any]:
        logic = self.builder(None)
        self.logics[key] = logic
        return logic

    def open(self) -> None:
        """Rebuild every key this worker resumes, so timers and EOF reach them too."""
        epoch = self.worker.config.first_epoch
        key = ""
        try:
            for key, state in self.worker.snapshots.resume_states(self.step_id).items():
                self.restore(key, state)
        except Exception as ex:
            raise self.failure(epoch, ex, f"while resuming key {key!r}") from ex

    def restore(self, key: str, state: Any) -> None:
        """Bring back ``key`` from its snapshot."""
        logic = self.builder(state)
        self.logics[key] = logic
        self._after_call(key, logic, False)

    def _after_call(
        self, key: str, logic: StatefulBatchLogic[Any, Any, Any], discard: bool
    ) -> None:
        if discard:
            del self.logics[key]
            self.timers.pop(key, None)
            return
        if type(logic).notify_at is StatefulBatchLogic.notify_at:
            return
        when = logic.notify_at()
        if when is None:
            self.timers.pop(key, None)
            return
        at = _as_timestamp(when)
        if self.timers.get(key) != at:
            self.timers[key] = at
            heapq.heappush(self.timer_heap, (at, key))

    def next_wake(self) -> float:
        heap, timers = self.timer_heap, self.timers
        while heap and timers.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale entry
        return heap[0][0] if heap else math.inf

    def wake(self, wall_now: float) -> bool:
        if self.next_wake() > wall_now:
            return False
        epoch = self.frontier if self.frontier != EOF_FRONTIER else self.worker.epoch
        due = []
        while self.timer_heap and self.timer_heap[0][0] <= wall_now:
            at, key = heapq.heappop(self.timer_heap)
            if self.timers.get(key) == at:
                del self.timers[key]
                due.append(key)
        self._call_each(epoch, due, "on_notify")
        return bool(due)

    def _call_each(self, epoch: int, keys: Iterable[str], method: str) -> None:
        out: list[Any] = []
        key = ""
        try:
            for key in keys:
                logic = self.logics.get(key)
                if logic is None:
                    continue
                emits, discard = getattr(logic, method)()
                out.extend((key, w) for w in emits)
                self.touched.add(key)
                self._after_call(key, logic, discard)
        except Exception as ex:
            raise self.failure(epoch, ex, f"in {method} for key {key!r}") from ex
        if out:
            self.emit(0, epoch, out)

    def advance(self, frontier: int) -> None:
        old = self.frontier
        # Apply buffered batches of epochs that are now open, in epoch order.
        for epoch in sorted(e for e in self.pending if e < frontier or frontier == EOF_FRONTIER):
            self.frontier = epoch
            for batch in self.pending.pop(epoch):
                self.apply(epoch, batch)
        if frontier == EOF_FRONTIER:
            last = max(old, self.frontier)
            self.frontier = last
            self.wake(self.worker.config.wall_now())  # timers already due fire before EOF
            self.upstream_eof(last)
            self._snapshot(last)
        else:
            self._snapshot(frontier - 1)
        self.frontier = frontier

    def upstream_eof(self, epoch: int) -> None:
        """Call ``on_eof`` of every live key, in sorted key order.

        Logics that keep the default ``on_eof`` (emit nothing, retain) are skipped: the
        call could not change anything.
        """
        keys = [k for k, logic in sorted(self.logics.items()) if _overrides_on_eof(logic)]
        self._call_each(epoch, keys, "on_eof")

    def state_of(self, key: str) -> Any:
        """The snapshot of ``key``: its logic's snapshot, or a tombstone if discarded."""
        logic = self.logics.get(key)
        return TOMBSTONE if logic is None else logic.snapshot()

    def _snapshot(self, epoch: int) -> None:
        if not self.touched:
            return
        snapshots = self.worker.snapshots
        key = ""
        try:
            for key in sorted(self.touched):
                snapshots.record(self.step_id, key, epoch, self.state_of(key))
        except Exception as ex:
            raise self.failure(epoch, ex, f"in snapshot for key {key!r}") from ex
        self.touched.clear()


def _overrides_on_eof(logic: StatefulBatchLogic[Any, Any, Any]) -> bool:
    return type(logic).on_eof is not StatefulBatchLogic.on_eof


class _MapKernelNode(_StatefulNode):
    """``stateful_map`` without a logic object per key: states live in one dict.

    Same semantics as running :class:`~engine.operators._stateful._StatefulMapLogic` per
    key (a ``None`` state discards the key), at a fraction of the per-key cost.
    """

    def __init__(self, step: PlanStep, worker: Worker) -> None:
        super().__init__(step, worker)
        kernel = self.builder._shmflow_kernel
        self.mapper = kernel.fn
        self.user_step_id = kernel.user_step_id
        self.states: dict[str, Any] = {}

    def apply(self, epoch: int, batch: list[Any]) -> None:
        states, mapper, step_id = self.states, self.mapper, self.step_id
        get, touch = states.get, self.touched.add
        out: list[Any] = []
        append = out.append
        key, value = "", None
        if not set(map(type, batch)) <= _TUPLE_ONLY:
            try:
                check_keyed(step_id, batch)
            except ItemTypeError as bad:
                raise self.failure(epoch, bad) from None
        try:
            for key, value in batch:
                state = get(key)
                if state is None and type(key) is not str:
                    check_keyed(step_id, batch)  # raises the diagnosis
                result = mapper(state, value)
                if type(result) is not tuple or len(result) != 2:
                    raise self._bad_return(result, value)
                state = result[0]
                if state is None:
                    states.pop(key, None)
                else:
                    states[key] = state
                append((key, result[1]))
                touch(key)
        except ItemTypeError as ex:
            raise self.failure(epoch, ex) from None
        except (TypeError, ValueError) as ex:
            try:
                check_keyed(step_id, batch)
            except ItemTypeError as bad:
                raise self.failure(epoch, bad) from None
            raise self.failure(epoch, ex, f"for key {key!r}") from ex
        except Exception as ex:
            raise self.failure(epoch, ex, f"for key {key!r}") from ex
        if out:
            self.emit(0, epoch, out)

    def _bad_return(self, result: Any, value: Any) -> ItemTypeError:
        return ItemTypeError(
            f"mapper of stateful_map step {self.user_step_id!r} must return a 2-tuple "
            f"(updated_state, emit_value); it returned {type(result).__name__} "
            f"{item_repr(result)} for value {item_repr(value)}"
        )

    def upstream_eof(self, epoch: int) -> None:
        pass  # stateful_map keeps its state and emits nothing at EOF

    def restore(self, key: str, state: Any) -> None:
        if state is not None:
            self.states[key] = state

    def state_of(self, key: str) -> Any:
        return self.states.get(key, TOMBSTONE)


class _FoldKernelNode(_StatefulNode):
    """Folds with an associative ``reducer`` (count/reduce/max/min_final): plain dict.

    Same semantics as a per-key logic that reduces values, emits the result at EOF in
    sorted key order and discards itself.
    """

    def __init__(self, step: PlanStep, worker: Worker) -> None:
        super().__init__(step, worker)
        self.reducer = self.builder._shmflow_kernel.fn
        self.states: dict[str, Any] = {}
        #: With several workers, partial results per epoch are combined here and sent
        #: once per key and epoch (at epoch close) instead of once per key and batch.
        self.combine = worker.config.worker_count > 1
        self.partials: dict[int, dict[str, Any]] = {}

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        if not self.combine:
            super().push(port, epoch, batch)
            return
        partial = self.partials.get(epoch)
        if partial is None:
            partial = self.partials[epoch] = {}
        self._fold_into(partial, epoch, batch)

    def before_marks(self, local_frontier: int) -> None:
        for epoch in sorted(e for e in self.partials if e < local_frontier):
            batch = list(self.partials.pop(epoch).items())
            batch = self.route(epoch, batch)
            if batch:
                self.deliver(epoch, batch)

    def apply(self, epoch: int, batch: list[Any]) -> None:
        self._fold_into(self.states, epoch, batch)
        self.touched.update(map(_first, batch))

    def _fold_into(self, states: dict[str, Any], epoch: int, batch: list[Any]) -> None:
        reducer, get = self.reducer, states.get
        key = ""
        try:
            if not set(map(type, batch)) <= _TUPLE_ONLY:
                check_keyed(self.step_id, batch)
            if reducer is operator.add:
                for key, value in batch:
                    states[key] = get(key, 0) + value
            else:
                for key, value in batch:
                    state = get(key, _MISSING)
                    states[key] = value if state is _MISSING else reducer(state, value)
        except ItemTypeError as bad:
            raise self.failure(epoch, bad) from None
        except (TypeError, ValueError) as ex:
            try:
                check_keyed(self.step_id, batch)
            except ItemTypeError as bad:
                raise self.failure(epoch, bad) from None
            raise self.failure(epoch, ex, f"for key {key!r}") from ex
        except Exception as ex:
            raise self.failure(epoch, ex, f"for key {key!r}") from ex

    def restore(self, key: str, state: Any) -> None:
        self.states[key] = state

    def upstream_eof(self, epoch: int) -> None:
        out = sorted(self.states.items())
        self.touched.update(self.states)
        self.states.clear()
        if out:
            self.emit(0, epoch, out)

    def state_of(self, key: str) -> Any:
        return self.states.get(key, TOMBSTONE)


_MISSING = object()
_TUPLE_ONLY = {tuple}
_first = operator.itemgetter(0)


class _OutputNode(_Node):
    """Writes to this worker's sink partitions."""

    def __init__(self, step: PlanStep, worker: Worker) -> None:
        super().__init__(step, worker)
        self.sink = step.config["sink"]
        self.parts: dict[int, tuple[str, Any]] = {}
        self.part_count = 0
        self.dynamic_part: Any = None

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

    def partition_index(self, key: str) -> int:
        """Which partition of the sink an item with ``key`` belongs to."""
        return self.sink.part_fn(key) % self.part_count

    def deliver(self, epoch: int, batch: list[Any]) -> None:
        """Write a batch of ``(key, value)`` routed to this worker's partitions."""
        try:
            groups = group_by_key(self.step_id, batch)
        except ItemTypeError as ex:
            raise self.failure(epoch, ex) from None
        by_part: dict[int, list[Any]] = {}
        self.worker.items_out += len(batch)
        try:
            for key, values in groups.items():
                by_part.setdefault(self.partition_index(key), []).extend(values)
            for index, values in by_part.items():
                self.parts[index][1].write_batch(values)
        except Exception as ex:
            raise self.failure(epoch, ex) from ex

    def advance(self, frontier: int) -> None:
        closed_epoch = frontier - 1 if frontier != EOF_FRONTIER else self.frontier
        self.frontier = frontier
        for name, part in self.parts.values():
            try:
                state = part.snapshot()
            except Exception as ex:
                raise self.failure(closed_epoch, ex, f"snapshotting partition {name!r}") from ex
            self.worker.snapshots.record(self.step_id, name, closed_epoch, state)

    def close(self) -> None:
        parts = [p for _, p in self.parts.values()]
        if self.dynamic_part is not None:
            parts.append(self.dynamic_part)
        for part in parts:
            try:
                part.close()
            except Exception:  # best effort: the run is over either way
                pass


_NODE_TYPES: dict[str, type[_Node]] = {
    "input": _InputNode,
    "output": _OutputNode,
    "flat_map_batch": _FlatMapBatchNode,
    "stateful_batch": _StatefulNode,  # or a kernel variant, see _node_for
    "branch": _BranchNode,
    "merge": _PassNode,
    "redistribute": _RedistributeNode,
    "inspect_debug": _InspectNode,
}


def _node_type(step: PlanStep) -> type[_Node]:
    """The node class running ``step``: kernels for operators that declare one."""
    if step.kind == "stateful_batch":
        kernel = getattr(step.config["builder"], "_shmflow_kernel", None)
        if kernel is not None:
            return {"map": _MapKernelNode, "fold": _FoldKernelNode}[kernel.kind]
    return _NODE_TYPES[step.kind]


class Worker:
    """One worker executing a plan: polls its inputs, runs the nodes, tracks progress."""

    def __init__(
        self,
        plan: Plan,
        config: WorkerConfig | None = None,
        *,
        exchange: Exchange | None = None,
        snapshots: SnapshotRecorder | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        on_round: Callable[[Worker], None] | None = None,
        on_frontier: Callable[[int], None] | None = None,
    ) -> None:
        self.plan = plan
        self.config = config if config is not None else WorkerConfig()
        self.exchange: Exchange = exchange if exchange is not None else LocalExchange()
        self.snapshots: SnapshotRecorder = snapshots if snapshots is not None else NullSnapshots()
        self.clock = EpochClock(
            self.config.start, self.config.epoch_interval_s, self.config.first_epoch
        )
        self.epoch = self.config.first_epoch
        self._sleep = sleep
        self._monotonic = monotonic
        self._on_round = on_round
        self._on_frontier = on_frontier
        #: Consecutive idle rounds; idle sleeps grow with it (short waits stay cheap).
        self._idle_rounds = 0
        self.nodes = [_node_type(s)(s, self) for s in plan.steps]
        self.inputs = [n for n in self.nodes if isinstance(n, _InputNode)]
        #: Index of the input to poll first (round-robin with untimed epochs).
        self._input_cursor = 0
        #: Nanoseconds slept while there was nothing to do.
        self.idle_ns = 0
        #: Where to record the plan index + 1 of the step running now (stall reports).
        self.step_gauge: Any = None
        #: Items read from this worker's input partitions / written to its sinks.
        self.items_in = 0
        self.items_out = 0
        self._wire()
        #: Oldest epoch any point of this worker may still see; published after commits.
        self.frontier = self.config.first_epoch

    def _wire(self) -> None:
        by_stream: dict[str, tuple[_Node, int]] = {}
        for node in self.nodes:
            for down_index, stream_id in enumerate(node.step.downs):
                by_stream[stream_id] = (node, down_index)
        for node in self.nodes:
            for port, stream_id in enumerate(node.step.ups):
                producer, down_index = by_stream[stream_id]
                producer.downstream[down_index].append((node, port))
                node.producers.append(producer)

    def node(self, step_id: str) -> _Node:
        """The running node of a core step."""
        for n in self.nodes:
            if n.step_id == step_id:
                return n
        raise KeyError(step_id)

    # -- lifecycle ---------------------------------------------------------------------
    def run(self) -> None:
        """Run until every input is exhausted; raise EngineRuntimeError on failure.

        Returns normally (without closing the open epoch) when a source aborts the
        execution with :class:`~engine.inputs.AbortExecution`.
        """
        try:
            self.open()
            while self.step():
                pass
        except ExecutionAborted:
            return
        finally:
            self.close()

    def open(self) -> None:
        """Build the partitions of every source and sink owned by this worker."""
        for node in self.nodes:
            if isinstance(node, _InputNode | _OutputNode | _StatefulNode):
                node.open()

    def close(self) -> None:
        """Close every partition (best effort)."""
        for node in self.nodes:
            node.close()

    def step(self) -> bool:
        """One round: poll inputs, run timers, advance progress. False when finished."""
        now = self._monotonic()
        if self.clock.timed:
            self.epoch = max(self.epoch, self.clock.epoch_at(now))
        wall_now = self.config.wall_now()
        busy = False
        count = len(self.inputs)
        for offset in range(count):
            source = self.inputs[(self._input_cursor + offset) % count]
            if source.live and source.timed(source.poll, self.epoch, wall_now):
                busy = True
                if not self.clock.timed:
                    # Drain this epoch before reading the next batch, from the next input.
                    self.epoch += 1
                    self._input_cursor = (self._input_cursor + offset + 1) % count
                    break
        if self.exchange.receive(self):
            busy = True
        for node in self.nodes:
            if node.next_wake() <= wall_now and node.timed(node.wake, wall_now):
                busy = True
        self.advance_progress()
        if self._on_round is not None:
            self._on_round(self)
        if self.frontier == EOF_FRONTIER:
            return False
        if busy:
            self._idle_rounds = 0
        else:
            self._idle(now, wall_now)
        return True

    def input_frontier(self, node: _InputNode) -> int:
        return self.epoch if node.live else EOF_FRONTIER

    def advance_progress(self) -> None:
        """Recompute frontiers in topological order; notify nodes that advanced."""
        for node in self.nodes:
            if isinstance(node, _InputNode):
                frontier = self.input_frontier(node)
            else:
                frontier = node.upstream_frontier()
                if node.step.exchange is not None:
                    local = frontier
                    node.timed(node.before_marks, local)
                    self.exchange.close_epochs(node.step, local)
                    frontier = min(local, self.exchange.remote_frontier(node.step))
            if frontier > node.frontier:
                node.timed(node.advance, frontier)
        worker_frontier = fold_frontiers(n.frontier for n in self.nodes)
        if worker_frontier > self.frontier:
            self.snapshots.commit(worker_frontier)
            self.frontier = worker_frontier
            if self._on_frontier is not None:
                self._on_frontier(worker_frontier)

    def _idle(self, now: float, wall_now: float) -> None:
        wake_at = min((n.next_wake() for n in self.nodes), default=math.inf)
        delay = wake_at - wall_now
        if self.clock.timed:
            delay = min(delay, self.clock.epoch_end(self.epoch) - now)
        delay = min(delay, MIN_IDLE_SLEEP_S * 2**self._idle_rounds, MAX_IDLE_SLEEP_S)
        self._idle_rounds = min(self._idle_rounds + 1, 16)
        if delay > 0:
            started = perf_counter_ns()
            self._sleep(delay)
            self.idle_ns += perf_counter_ns() - started
