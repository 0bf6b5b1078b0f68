"""The executor: runs a :class:`~engine.runtime.plan.Plan` as one worker of a cluster of N.

Each core step becomes a node (:mod:`engine.runtime.nodes`).
Batches are pushed synchronously from the inputs through the nodes; every batch carries
its epoch. After every round the worker recomputes each node's frontier in topological
order and tells nodes whose frontier advanced, so they can close epochs (snapshot
touched state) and, when their frontier becomes empty, run their end-of-stream logic.

Exchange points (keyed stateful steps, partitioned sinks, ``redistribute``) go through
an :class:`Exchange`. With one worker, :class:`LocalExchange` hands every batch straight
back; the multi-process runtime plugs in an exchange over shared-memory rings.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator
from time import perf_counter_ns
from typing import Any

from engine.errors import EngineRuntimeError
from engine.runtime.nodes.base import ExecutionAborted, Node, NodeContext, StepStats
from engine.runtime.nodes.io import InputNode, OutputNode
from engine.runtime.nodes.stateful import (
    CountKernelNode,
    FoldKernelNode,
    MapKernelNode,
    StatefulNode,
)
from engine.runtime.nodes.stateless import (
    BranchNode,
    FlatMapBatchNode,
    InspectNode,
    PassNode,
    RedistributeNode,
)
from engine.runtime.plan import (
    FlatMapBatchConfig,
    Plan,
    PlanStep,
    StatefulBatchConfig,
    StepKind,
)
from engine.runtime.ports import (
    Exchange,
    LocalClaims,
    LocalExchange,
    NullSnapshots,
    PartClaims,
    SnapshotRecorder,
    WorkerConfig,
)
from engine.runtime.progress import EOF_FRONTIER, EpochClock, fold_frontiers

__all__ = ["ExecutionAborted", "StepStats", "Worker", "node_type", "node_types"]

#: Upper bound on one idle sleep, so the worker stays responsive to its environment.
MAX_IDLE_SLEEP_S = 0.05
#: First idle sleep; doubles with every further idle round (up to MAX_IDLE_SLEEP_S).
MIN_IDLE_SLEEP_S = 0.00005


NODE_TYPES: dict[StepKind, type[Node]] = {
    StepKind.INPUT: InputNode,
    StepKind.OUTPUT: OutputNode,
    StepKind.FLAT_MAP_BATCH: FlatMapBatchNode,
    StepKind.STATEFUL_BATCH: StatefulNode,  # or a kernel variant, see node_type
    StepKind.BRANCH: BranchNode,
    StepKind.MERGE: PassNode,
    StepKind.REDISTRIBUTE: RedistributeNode,
    StepKind.INSPECT_DEBUG: InspectNode,
}

#: The kernel node classes, but the window kernel's (see :func:`node_type`).
KERNEL_NODE_TYPES: dict[str, type[Node]] = {
    "map": MapKernelNode,
    "fold": FoldKernelNode,
    "count": CountKernelNode,
}
WINDOW_KERNEL = "window"


def node_type(step: PlanStep) -> type[Node]:
    """The node class running ``step``: a batch kernel where the plan names one.

    The window kernel's module (with the windowing operators it needs) is imported only
    by a worker whose flow has a window step: ~7 ms of start-up for the others.
    """
    if _is_window_kernel(step):
        from engine.runtime.nodes.window import WindowKernelNode

        return WindowKernelNode
    config = step.config
    if isinstance(config, StatefulBatchConfig) and config.kernel is not None:
        return KERNEL_NODE_TYPES[config.kernel.kind]
    return NODE_TYPES[step.kind]


def node_types(plan: Plan) -> list[type[Node]]:
    """The node class of every step of ``plan``, in order.

    A ``count_final`` kernel counts raw items itself, so the per-batch pre-count step
    feeding it becomes a pass-through; where that step is not found as expected the
    kernel runs as a plain fold over the pre-counted pairs. A window kernel hands each of
    its ``unwrap_*`` steps their items directly (see
    :meth:`~engine.runtime.nodes.window.WindowKernelNode.wired`), so they pass them on.
    """
    types = [node_type(s) for s in plan.steps]
    for step in plan.steps:
        if types[step.index] is not CountKernelNode:
            continue
        assert isinstance(step.config, StatefulBatchConfig) and step.config.kernel
        pre = plan.producer(step.ups[0])
        fused = (
            isinstance(pre.config, FlatMapBatchConfig)
            and pre.config.mapper is step.config.kernel.params.partials
            and len(plan.consumers(step.ups[0])) == 1
        )
        if fused:
            types[pre.index] = PassNode
        else:
            types[step.index] = FoldKernelNode
    for step in plan.steps:
        if _is_window_kernel(step):
            from engine.runtime.nodes.window import unwrap_kind

            readers = plan.consumers(step.downs[0])
            if readers and all(unwrap_kind(reader) is not None for reader, _ in readers):
                for reader, _ in readers:
                    types[reader.index] = PassNode
    return types


def _is_window_kernel(step: PlanStep) -> bool:
    config = step.config
    return (
        isinstance(config, StatefulBatchConfig)
        and config.kernel is not None
        and config.kernel.kind == WINDOW_KERNEL
    )


class Worker:
    """One worker executing a plan: polls its inputs, runs the nodes, tracks progress."""

    def __init__(
        self,
        plan: Plan,
        config: WorkerConfig | None = None,
        *,
        exchange: Exchange | None = None,
        snapshots: SnapshotRecorder | None = None,
        claims: PartClaims | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        on_round: Callable[[Worker], None] | None = None,
        on_frontier: Callable[[int], None] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.plan = plan
        self.config = config if config is not None else WorkerConfig()
        self.exchange: Exchange = exchange if exchange is not None else LocalExchange()
        self.snapshots: SnapshotRecorder = snapshots if snapshots is not None else NullSnapshots()
        self.clock = EpochClock(
            self.config.start, self.config.epoch_interval_s, self.config.first_epoch
        )
        #: What the nodes see of this worker (they never see the worker itself).
        self.context = NodeContext(
            config=self.config,
            clock=self.clock,
            exchange=self.exchange,
            snapshots=self.snapshots,
            epoch=self.config.first_epoch,
            claims=claims if claims is not None else LocalClaims(self.config.worker_count),
        )
        self.counters = self.context.counters
        self._sleep = sleep
        self._monotonic = monotonic
        self._on_round = on_round
        self._on_frontier = on_frontier
        self._on_ready = on_ready
        #: Consecutive idle rounds; idle sleeps grow with it (short waits stay cheap).
        self._idle_rounds = 0
        self.nodes = [t(s, self.context) for s, t in zip(plan.steps, node_types(plan), strict=True)]
        self.inputs = [n for n in self.nodes if isinstance(n, InputNode)]
        #: Index of the input to poll first (round-robin with untimed epochs).
        self._input_cursor = 0
        #: Monotonic time this worker first read input items (None: not yet).
        self.first_input_at: float | None = None
        #: Why :meth:`run` stopped early, if a source aborted the execution.
        self.aborted: ExecutionAborted | None = None
        #: Nanoseconds slept while there was nothing to do.
        self.idle_ns = 0
        #: Snapshot commits and the time they took; epoch close latency (timed epochs).
        self.commits = 0
        self.commit_ns = 0
        self.epochs_closed = 0
        self.close_lag_ns_total = 0
        self.close_lag_ns_max = 0
        self._wire()
        for node in self.nodes:
            node.wired()
        #: Oldest epoch any point of this worker may still see; published after commits.
        self.frontier = self.config.first_epoch

    def _wire(self) -> None:
        by_stream: dict[str, tuple[Node, int]] = {}
        for node in self.nodes:
            for down_index, stream_id in enumerate(node.step.downs):
                by_stream[stream_id] = (node, down_index)
        for node in self.nodes:
            for port, stream_id in enumerate(node.step.ups):
                producer, down_index = by_stream[stream_id]
                producer.downstream[down_index].append((node, port))
                node.producers.append(producer)

    @property
    def epoch(self) -> int:
        """The epoch this worker is in (inputs tag what they read with it)."""
        return self.context.epoch

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self.context.epoch = epoch

    @property
    def items_in(self) -> int:
        """Items read from this worker's input partitions."""
        return self.counters.items_in

    @property
    def items_out(self) -> int:
        """Items written to this worker's sinks."""
        return self.counters.items_out

    @property
    def step_gauge(self) -> Any:
        """Where nodes record the plan index + 1 of the step running now (or None)."""
        return self.counters.step_gauge

    @step_gauge.setter
    def step_gauge(self, gauge: Any) -> None:
        self.counters.step_gauge = gauge

    def deliver(self, step_index: int, epoch: int, items: list[Any]) -> None:
        """Hand items another worker routed here to the exchange step ``step_index``."""
        node = self.nodes[step_index]
        node.items_in += len(items)
        node.batches += 1
        node.timed(node.deliver, epoch, items)

    def node(self, step_id: str) -> Node:
        """The running node of a core step."""
        for n in self.nodes:
            if n.step_id == step_id:
                return n
        raise KeyError(step_id)

    # -- lifecycle ---------------------------------------------------------------------
    def run(self) -> bool:
        """Run until every input is exhausted; raise EngineRuntimeError on failure.

        Returns False, without closing the open epoch, when a source aborted the
        execution with :class:`~engine.inputs.AbortExecution`; True otherwise.
        """
        try:
            self.open()
            if self._on_ready is not None:
                self._on_ready()
            with _run_gc():
                while self.step():
                    pass
        except ExecutionAborted as aborted:
            self.aborted = aborted
            return False
        finally:
            self.close()
        return True

    def open(self) -> None:
        """Build the partitions of every source and sink owned by this worker."""
        for node in self.nodes:
            if isinstance(node, InputNode | OutputNode | StatefulNode):
                node.open()

    def close(self) -> None:
        """Close every partition (best effort), then unlink the nodes from each other.

        Each node knows its producers and its consumers, a cycle per edge: without
        breaking them, what the nodes hold (every key's state, a sink's list) would
        outlive the run until the cyclic GC's next full collection, and in-process runs
        (``run_main``) one after the other would pile up memory and slow down.
        """
        for node in self.nodes:
            node.close()
        for node in self.nodes:
            node.producers = []

    def step(self) -> bool:
        """One round: poll inputs, run timers, advance progress. False when finished."""
        now = self._monotonic()
        if self.clock.timed and self.clock.epoch_at(now) > self.epoch:
            self.epoch = self.clock.epoch_at(now)
            # Close the finished epochs before reading anything of the new one, so that
            # input partitions snapshot their position exactly at the epoch boundary.
            self.advance_progress()
        wall_now = self.config.wall_now()
        busy = False
        count = len(self.inputs)
        for offset in range(count):
            source = self.inputs[(self._input_cursor + offset) % count]
            if source.live and source.timed(source.poll, self.epoch, wall_now):
                busy = True
                if self.first_input_at is None:
                    self.first_input_at = now
                if not self.clock.timed:
                    # Drain this epoch before reading the next batch, from the next input.
                    self.epoch += 1
                    self._input_cursor = (self._input_cursor + offset + 1) % count
                    break
        if self.exchange.receive(self.deliver):
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

    def input_frontier(self, node: InputNode) -> int:
        return self.epoch if node.live else EOF_FRONTIER

    def advance_progress(self) -> None:
        """Walk the nodes in topological order: compute each one's input frontier, close
        epochs at exchange points, and let nodes whose frontier moved advance."""
        for node in self.nodes:
            if isinstance(node, InputNode):
                frontier = self.input_frontier(node)
            else:
                frontier = node.upstream_frontier()
                if node.step.exchange is not None:
                    self._close_exchange_epochs(node, frontier)
                    frontier = min(frontier, self.exchange.remote_frontier(node.step))
            if frontier > node.frontier:
                node.timed(node.advance, frontier)
        worker_frontier = fold_frontiers(n.frontier for n in self.nodes)
        if worker_frontier > self.frontier:
            started = perf_counter_ns()
            try:
                self.snapshots.commit(worker_frontier, self.epoch)
            except Exception as ex:
                msg = (
                    f"worker {self.config.worker_index} could not commit its snapshots "
                    f"before epoch {worker_frontier if worker_frontier < EOF_FRONTIER else 'EOF'}"
                    f": {type(ex).__name__}: {ex}. Nothing of those epochs was committed "
                    "by this worker; the last commit is intact"
                )
                raise EngineRuntimeError(
                    msg, worker_index=self.config.worker_index, epoch=self.epoch
                ) from ex
            self.commits += 1
            self.commit_ns += perf_counter_ns() - started
            if self.clock.timed and worker_frontier < EOF_FRONTIER:
                # How long after its scheduled end the last closed epoch became durable.
                lag = self._monotonic() - self.clock.epoch_end(worker_frontier - 1)
                lag_ns = max(0, int(lag * 1e9))
                self.epochs_closed += 1
                self.close_lag_ns_total += lag_ns
                self.close_lag_ns_max = max(self.close_lag_ns_max, lag_ns)
            self.frontier = worker_frontier
            if self._on_frontier is not None:
                self._on_frontier(worker_frontier)

    def _close_exchange_epochs(self, node: Node, local_frontier: int) -> None:
        """This worker's input to exchange step ``node`` reached ``local_frontier``: let
        the node send what it held back (pre-aggregated partials), then send the
        end-of-epoch marks after it. Frontiers themselves are computed without sending."""
        node.timed(node.before_marks, local_frontier)
        self.exchange.close_epochs(node.step, local_frontier)

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


#: The youngest-generation threshold of the cyclic GC while a worker runs (CPython's
#: default is 700). See :func:`_run_gc`.
RUN_GC_THRESHOLD0 = 50_000
#: The oldest-generation threshold of the cyclic GC while a worker runs (CPython's
#: default is 10). See :func:`_run_gc`.
RUN_GC_THRESHOLD2 = 1000


@contextlib.contextmanager
def _run_gc() -> Iterator[None]:
    """The cyclic GC's settings while the worker runs; restored afterwards.

    The objects alive when the run starts (the plan, its sources' data and whatever
    else the process holds: a caller's big lists, in-process) are frozen: every full
    collection that the run's own allocations trigger would otherwise traverse them
    (1.5x slower on a window flow beside a few million live objects, measured). They
    are unfrozen afterwards, unless something else had frozen objects before.

    Young collections wait for :data:`RUN_GC_THRESHOLD0` new container objects instead
    of 700: a batch of 10,000 items makes a tuple per item at every step, alive until the
    batch moves on, and CPython would traverse each of them in a young and a middle
    collection before it dies (~25% of a ``stateful_map`` word count, measured). Short-
    lived cyclic garbage is still reclaimed, at most that many objects later.

    Full collections become rarer (:data:`RUN_GC_THRESHOLD2`): state that a run builds
    up (windows, accumulators, per-key dicts) survives the young collections, and
    CPython then re-traverses all of it at every full collection, each time the
    survivors grew by a quarter: 15-25% of the run time of a window job, measured.
    Cycles that die old wait for a full collection about 100x longer.

    A threshold the process has already set higher is kept, and so is a youngest
    threshold of 0 (automatic collection off).
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(
        thresholds[0] and max(thresholds[0], RUN_GC_THRESHOLD0),
        thresholds[1],
        max(thresholds[2], RUN_GC_THRESHOLD2),
    )
    freezing = not gc.get_freeze_count()
    if freezing:
        gc.freeze()
    try:
        yield
    finally:
        if freezing:
            gc.unfreeze()
        gc.set_threshold(*thresholds)
