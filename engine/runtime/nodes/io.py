"""Inputs and outputs: polling source partitions and writing sink partitions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.inputs import AbortExecution, DynamicSource, FixedPartitionedSource
from engine.outputs import DynamicSink, FixedPartitionedSink
from engine.runtime.nodes.base import (
    EpochBuffer,
    ExecutionAborted,
    Node,
    NodeContext,
    as_timestamp,
    owned_parts,
)
from engine.runtime.plan import InputConfig, OutputConfig, PlanStep
from engine.runtime.progress import EOF_FRONTIER

__all__ = ["EMPTY_POLL_COOLDOWN_S", "InputNode", "OutputNode"]

#: How long to wait before polling again a partition that returned an empty batch and
#: asked for no particular awake time.
EMPTY_POLL_COOLDOWN_S = 0.001
#: How soon a worker with no open partition looks again for the answer to its claim.
CLAIM_POLL_S = 0.0002


class InputNode(Node):
    """Polls this worker's partitions of a source."""

    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        super().__init__(step, ctx)
        config = step.config
        assert isinstance(config, InputConfig)
        self.source = config.source
        self.partitions: list[Partition] = []
        self.stateful = isinstance(self.source, FixedPartitionedSource)
        #: Index of the partition to poll first (round-robin with untimed epochs).
        self._cursor = 0
        #: ``balance_parts``: every partition name, whether a claim is on its way, and
        #: whether all of them have been handed out (to this worker or others).
        self.claiming = self.stateful and self.source.balance_parts
        self._all_parts: list[str] = []
        self._claim_pending = False
        self._claims_done = False

    def open(self) -> None:
        cfg = self.ctx.config
        try:
            if self.claiming:
                # Worker k starts with partition k (so every worker reads from the
                # start); later ones are claimed, counting on from worker_count.
                assert isinstance(self.source, FixedPartitionedSource)
                self._all_parts = list(self.source.list_parts())
                if cfg.worker_index < len(self._all_parts):
                    self._build(self._all_parts[cfg.worker_index])
                self._claims_done = cfg.worker_count >= len(self._all_parts)
            elif isinstance(self.source, FixedPartitionedSource):
                all_parts = list(self.source.list_parts())
                for name in owned_parts(all_parts, cfg.worker_index, cfg.worker_count):
                    self._build(name)
            elif isinstance(self.source, DynamicSource):
                dynamic = self.source.build(self.step_id, cfg.worker_index, cfg.worker_count)
                self.partitions.append(Partition(f"worker-{cfg.worker_index}", dynamic))
        except Exception as ex:
            raise self.failure(cfg.first_epoch, ex, "while building its partitions") from ex

    def _build(self, name: str) -> None:
        assert isinstance(self.source, FixedPartitionedSource)
        resume = self.ctx.snapshots.resume_state(self.step_id, name)
        part = self.source.build_part(self.step_id, name, resume)
        self.partitions.append(Partition(name, part))

    # -- partitions handed out in turn (balance_parts) -----------------------------------
    def _claim(self) -> None:
        """Once this worker's open partition has ended, ask for the next one; take the
        answer when it has come (index past the last: every partition is handed out)."""
        claims, index = self.ctx.claims, self.step.index
        while True:
            if self._claim_pending:
                granted = claims.granted(index)
                if granted is None:
                    return
                self._claim_pending = False
                if granted < len(self._all_parts):
                    self._build(self._all_parts[granted])
                else:
                    self._claims_done = True
            if self._claims_done or self._reading():
                return
            claims.request(index)
            self._claim_pending = True

    def _reading(self) -> bool:
        """Whether a partition of this worker has not ended yet."""
        return any(not p.eof for p in self.partitions)

    @property
    def live(self) -> bool:
        return self._reading() or (self.claiming and not self._claims_done)

    def poll(self, epoch: int, wall_now: float) -> bool:
        """Poll every due partition once; return whether any produced items."""
        if self.claiming and not self._claims_done:
            try:
                self._claim()
            except Exception as ex:
                raise self.failure(epoch, ex, "while building a partition it was handed") from ex
        produced = False
        count = len(self.partitions)
        start = self._cursor
        for offset in range(count):
            p = self.partitions[(start + offset) % count]
            if p.eof or p.awake_at > wall_now:
                continue
            if self.ctx.counters.step_gauge is not None:
                self.ctx.counters.step_gauge[0] = self.step.index + 1
            try:
                batch = p.part.next_batch()
                if type(batch) is not list:
                    batch = list(batch)
                next_awake = p.part.next_awake()
            except StopIteration:
                self._partition_eof(p, epoch)
                continue
            except AbortExecution as ex:
                raise ExecutionAborted(self.step.index, ex.detail) from None
            except Exception as ex:
                raise self.failure(epoch, ex, f"reading partition {p.name!r}") from ex
            if next_awake is not None:
                p.awake_at = as_timestamp(next_awake)
            elif not batch:
                p.awake_at = wall_now + EMPTY_POLL_COOLDOWN_S
            if batch:
                produced = True
                self.ctx.counters.items_in += len(batch)
                self.emit(0, epoch, batch)
                if not self.ctx.clock.timed:
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
        self.ctx.snapshots.record_partition(self.step_id, p.name, epoch, state)

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
        wake_at = min((p.awake_at for p in self.partitions if not p.eof), default=math.inf)
        if self._claim_pending and not self._reading():
            # Nothing to read until the answer comes: look for it again soon.
            wake_at = min(wake_at, self.ctx.config.wall_now() + CLAIM_POLL_S)
        return wake_at

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


class OutputNode(Node):
    """Writes to this worker's sink partitions."""

    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        super().__init__(step, ctx)
        config = step.config
        assert isinstance(config, OutputConfig)
        self.sink = config.sink
        self.parts: dict[int, tuple[str, Any]] = {}
        self.part_count = 0
        self.dynamic_part: Any = None
        #: Batches of epochs after the frontier, written when it gets there.
        self.pending = EpochBuffer()
        #: Partition index of each key seen (part_fn is user code; call it once per key).
        self._partition_of: dict[str, int] = {}

    def open(self) -> None:
        cfg = self.ctx.config
        try:
            if isinstance(self.sink, FixedPartitionedSink):
                names = list(self.sink.list_parts())
                self.part_count = len(names)
                owned = set(owned_parts(names, cfg.worker_index, cfg.worker_count))
                for index, name in enumerate(names):
                    if name in owned:
                        resume = self.ctx.snapshots.resume_state(self.step_id, name)
                        self.parts[index] = (name, self.sink.build_part(self.step_id, name, resume))
            elif isinstance(self.sink, DynamicSink):
                self.dynamic_part = self.sink.build(
                    self.step_id, cfg.worker_index, cfg.worker_count
                )
        except Exception as ex:
            raise self.failure(cfg.first_epoch, ex, "while building its partitions") from ex

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        if self.dynamic_part is not None:
            self.ctx.counters.items_out += len(batch)
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
        except (TypeError, ValueError) as ex:
            raise self.keyed_failure(epoch, batch, ex, "choosing the sink partition")  # noqa: B904
        self.ctx.counters.items_out += len(batch)
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
            self.ctx.snapshots.record_partition(self.step_id, name, closed_epoch, state)
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
