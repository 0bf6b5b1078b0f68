"""The executor: runs a :class:`~engine._plan.Plan` as one worker of a cluster of N.

Each core step becomes a node (:mod:`engine._nodes`, :mod:`engine._stateful_nodes`).
Batches are pushed synchronously from the inputs through the nodes; every batch carries
its epoch. After every round the worker recomputes each node's frontier in topological
order and tells nodes whose frontier advanced, so they can close epochs (snapshot
touched state) and, when their frontier becomes empty, run their end-of-stream logic.

Exchange points (keyed stateful steps, partitioned sinks, ``redistribute``) go through
an :class:`Exchange`. With one worker, :class:`LocalExchange` hands every batch straight
back; the multi-process runtime plugs in an exchange over shared-memory rings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Protocol

from engine._nodes import (
    TOMBSTONE,
    BranchNode,
    ExecutionAborted,
    FlatMapBatchNode,
    InputNode,
    InspectNode,
    Node,
    OutputNode,
    PassNode,
    RedistributeNode,
    StepStats,
    owned_parts,
)
from engine._plan import Plan, PlanStep
from engine._progress import EOF_FRONTIER, FIRST_EPOCH, EpochClock, fold_frontiers
from engine._stateful_nodes import FoldKernelNode, MapKernelNode, StatefulNode
from engine.errors import EngineRuntimeError

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

#: Upper bound on one idle sleep, so the worker stays responsive to its environment.
MAX_IDLE_SLEEP_S = 0.05
#: First idle sleep; doubles with every further idle round (up to MAX_IDLE_SLEEP_S).
MIN_IDLE_SLEEP_S = 0.00005


class SnapshotRecorder(Protocol):
    """Where snapshots go (the recovery store, or nowhere) and where resumes come from."""

    def resume_state(self, step_id: str, key: str) -> Any:
        """The state to resume partition ``key`` (of a source or sink) of ``step_id``."""

    def resume_states(self, step_id: str) -> dict[str, Any]:
        """Every key state of a stateful step owned by this worker, to rebuild up front."""

    def record(self, step_id: str, key: str, epoch: int, state: Any) -> None:
        """Remember the state of (step, key) at the close of ``epoch``."""

    def record_partition(self, step_id: str, name: str, epoch: int, state: Any) -> None:
        """Remember the resume state of a source or sink partition at ``epoch``."""

    def commit(self, frontier: int, epoch: int) -> None:
        """Everything before ``frontier`` is recorded; make it durable (``epoch`` is the
        worker's current epoch, for the durable frontier at EOF)."""


class NullSnapshots:
    """Snapshots are taken (so user ``snapshot()`` code runs) but not kept."""

    def resume_state(self, step_id: str, key: str) -> Any:
        return None

    def resume_states(self, step_id: str) -> dict[str, Any]:
        return {}

    def record(self, step_id: str, key: str, epoch: int, state: Any) -> None:
        pass

    def record_partition(self, step_id: str, name: str, epoch: int, state: Any) -> None:
        pass

    def commit(self, frontier: int, epoch: int) -> None:
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


NODE_TYPES: dict[str, type[Node]] = {
    "input": InputNode,
    "output": OutputNode,
    "flat_map_batch": FlatMapBatchNode,
    "stateful_batch": StatefulNode,  # or a kernel variant, see _node_for
    "branch": BranchNode,
    "merge": PassNode,
    "redistribute": RedistributeNode,
    "inspect_debug": InspectNode,
}


def node_type(step: PlanStep) -> type[Node]:
    """The node class running ``step``: kernels for operators that declare one."""
    if step.kind == "stateful_batch":
        kernel = getattr(step.config["builder"], "_shmflow_kernel", None)
        if kernel is not None:
            return {"map": MapKernelNode, "fold": FoldKernelNode}[kernel.kind]
    return NODE_TYPES[step.kind]


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
        on_ready: Callable[[], None] | None = None,
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
        self._on_ready = on_ready
        #: Consecutive idle rounds; idle sleeps grow with it (short waits stay cheap).
        self._idle_rounds = 0
        self.nodes = [node_type(s)(s, self) for s in plan.steps]
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
        #: Where to record the plan index + 1 of the step running now (stall reports).
        self.step_gauge: Any = None
        #: Items read from this worker's input partitions / written to its sinks.
        self.items_in = 0
        self.items_out = 0
        self._wire()
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
        """Close every partition (best effort)."""
        for node in self.nodes:
            node.close()

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

    def input_frontier(self, node: InputNode) -> int:
        return self.epoch if node.live else EOF_FRONTIER

    def advance_progress(self) -> None:
        """Recompute frontiers in topological order; notify nodes that advanced."""
        for node in self.nodes:
            if isinstance(node, InputNode):
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
