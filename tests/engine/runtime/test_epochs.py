"""Epochs, input polling and the TestingSource markers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.inputs import DynamicSource, StatelessSourcePartition
from engine.runtime.plan import compile_plan
from engine.runtime.ports import WorkerConfig
from engine.runtime.progress import EOF_FRONTIER, EpochClock, SenderMarks, fold_frontiers
from engine.runtime.worker import Worker
from engine.testing import TestingSink, TestingSource, run_main

ZERO = timedelta(0)


def _epochs_of(flow: Dataflow, stream, **kwargs: Any) -> list[tuple[Any, int]]:
    seen: list[tuple[Any, int]] = []
    op.output(
        "out",
        op.inspect_debug("dbg", stream, lambda _s, x, e, _w: seen.append((x, e))),
        TestingSink([]),
    )
    run_main(flow, **kwargs)
    return seen


def test_epochs_start_at_one_and_default_interval_is_long() -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(range(5), batch_size=2))
    assert _epochs_of(flow, s) == [(i, 1) for i in range(5)]


def test_zero_interval_makes_every_batch_an_epoch() -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(range(5), batch_size=2))
    assert _epochs_of(flow, s, epoch_interval=ZERO) == [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3)]


def test_zero_interval_drains_the_flow_between_epochs() -> None:
    """With untimed epochs, a stateful step's epoch is closed (snapshotted) before the
    next batch is read, so outputs interleave deterministically with inputs."""
    journal: list[str] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("k", 1), ("k", 2)]))
    s = op.inspect("read", s, lambda _sid, x: journal.append(f"read {x[1]}"))

    class Logic(op.StatefulBatchLogic[int, int, int]):
        def __init__(self, state: int | None) -> None:
            self.state = state or 0

        def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
            self.state += sum(values)
            return [], self.RETAIN

        def snapshot(self) -> int:
            journal.append(f"snapshot {self.state}")
            return self.state

    op.output("out", op.stateful_batch("sum", s, Logic), TestingSink([]))
    run_main(flow, epoch_interval=ZERO)
    assert journal == ["read 1", "snapshot 1", "read 2", "snapshot 3"]


def test_several_inputs_are_polled_round_robin() -> None:
    flow = Dataflow("f")
    a = op.input("a", flow, TestingSource(["a1", "a2", "a3"]))
    b = op.input("b", flow, TestingSource(["b1", "b2"]))
    seen = _epochs_of(flow, op.merge("m", a, b), epoch_interval=ZERO)
    assert [x for x, _ in seen] == ["a1", "b1", "a2", "b2", "a3"]
    assert [e for _, e in seen] == [1, 2, 3, 4, 5]


def test_timed_epochs_follow_the_shared_clock() -> None:
    """Epoch boundaries come from the start time and interval, not from item counts."""
    now = [100.0]
    flow = Dataflow("f")
    seen: list[tuple[Any, int]] = []
    s = op.input("inp", flow, TestingSource(range(4)))
    op.output(
        "out", op.inspect_debug("dbg", s, lambda _s, x, e, _w: seen.append((x, e))), TestingSink([])
    )
    worker = Worker(
        compile_plan(flow),
        WorkerConfig(epoch_interval_s=5.0, start=100.0),
        monotonic=lambda: now[0],
        sleep=lambda _s: None,
    )
    worker.open()
    try:
        for t in (100.0, 104.0, 105.0, 117.0):
            now[0] = t
            worker.step()
    finally:
        worker.close()
    assert seen == [(0, 1), (1, 1), (2, 2), (3, 4)]


class _SlowPartition(StatelessSourcePartition[int]):
    """Returns empty batches and asks to be woken in 0.2 s; counts polls."""

    def __init__(self, counter: list[int]) -> None:
        self.counter = counter
        self.wake = datetime.now(UTC) + timedelta(seconds=0.2)

    def next_batch(self) -> list[int]:
        self.counter.append(1)
        if datetime.now(UTC) >= self.wake:
            raise StopIteration
        return []

    def next_awake(self) -> datetime | None:
        return self.wake


class _SlowSource(DynamicSource[int]):
    def __init__(self, counter: list[int]) -> None:
        self.counter = counter

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SlowPartition:
        return _SlowPartition(self.counter)


def test_next_awake_is_honoured_without_busy_polling() -> None:
    polls: list[int] = []
    flow = Dataflow("f")
    op.output("out", op.input("inp", flow, _SlowSource(polls)), TestingSink([]))
    run_main(flow)
    # A busy loop would poll thousands of times in 0.2 s.
    assert 2 <= len(polls) <= 10


def test_pause_marker_delays_without_losing_items() -> None:
    out: list[int] = []
    flow = Dataflow("f")
    s = op.input(
        "inp", flow, TestingSource([1, TestingSource.PAUSE(timedelta(milliseconds=50)), 2])
    )
    op.output("out", s, TestingSink(out))
    run_main(flow)
    assert out == [1, 2]


def test_eof_marker_ends_input_and_resumes_after_it() -> None:
    source = TestingSource([1, 2, TestingSource.EOF(), 3])
    part = source.build_part("s", "iterable", None)
    assert part.next_batch() == [1]
    assert part.next_batch() == [2]
    with pytest.raises(StopIteration):  # may first return an empty batch, then stops
        assert part.next_batch() == []
        part.next_batch()
    resumed = source.build_part("s", "iterable", part.snapshot())
    assert resumed.next_batch() == [3]


def test_abort_marker_stops_run_once() -> None:
    items = [1, 2, TestingSource.ABORT(), 3]
    out: list[int] = []
    flow = Dataflow("f")
    op.output("out", op.input("inp", flow, TestingSource(items)), TestingSink(out))
    run_main(flow, epoch_interval=ZERO)
    assert out == [1, 2]
    run_main(flow, epoch_interval=ZERO)  # the abort was triggered; it is skipped now
    assert out == [1, 2, 1, 2, 3]


def test_epoch_interval_validation() -> None:
    flow = Dataflow("f")
    op.output("out", op.input("inp", flow, TestingSource([1])), TestingSink([]))
    with pytest.raises(TypeError, match=r"must be a datetime\.timedelta"):
        run_main(flow, epoch_interval=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be negative"):
        run_main(flow, epoch_interval=timedelta(seconds=-1))


def test_epoch_clock_and_frontier_folding() -> None:
    clock = EpochClock(start=0.0, interval_s=2.0, first_epoch=7)
    assert [clock.epoch_at(t) for t in (0.0, 1.9, 2.0, 5.0)] == [7, 7, 8, 9]
    assert clock.epoch_end(7) == 2.0
    untimed = EpochClock(start=0.0, interval_s=0.0)
    assert untimed.epoch_at(1e9) == 1
    assert fold_frontiers([4, EOF_FRONTIER, 2]) == 2
    marks = SenderMarks.starting_at(3, senders=[1, 2])
    marks.close(1, 5)
    assert marks.frontier == 3
    marks.eof(2)
    assert marks.frontier == 6
    marks.close(1, 4)  # marks never go backwards
    assert marks.frontier == 6
