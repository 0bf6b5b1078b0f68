"""Relays: a CallerSink and inspectors take effect in the caller, in every execution mode."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import cloudpickle
import pytest

import engine.operators as op
from engine import run_flow
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.inputs import DynamicSource, StatelessSourcePartition
from engine.outputs import CallerSink, DynamicSink, StatelessSinkPartition
from engine.runtime.plan import OutputConfig, compile_plan
from engine.runtime.protocol import InspectCalls, Relay, SinkItems
from engine.runtime.relay import RELAY_FLUSH_ITEMS, RelayChannel, RelaySink, with_relays
from engine.testing import TestingSink, TestingSource, cluster_main

ZERO = timedelta(0)
ITEMS_PER_WORKER = 25


@pytest.fixture(autouse=True)
def _ship_this_module_by_value() -> None:
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _Numbers(StatelessSourcePartition[tuple[int, int]]):
    """``(worker_index, n)`` for n in 0..ITEMS_PER_WORKER-1, a few per batch."""

    def __init__(self, worker_index: int) -> None:
        self.worker_index = worker_index
        self.next = 0

    def next_batch(self) -> list[tuple[int, int]]:
        if self.next >= ITEMS_PER_WORKER:
            raise StopIteration
        batch = [(self.worker_index, n) for n in range(self.next, self.next + 4)]
        batch = [item for item in batch if item[1] < ITEMS_PER_WORKER]
        self.next += 4
        return batch


class PerWorkerNumbers(DynamicSource[tuple[int, int]]):
    """Every worker produces its own numbers, tagged with its index."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Numbers:
        return _Numbers(worker_index)


class Recorder(CallerSink[Any]):
    """A user's caller-side sink: records ``(worker_index, item)`` in the caller."""

    def __init__(self) -> None:
        self.written: list[tuple[int, Any]] = []
        self.calls = 0

    def write_in_caller(self, items: list[Any], worker_index: int) -> None:
        self.calls += 1
        self.written += [(worker_index, item) for item in items]


def _numbers_flow(sink: CallerSink[Any]) -> Dataflow:
    flow = Dataflow("relayed")
    numbers = op.input("inp", flow, PerWorkerNumbers())
    op.output("out", op.map("same", numbers, lambda item: item), sink)
    return flow


def _check_per_worker(written: list[tuple[int, Any]], workers: int) -> None:
    assert {index for index, _ in written} == set(range(workers))
    for worker in range(workers):
        mine = [item for index, item in written if index == worker]
        # Every item of that worker, once, in the order it wrote them; tagged by its writer.
        assert mine == [(worker, n) for n in range(ITEMS_PER_WORKER)]


def test_a_user_caller_sink_gets_the_items_of_two_worker_processes() -> None:
    sink = Recorder()
    cluster_main(_numbers_flow(sink), [], 0, worker_count_per_proc=2, epoch_interval=ZERO)
    assert len(sink.written) == 2 * ITEMS_PER_WORKER
    _check_per_worker(sink.written, 2)
    assert sink.calls >= 2  # at least one batch from each worker


def test_a_user_caller_sink_works_in_every_execution_mode(entry_point) -> None:
    sink = Recorder()
    entry_point(_numbers_flow(sink), epoch_interval=ZERO)
    workers = len({index for index, _ in sink.written})
    assert len(sink.written) == workers * ITEMS_PER_WORKER
    _check_per_worker(sink.written, workers)


def test_testing_sink_is_a_caller_sink() -> None:
    out: list[int] = []
    sink = TestingSink(out)
    assert isinstance(sink, CallerSink)
    sink.write_in_caller([1, 2], worker_index=1)
    sink.build("f.out", 0, 1).write_batch([3])
    assert out == [1, 2, 3]


class _Failing(CallerSink[Any]):
    def write_in_caller(self, items: list[Any], worker_index: int) -> None:
        raise ValueError("the caller's sink broke")


def test_a_failing_caller_sink_fails_the_run_naming_the_step() -> None:
    flow = Dataflow("failing")
    op.output("out", op.input("inp", flow, TestingSource([1, 2])), _Failing())
    expected = r"step 'failing\.out' failed in the caller process"
    with pytest.raises(EngineRuntimeError, match=expected) as info:
        run_flow(flow, workers=2)
    assert info.value.step_id == "failing.out"
    assert isinstance(info.value.__cause__, ValueError)


def test_inspector_calls_from_two_worker_processes_run_in_the_caller() -> None:
    seen: list[tuple[str, Any, int]] = []
    flow = Dataflow("inspected")
    numbers = op.input("inp", flow, PerWorkerNumbers())
    spied = op.inspect_debug(
        "spy", numbers, lambda step_id, item, _epoch, worker: seen.append((step_id, item, worker))
    )
    op.output("out", spied, TestingSink([]))
    cluster_main(flow, [], 0, worker_count_per_proc=2, epoch_interval=ZERO)
    assert {step_id for step_id, _, _ in seen} == {"inspected.spy"}
    _check_per_worker([(worker, item) for _, item, worker in seen], 2)


# -- the relay's parts, without processes -------------------------------------------------


class _Conn:
    """Stands in for a control connection: keeps what is sent."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, message: Any) -> None:
        self.sent.append(message)


class _DiscardPartition(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        pass


class _Discard(DynamicSink[Any]):
    """A sink built on the workers (not a CallerSink)."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DiscardPartition:
        return _DiscardPartition()


def test_with_relays_swaps_only_caller_sinks_and_inspectors() -> None:
    flow = Dataflow("swap")
    caller_sink, worker_sink = Recorder(), _Discard()
    numbers = op.input("inp", flow, TestingSource([1]))
    op.output("caller", op.inspect_debug("spy", numbers, lambda *_: None), caller_sink)
    op.output("other", numbers, worker_sink)
    shipped, relays = with_relays(compile_plan(flow))
    sinks = {s.step_id: s.config.sink for s in shipped.steps if isinstance(s.config, OutputConfig)}
    assert isinstance(sinks["swap.caller"], RelaySink)
    assert sinks["swap.other"] is worker_sink
    assert [sink for _, sink in relays.sinks.values()] == [caller_sink]
    assert [step_id for step_id, _ in relays.inspectors.values()] == ["swap.spy"]


def test_relay_channel_batches_and_merges_consecutive_inspector_calls() -> None:
    conn = _Conn()
    channel = RelayChannel(conn)  # type: ignore[arg-type]
    channel.add_call(1, "a", 1)
    channel.add_call(1, "b", 1)
    channel.add_items(2, [10, 11])
    channel.add_call(1, "c", 2)
    assert conn.sent == []
    channel.flush()
    assert conn.sent == [
        Relay(
            (
                InspectCalls(1, [("a", 1), ("b", 1)]),
                SinkItems(2, [10, 11]),
                InspectCalls(1, [("c", 2)]),
            )
        )
    ]
    channel.flush()
    assert len(conn.sent) == 1  # nothing buffered, nothing sent
    channel.add_items(2, list(range(RELAY_FLUSH_ITEMS)))
    assert len(conn.sent) == 2  # a full buffer is sent at once


def test_caller_relays_reject_a_step_without_a_caller_side_target() -> None:
    flow = Dataflow("target")
    op.output("out", op.input("inp", flow, TestingSource([1])), Recorder())
    _, relays = with_relays(compile_plan(flow))
    with pytest.raises(EngineRuntimeError, match=r"worker 1 relayed items for step #7"):
        relays.deliver(Relay((SinkItems(7, [1]),)), worker_index=1)
