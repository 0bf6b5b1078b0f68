"""The ``bytewax-2proc`` mode's harness (``_bytewax_procs``): relay, abort, failure, hang.

The operator tests check outputs through it; these check the harness itself: that the
output really comes from two processes, and that an abort, a failure and a hang each end
the run promptly with both processes gone (the autouse fixture checks for leftovers).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("bytewax")

import engine.operators as op
from engine.dataflow import Dataflow
from engine.outputs import CallerSink
from engine.testing import TestingSink, TestingSource
from tests.engine import _bytewax_procs
from tests.engine._bytewax_procs import BytewaxProcessesError, run_on_bytewax_processes

ZERO = timedelta(0)


class _ByWorker(CallerSink[Any]):
    """Records ``(worker_index, item)`` in the caller."""

    def __init__(self) -> None:
        self.written: list[tuple[int, Any]] = []

    def write_in_caller(self, items: list[Any], worker_index: int) -> None:
        self.written.extend((worker_index, item) for item in items)


def _running_sums(items: list[tuple[str, int]], sink: Any) -> Dataflow:
    flow = Dataflow("procs_sums")
    pairs = op.input("inp", flow, TestingSource(items, batch_size=50))
    sums = op.stateful_map("sum", pairs, lambda total, n: ((total or 0) + n,) * 2)
    op.output("out", sums, sink)
    return flow


def test_both_processes_write_and_everything_reaches_the_caller() -> None:
    items = [(f"k{i % 13}", i) for i in range(5000)]
    sink = _ByWorker()
    run_on_bytewax_processes(_running_sums(items, sink))
    assert {worker for worker, _ in sink.written} == {0, 1}
    assert len(sink.written) == len(items)
    last = {key: total for _, (key, total) in sink.written if total >= 0}
    assert sum(last.values()) == sum(n for _, n in items)


def test_an_abort_stops_both_processes_and_reaches_the_callers_source() -> None:
    marker = TestingSource.ABORT()
    out: list[int] = []
    flow = Dataflow("procs_abort")
    nums = op.redistribute("spread", op.input("inp", flow, TestingSource([1, 2, marker, 3])))
    op.output("out", nums, TestingSink(out))
    run_on_bytewax_processes(flow, epoch_interval=ZERO)
    assert marker._triggered
    assert set(out) <= {1, 2}  # what the other process had not written yet is lost
    first = len(out)
    run_on_bytewax_processes(flow, epoch_interval=ZERO)  # the marker is skipped now
    assert sorted(out[first:]) == [1, 2, 3]


def _boom(n: int) -> int:
    if n == 30:
        raise ValueError("no 30")
    return n


def test_a_failure_stops_both_processes_with_their_reports() -> None:
    flow = Dataflow("procs_fail")
    nums = op.input("inp", flow, TestingSource(range(100)))
    op.output("out", op.map("boom", op.redistribute("spread", nums), _boom), TestingSink([]))
    with pytest.raises(BytewaxProcessesError, match=r"Bytewax process \d failed") as info:
        run_on_bytewax_processes(flow)
    assert "Bytewax process 0: " in str(info.value)
    assert "Bytewax process 1: " in str(info.value)


def test_a_hung_run_dumps_both_processes_stacks_and_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_bytewax_procs, "TIMEOUT_S", 1.0)
    flow = Dataflow("procs_hang")
    items = [1, TestingSource.PAUSE(timedelta(hours=1)), 2]
    op.output("out", op.input("inp", flow, TestingSource(items)), TestingSink([]))
    started = time.monotonic()
    with pytest.raises(BytewaxProcessesError, match=r"Bytewax process \d hung") as info:
        run_on_bytewax_processes(flow)
    assert time.monotonic() - started < 1.0 + _bytewax_procs.FAILURE_GRACE_S + 3
    report = str(info.value)
    # The first to time out dumps its stacks; its peer may panic before its own dump.
    assert "Timeout (0:00:01)!" in report
    assert "in _child_main" in report
    assert "Bytewax process 0: " in report
    assert "Bytewax process 1: " in report
