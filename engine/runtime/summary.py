"""What a run reports: the live :class:`ClusterStatus` and the final :class:`RunSummary`.

Both are read from the shared counter block (every worker writes only its own slots, so
reading costs the workers nothing) and from the rings' header statistics.

The JSON form of a :class:`RunSummary` (``dataclasses.asdict``, written by
``shmflow run --stats FILE``) is a stable schema, version :data:`SUMMARY_SCHEMA`:

``schema``, ``workers``, ``wall_time_s``, ``items_in``, ``items_out``,
``items_exchanged``, ``items_per_s``, ``last_epoch``, ``cluster_frontier``,
``bottleneck_step``, ``workers_ready_s``, ``input_started_s``, ``running_items_per_s``;
``per_worker``: list of :class:`WorkerSummary`; ``steps``: list of :class:`StepSummary`
(summed over workers); ``rings``: list of :class:`RingSummary`.
Fields are only ever added, never renamed or removed, within one schema version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.runtime.metrics import CLUSTER_FRONTIER_SLOT, CounterLayout, StepSlot, WorkerSlot
from engine.runtime.progress import EOF_FRONTIER

__all__ = [
    "SUMMARY_SCHEMA",
    "ClusterStatus",
    "RingSummary",
    "RunSummary",
    "StepSummary",
    "WorkerSummary",
    "si",
]

SUMMARY_SCHEMA = 1


def si(value: float) -> str:
    """A short human number: ``si(1_234_000) == '1.23M'``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


@dataclass
class StepSummary:
    """One step, summed over workers."""

    step_id: str
    items_in: int
    items_out: int
    batches: int
    #: Seconds spent in the step itself (user code plus the engine's work for it).
    busy_s: float


@dataclass
class WorkerSummary:
    """One worker process."""

    index: int
    pid: int
    items_in: int
    items_out: int
    items_sent: int
    items_received: int
    epoch: int
    frontier: int
    cpu_s: float
    #: CPU time over wall time of the run, in percent of one core.
    cpu_percent: float
    max_rss_bytes: int
    idle_s: float
    #: Seconds spent waiting for space in full rings (backpressure).
    blocked_s: float
    #: Snapshot commits (one per advance of the frontier) and seconds spent in them
    #: (writing state and frontier to the recovery store; ~0 without recovery).
    commits: int = 0
    commit_s: float = 0.0
    #: Latency from an epoch's scheduled end until this worker committed past it
    #: (timed epochs only): mean and maximum, seconds.
    epoch_close_latency_mean_s: float | None = None
    epoch_close_latency_max_s: float | None = None


@dataclass
class RingSummary:
    """The ring from worker ``sender`` to worker ``receiver``."""

    sender: int
    receiver: int
    frames: int
    bytes: int
    #: Times the sender found the ring full.
    full_waits: int
    #: Times the receiver polled it empty.
    empty_polls: int


@dataclass
class RunSummary:
    """Figures of a finished run (see the module docstring for the JSON schema)."""

    workers: int
    wall_time_s: float
    items_in: int = 0
    items_out: int = 0
    items_exchanged: int = 0
    items_per_s: float = 0.0
    last_epoch: int = 0
    cluster_frontier: int = 0
    bottleneck_step: str | None = None
    #: Seconds from the start of the run until every worker had built its partitions
    #: and loaded its state (the resume time, when recovering).
    workers_ready_s: float | None = None
    #: Seconds from the start of the run until the first worker read input (start-up).
    input_started_s: float | None = None
    #: Items read per second from then on (``items_per_s`` without the start-up).
    running_items_per_s: float | None = None
    per_worker: list[WorkerSummary] = field(default_factory=list)
    steps: list[StepSummary] = field(default_factory=list)
    rings: list[RingSummary] = field(default_factory=list)
    schema: int = SUMMARY_SCHEMA

    def line(self) -> str:
        """One line for people."""
        return (
            f"shmflow: {self.workers} worker(s), {self.items_in:,} items in, "
            f"{self.items_out:,} out, {self.items_exchanged:,} exchanged, "
            f"{self.wall_time_s:.2f} s ({si(self.items_per_s)} items/s in), "
            f"last epoch {self.last_epoch}"
        )

    @property
    def ring_full_waits(self) -> int:
        """Times any sender found its ring full (backpressure)."""
        return sum(r.full_waits for r in self.rings)


@dataclass
class ClusterStatus:
    """A live view of a running cluster (the status line of ``shmflow run``)."""

    elapsed_s: float
    items_in_per_s: float
    items_out_per_s: float
    epoch: int
    cluster_frontier: int
    cpu_percent: list[float]
    ring_full_waits: int

    def line(self) -> str:
        """The status line."""
        frontier = "EOF" if self.cluster_frontier >= EOF_FRONTIER else str(self.cluster_frontier)
        cpus = " ".join(f"{c:.0f}%" for c in self.cpu_percent)
        return (
            f"shmflow {self.elapsed_s:6.1f}s | in {si(self.items_in_per_s)}/s "
            f"out {si(self.items_out_per_s)}/s | epoch {self.epoch} frontier {frontier} "
            f"| cpu {cpus} | ring full waits {self.ring_full_waits}"
        )


def summarize(
    layout: CounterLayout,
    values: Any,
    step_ids: list[str],
    pids: list[int],
    rings: dict[tuple[int, int], Any],
    wall_time_s: float,
    started: float | None = None,
) -> RunSummary:
    """Build a :class:`RunSummary` from counter values and ring statistics."""
    workers = []
    for index, pid in enumerate(pids):

        def slot(offset: int, index: int = index) -> int:
            return int(values[layout.slot(index, offset)])

        cpu_s = slot(WorkerSlot.CPU_NS) / 1e9
        closed = slot(WorkerSlot.EPOCHS_CLOSED)
        workers.append(
            WorkerSummary(
                index=index,
                pid=pid,
                items_in=slot(WorkerSlot.ITEMS_IN),
                items_out=slot(WorkerSlot.ITEMS_OUT),
                items_sent=slot(WorkerSlot.ITEMS_SENT),
                items_received=slot(WorkerSlot.ITEMS_RECEIVED),
                epoch=slot(WorkerSlot.EPOCH),
                frontier=slot(WorkerSlot.FRONTIER),
                cpu_s=cpu_s,
                cpu_percent=100.0 * cpu_s / wall_time_s if wall_time_s > 0 else 0.0,
                max_rss_bytes=slot(WorkerSlot.MAX_RSS_KB) * 1024,
                idle_s=slot(WorkerSlot.IDLE_NS) / 1e9,
                blocked_s=slot(WorkerSlot.BLOCKED_NS) / 1e9,
                commits=slot(WorkerSlot.COMMITS),
                commit_s=slot(WorkerSlot.COMMIT_NS) / 1e9,
                epoch_close_latency_mean_s=(
                    slot(WorkerSlot.CLOSE_LAG_NS_TOTAL) / 1e9 / closed if closed else None
                ),
                epoch_close_latency_max_s=(
                    slot(WorkerSlot.CLOSE_LAG_NS_MAX) / 1e9 if closed else None
                ),
            )
        )
    steps = []
    for step_index, step_id in enumerate(step_ids):

        def total(offset: int, step_index: int = step_index) -> int:
            return sum(
                int(values[layout.step_slot(w, step_index, offset)]) for w in range(len(pids))
            )

        steps.append(
            StepSummary(
                step_id=step_id,
                items_in=total(StepSlot.ITEMS_IN),
                items_out=total(StepSlot.ITEMS_OUT),
                batches=total(StepSlot.BATCHES),
                busy_s=total(StepSlot.BUSY_NS) / 1e9,
            )
        )
    ring_summaries = []
    for (sender, receiver), ring in sorted(rings.items()):
        stats = ring.statistics()
        ring_summaries.append(
            RingSummary(
                sender=sender,
                receiver=receiver,
                frames=stats.frames_put,
                bytes=stats.bytes_put,
                full_waits=stats.full_count,
                empty_polls=stats.empty_count,
            )
        )
    items_in = sum(w.items_in for w in workers)
    busiest = max(steps, key=lambda s: s.busy_s, default=None)
    first_inputs = [
        int(values[layout.slot(index, WorkerSlot.FIRST_INPUT_MS)]) for index in range(len(pids))
    ]
    ready = [int(values[layout.slot(index, WorkerSlot.READY_MS)]) for index in range(len(pids))]
    workers_ready_s = None
    if ready and all(ready) and started is not None:
        workers_ready_s = max(0.0, max(ready) / 1000 - started)
    input_started_s = None
    running_items_per_s = None
    if any(first_inputs) and started is not None:
        input_started_s = max(0.0, min(t for t in first_inputs if t) / 1000 - started)
        running_s = wall_time_s - input_started_s
        if running_s > 0:
            running_items_per_s = items_in / running_s
    return RunSummary(
        workers=len(pids),
        wall_time_s=wall_time_s,
        items_in=items_in,
        items_out=sum(w.items_out for w in workers),
        items_exchanged=sum(w.items_sent for w in workers),
        items_per_s=items_in / wall_time_s if wall_time_s > 0 else 0.0,
        last_epoch=max((w.epoch for w in workers), default=0),
        cluster_frontier=int(values[CLUSTER_FRONTIER_SLOT]),
        bottleneck_step=busiest.step_id if busiest is not None and busiest.busy_s > 0 else None,
        workers_ready_s=workers_ready_s,
        input_started_s=input_started_s,
        running_items_per_s=running_items_per_s,
        per_worker=workers,
        steps=steps,
        rings=ring_summaries,
    )
