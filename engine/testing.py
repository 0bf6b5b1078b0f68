"""Helpers for testing dataflows: in-memory sources and sinks, and entry points.

:func:`run_main` runs a flow as one worker in the calling process: no subprocesses,
the same semantics as a cluster run, ideal for unit tests.

>>> import engine.operators as op
>>> from engine.dataflow import Dataflow
>>> out = []
>>> flow = Dataflow("testing_eg")
>>> nums = op.input("inp", flow, TestingSource([1, 2, 3]))
>>> op.output("out", op.map("sq", nums, lambda x: x * x), TestingSink(out))
>>> run_main(flow)
>>> out
[1, 4, 9]
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from engine.dataflow import Dataflow
from engine.inputs import (
    AbortExecution,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from engine.outputs import CallerSink
from engine.runtime.plan import InputConfig, Plan, compile_plan
from engine.runtime.ports import WorkerConfig
from engine.runtime.progress import epoch_interval_seconds
from engine.runtime.snapshots import StoreSnapshots, begin_execution
from engine.runtime.worker import Worker

__all__ = [
    "TestingSink",
    "TestingSource",
    "TimeTestingGetter",
    "cluster_main",
    "ffwd_iter",
    "poll_next_batch",
    "run_main",
]

X = TypeVar("X")


def run_main(
    flow: Dataflow,
    *,
    epoch_interval: timedelta | None = None,
    recovery_config: Any = None,
) -> None:
    """Run ``flow`` as a single worker in this process until every input is exhausted.

    ``epoch_interval`` defaults to 10 seconds; ``timedelta(0)`` makes every input batch
    its own epoch, with the flow drained between epochs (deterministic order for tests).
    With ``recovery_config`` (a :class:`recovery.RecoveryConfig` of a store made with
    :func:`recovery.init_db_dir`), state is snapshotted at every epoch close and the run
    resumes from where the last execution on that store stopped.
    Errors in user code raise :class:`~engine.errors.EngineRuntimeError` naming the step.
    """
    plan = compile_plan(flow)
    interval_s = epoch_interval_seconds(epoch_interval)
    config = WorkerConfig(
        worker_index=0, worker_count=1, epoch_interval_s=interval_s, start=time.monotonic()
    )
    if recovery_config is None:
        _run_worker(plan, Worker(plan, config))
        return
    with begin_execution(recovery_config, plan, 1, timedelta(seconds=interval_s)) as (
        store,
        info,
    ):
        config.first_epoch = info.resume_epoch
        _run_worker(plan, Worker(plan, config, snapshots=StoreSnapshots(info, 0, 1, store=store)))
        store.gc(backup_epochs=info.backup_epochs)


def _run_worker(plan: Plan, worker: Worker) -> None:
    """Run ``worker``; tell the source that aborted, as the supervisor does for processes."""
    if worker.run() or worker.aborted is None:
        return
    config = plan.steps[worker.aborted.step_index].config
    if isinstance(config, InputConfig):
        config.source.on_abort(worker.aborted.detail)


def cluster_main(
    flow: Dataflow,
    addresses: list[str] | None,
    proc_id: int,
    *,
    epoch_interval: timedelta | None = None,
    recovery_config: Any = None,
    worker_count_per_proc: int = 1,
) -> None:
    """Run ``flow`` on ``worker_count_per_proc`` worker processes on this machine.

    shmflow runs on one machine: ``addresses`` must be empty (or None) and ``proc_id``
    0. Items written to a :class:`TestingSink` and inspector calls are relayed back to
    this process. See :func:`engine.run_flow` for the programmatic entry point with
    more options.
    """
    if addresses:
        msg = (
            f"shmflow runs on one machine; got addresses {addresses!r}. Pass [] and set "
            "worker_count_per_proc to the number of worker processes"
        )
        raise ValueError(msg)
    if proc_id != 0:
        msg = f"proc_id must be 0 on a single machine; got {proc_id!r}"
        raise ValueError(msg)
    from engine.runtime.supervisor import run_flow

    run_flow(
        flow,
        workers=worker_count_per_proc,
        epoch_interval=epoch_interval,
        recovery_config=recovery_config,
    )


class _IterPartition(StatefulSourcePartition[X, int]):
    """Reads a TestingSource's iterable; the resume state is the index of the next item."""

    def __init__(self, items: Iterable[Any], batch_size: int, resume_state: int | None) -> None:
        self._next_index = 0 if resume_state is None else resume_state
        self._batch_size = batch_size
        self._it = iter(items)
        ffwd_iter(self._it, self._next_index)
        self._pending_exception: BaseException | None = None
        self._awake: datetime | None = None

    def next_batch(self) -> list[X]:
        if self._pending_exception is not None:
            raise self._pending_exception
        self._awake = None
        batch: list[X] = []
        for item in self._it:
            if isinstance(item, TestingSource.EOF):
                self._next_index += 1  # a resumed execution continues after the marker
                self._pending_exception = StopIteration()
                break
            if isinstance(item, TestingSource.ABORT):
                if not item._triggered:
                    item._triggered = True  # resumed executions skip it
                    marker_index = self._next_index + len(batch)
                    # On a worker process this marker is a copy: the detail tells
                    # TestingSource.on_abort in the caller which marker to mark.
                    self._pending_exception = AbortExecution(
                        f"TestingSource.ABORT at item {marker_index}", detail=marker_index
                    )
                    break
                self._next_index += 1  # skipped: resume states count it like an item
                continue
            if isinstance(item, TestingSource.PAUSE):
                self._awake = datetime.now(UTC) + item.for_duration
                break
            batch.append(item)
            if len(batch) >= self._batch_size:
                break
        self._next_index += len(batch)
        if not batch and self._pending_exception is None and self._awake is None:
            raise StopIteration
        return batch

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._next_index


class TestingSource(FixedPartitionedSource[X, int]):
    """A source reading a Python iterable, for tests. One partition.

    Markers in the iterable: :class:`EOF` ends this execution's input (a resumed
    execution continues after it), :class:`ABORT` stops the execution abruptly the first
    time it is reached (like a crash), :class:`PAUSE` emits nothing for a while.

    >>> list(TestingSource([1, 2, 3], batch_size=2).build_part("s", "iterable", None)
    ...      .next_batch())
    [1, 2]
    """

    __test__ = False  # not a pytest test class

    @dataclass
    class EOF:
        """End the input here; the next execution continues after this marker."""

    @dataclass
    class ABORT:
        """Abort the execution when reached (only the first time)."""

        _triggered: bool = False

    @dataclass
    class PAUSE:
        """Emit nothing for ``for_duration``."""

        for_duration: timedelta

    def __init__(self, ib: Iterable[Any], batch_size: int = 1) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            msg = f"TestingSource batch_size must be a positive int; got {batch_size!r}"
            raise ValueError(msg)
        self._items = ib
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        return ["iterable"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _IterPartition[X]:
        return _IterPartition(self._items, self._batch_size, resume_state)

    def on_abort(self, detail: Any) -> None:
        """Mark the ABORT marker at index ``detail`` as fired: later executions skip it.

        >>> marker = TestingSource.ABORT()
        >>> TestingSource([1, marker, 2]).on_abort(1)
        >>> marker
        TestingSource.ABORT(_triggered=True)
        """
        items = self._items
        if not isinstance(items, list) or not isinstance(detail, int):
            return  # markers can only be found again in a list
        if 0 <= detail < len(items) and isinstance(items[detail], TestingSource.ABORT):
            items[detail]._triggered = True


class TestingSink(CallerSink[X]):
    """Appends every item to ``ls``, in the caller's process whatever the execution mode.

    Items written on worker processes are relayed to the caller and appended there.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, ls: list[X]) -> None:
        self._items = ls

    def write_in_caller(self, items: list[X], worker_index: int) -> None:
        self._items.extend(items)


@dataclass
class TimeTestingGetter:
    """A settable clock for tests: pass ``getter.get`` where a ``now_getter`` is taken.

    >>> clock = TimeTestingGetter(datetime(2024, 1, 1, tzinfo=UTC))
    >>> clock.advance(timedelta(seconds=5))
    >>> clock.get().isoformat()
    '2024-01-01T00:00:05+00:00'
    """

    now: datetime

    def advance(self, td: timedelta) -> None:
        """Move the clock forward by ``td``."""
        self.now += td

    def get(self) -> datetime:
        """The current (fake) time."""
        return self.now


def ffwd_iter(it: Iterator[Any], n: int) -> None:
    """Skip ``n`` items of iterator ``it``.

    >>> it = iter(range(5)); ffwd_iter(it, 2); next(it)
    2
    """
    next(itertools.islice(it, n, n), None)


def poll_next_batch(
    part: StatefulSourcePartition[X, Any] | StatelessSourcePartition[X],
    timeout: timedelta = timedelta(seconds=5),
) -> list[X]:
    """Call ``part.next_batch()`` until it returns a non-empty batch or ``timeout`` passes.

    Raises ``TimeoutError`` when nothing came in time (StopIteration passes through).
    """
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        batch = list(part.next_batch())
        if batch:
            return batch
        if time.monotonic() >= deadline:
            msg = f"partition {part!r} returned no items within {timeout}"
            raise TimeoutError(msg)
        time.sleep(0.001)
