"""Layout of the shared counter block of a run.

Every slot has exactly one writer (see :mod:`shm._counters`): slot 0 belongs to the
supervisor, each worker writes only its own block of :data:`SLOTS_PER_WORKER` slots.
Anyone may read; readers fold (min for frontiers, sum for counts), so no process ever
needs a cross-process read-modify-write.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CLUSTER_FRONTIER_SLOT",
    "STEP_SLOTS",
    "WORKER_SLOTS",
    "CounterLayout",
    "StepSlot",
    "WorkerSlot",
]

#: Slot of the cluster frontier (written by the supervisor).
CLUSTER_FRONTIER_SLOT = 0


class WorkerSlot:
    """Offsets inside one worker's block."""

    FRONTIER = 0  #: the worker frontier (published after its snapshots are committed)
    EPOCH = 1  #: the epoch the worker's inputs are in
    HEARTBEAT_MS = 2  #: monotonic milliseconds of the worker's last round
    ITEMS_IN = 3  #: items read from the worker's input partitions
    ITEMS_OUT = 4  #: items written to sinks by this worker
    CURRENT_STEP = 5  #: plan index + 1 of the step running now (0: none)
    ITEMS_SENT = 6  #: items sent to other workers through rings
    ITEMS_RECEIVED = 7  #: items received from other workers
    BACKLOG = 8  #: frames read while blocked on a full ring, not yet delivered
    CPU_NS = 9  #: CPU time of the worker process (user + system)
    MAX_RSS_KB = 10  #: peak resident set size of the worker process
    IDLE_NS = 11  #: time slept because there was nothing to do
    BLOCKED_NS = 12  #: time spent waiting for space in full rings (backpressure)
    ROUNDS = 13  #: executor rounds run
    FIRST_INPUT_MS = 14  #: monotonic milliseconds when the worker first read input items
    COMMITS = 15  #: snapshot commits (one per advance of the worker frontier)
    COMMIT_NS = 16  #: time spent writing snapshots and frontier (recovery store)
    EPOCHS_CLOSED = 17  #: timed epochs closed, for the latency below
    CLOSE_LAG_NS_TOTAL = 18  #: sum over closed epochs of (commit time - epoch's end)
    CLOSE_LAG_NS_MAX = 19  #: the largest of those
    READY_MS = 20  #: monotonic milliseconds when the worker had built its partitions and
    #: loaded its state (resumed, if recovering) and began its first round


#: Fixed slots at the start of each worker's block.
WORKER_SLOTS = 24


class StepSlot:
    """Offsets inside the per-step part of a worker's block (one group per plan step)."""

    ITEMS_IN = 0
    ITEMS_OUT = 1
    BATCHES = 2
    BUSY_NS = 3


STEP_SLOTS = 4


@dataclass(frozen=True)
class CounterLayout:
    """Slot numbers of a run with ``worker_count`` workers and ``step_count`` steps."""

    worker_count: int
    step_count: int = 0

    @property
    def slots_per_worker(self) -> int:
        return WORKER_SLOTS + self.step_count * STEP_SLOTS

    @property
    def slot_count(self) -> int:
        """Total slots in the block."""
        return 1 + self.worker_count * self.slots_per_worker

    def slot(self, worker_index: int, offset: int) -> int:
        """The slot of ``offset`` (a :class:`WorkerSlot` value) for a worker.

        >>> CounterLayout(2).slot(1, WorkerSlot.EPOCH)
        26
        """
        return 1 + worker_index * self.slots_per_worker + offset

    def step_slot(self, worker_index: int, step_index: int, offset: int) -> int:
        """The slot of a :class:`StepSlot` value for one step on one worker."""
        return self.slot(worker_index, WORKER_SLOTS + step_index * STEP_SLOTS + offset)

    def worker_block(self, worker_index: int) -> slice:
        """The slice of a worker's slots in the block array."""
        start = self.slot(worker_index, 0)
        return slice(start, start + self.slots_per_worker)
