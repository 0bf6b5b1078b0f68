"""What a worker is given: its config, and the two ports it runs against.

A :class:`~engine.runtime.worker.Worker` executes a plan against an :class:`Exchange`
(moves batches between workers at exchange points) and a :class:`SnapshotRecorder`
(where epoch-end snapshots go and resume states come from). A one-worker run uses
:class:`LocalExchange` and :class:`NullSnapshots` or the recovery store's recorder; the
multi-process runtime plugs in the ring exchange.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.runtime.plan import PlanStep
from engine.runtime.progress import EOF_FRONTIER, FIRST_EPOCH

__all__ = [
    "Deliver",
    "Exchange",
    "LocalClaims",
    "LocalExchange",
    "NullSnapshots",
    "PartClaims",
    "SnapshotRecorder",
    "WorkerConfig",
]

#: ``deliver(step_index, epoch, items)``: hand items another worker routed here to the
#: exchange step at ``step_index`` of the plan.
Deliver = Callable[[int, int, list[Any]], None]


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

    def receive(self, deliver: Deliver) -> bool:
        """Hand the batches other workers sent to ``deliver``, take in their end-of-epoch
        marks; return whether anything arrived."""


class LocalExchange:
    """The exchange of a one-worker run: everything stays here."""

    def route(self, step: PlanStep, epoch: int, batch: list[Any]) -> list[Any]:
        return batch

    def remote_frontier(self, step: PlanStep) -> int:
        return EOF_FRONTIER

    def close_epochs(self, step: PlanStep, frontier: int) -> None:
        pass

    def receive(self, deliver: Deliver) -> bool:
        return False


class PartClaims(Protocol):
    """Hands out the partitions of inputs read in turn (``balance_parts``) one at a time.

    Worker k of n starts with partition k; the others go to whichever worker asks
    (:meth:`request`, then :meth:`granted` for the answer), counting on from n, so each
    partition goes to exactly one worker. One request per input step is outstanding at
    a time.
    """

    def request(self, step_index: int) -> None:
        """Ask for the next partition index of input step ``step_index``."""

    def granted(self, step_index: int) -> int | None:
        """The index answering the outstanding request, or None if it has not come yet
        (never blocks)."""


class LocalClaims:
    """The claims of a run in one process: every request is granted at once, counting
    from ``start`` (the worker count: the workers' first partitions are not claimed)."""

    def __init__(self, start: int = 1) -> None:
        self._start = start
        self._next: dict[int, int] = {}
        self._granted: dict[int, int] = {}

    def hand_out(self, step_index: int) -> int:
        """The next partition index of input step ``step_index`` (the one counter: the
        supervisor answers every worker's claims with it)."""
        index = self._next.get(step_index, self._start)
        self._next[step_index] = index + 1
        return index

    def request(self, step_index: int) -> None:
        self._granted[step_index] = self.hand_out(step_index)

    def granted(self, step_index: int) -> int | None:
        return self._granted.pop(step_index, None)
