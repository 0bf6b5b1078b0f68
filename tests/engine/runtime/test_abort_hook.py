"""Sources hear about an abort in the caller (Source.on_abort), in every execution mode."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import cloudpickle
import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.inputs import AbortExecution, FixedPartitionedSource, StatefulSourcePartition
from engine.testing import TestingSink, TestingSource

ZERO = timedelta(0)


@pytest.fixture(autouse=True)
def _ship_this_module_by_value() -> None:
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_an_abort_marker_fires_once_in_every_execution_mode(entry_point) -> None:
    marker = TestingSource.ABORT()
    items = [1, 2, marker, 3]
    out: list[int] = []
    flow = Dataflow("abort_once")
    op.output("out", op.input("inp", flow, TestingSource(items)), TestingSink(out))
    entry_point(flow, epoch_interval=ZERO)
    assert out == [1, 2]
    assert marker._triggered  # the caller's marker, even when a worker process hit it
    entry_point(flow, epoch_interval=ZERO)  # skipped now
    assert out == [1, 2, 1, 2, 3]


def test_testing_source_on_abort_ignores_what_is_not_its_marker() -> None:
    marker = TestingSource.ABORT()
    source = TestingSource([marker, 1])
    for detail in (None, "0", 1, 5, -1):
        source.on_abort(detail)
    assert not marker._triggered
    TestingSource(iter([marker])).on_abort(0)  # not a list: nothing to find again
    assert not marker._triggered


class _AbortsAt(StatefulSourcePartition[int, int]):
    def __init__(self, stop_at: int, resume_state: int | None) -> None:
        self.next = resume_state or 0
        self.stop_at = stop_at

    def next_batch(self) -> list[int]:
        if self.next == self.stop_at:
            raise AbortExecution("stop here", detail={"at": self.next})
        if self.next > 5:
            raise StopIteration
        self.next += 1
        return [self.next - 1]

    def snapshot(self) -> int:
        return self.next


class AbortingSource(FixedPartitionedSource[int, int]):
    """A user's source that aborts at item ``stop_at`` and records ``on_abort`` calls."""

    def __init__(self, stop_at: int) -> None:
        self.stop_at = stop_at
        self.aborts: list[Any] = []

    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _AbortsAt:
        return _AbortsAt(self.stop_at, resume_state)

    def on_abort(self, detail: Any) -> None:
        self.aborts.append(detail)


def test_a_user_source_gets_the_abort_detail_in_the_caller(entry_point) -> None:
    source = AbortingSource(stop_at=3)
    out: list[int] = []
    flow = Dataflow("user_abort")
    op.output("out", op.input("inp", flow, source), TestingSink(out))
    entry_point(flow, epoch_interval=ZERO)  # returns normally: an abort is no error
    assert out == [0, 1, 2]
    assert source.aborts == [{"at": 3}]


class _QuietSource(AbortingSource):
    on_abort = FixedPartitionedSource.on_abort  # the default: nothing


def test_the_default_on_abort_does_nothing(entry_point) -> None:
    source = _QuietSource(stop_at=1)
    out: list[int] = []
    flow = Dataflow("quiet_abort")
    op.output("out", op.input("inp", flow, source), TestingSink(out))
    entry_point(flow, epoch_interval=ZERO)
    assert out == [0]
    assert source.aborts == []
