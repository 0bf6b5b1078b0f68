"""The benchmark flows of :mod:`engine.tools.flows`, on Bytewax 0.21.1, for comparison.

Importing this module imports Bytewax: import it only when Bytewax is wanted, and treat
``ImportError`` as "not installed" (``pip install 'shmflow[bench]'`` installs it). The
flows are the same code with Bytewax's imports, which is also how a Bytewax user ports a
flow to shmflow. Bytewax runs them as one worker in the calling process (``run_main``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bytewax.operators as bop
import bytewax.operators.windowing as bwin
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from engine.tools import flows

__all__ = ["BENCHMARK_RUNNERS", "RUNNERS"]


class _ListPartition(StatefulSourcePartition):
    def __init__(self, items: list[Any], batch_size: int, start: int | None) -> None:
        self.items, self.batch_size, self.position = items, batch_size, start or 0

    def next_batch(self) -> list[Any]:
        if self.position >= len(self.items):
            raise StopIteration
        end = self.position + self.batch_size
        batch, self.position = self.items[self.position : end], end
        return batch

    def snapshot(self) -> int:
        return self.position


class ListSource(FixedPartitionedSource):
    def __init__(self, items: list[Any], partitions: int = 4, batch_size: int = 10_000):
        self.parts = [items[i::partitions] for i in range(partitions)]
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [f"part-{i}" for i in range(len(self.parts))]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _ListPartition:
        index = int(for_part.rsplit("-", 1)[1])
        return _ListPartition(self.parts[index], self.batch_size, resume_state)


class _Counting(StatelessSinkPartition):
    def __init__(self) -> None:
        self.count = 0

    def write_batch(self, items: list[Any]) -> None:
        self.count += len(items)


class CountingSink(DynamicSink):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Counting:
        return _Counting()


def passthrough(data: list[int]) -> Any:
    flow = Dataflow("passthrough")
    nums = bop.input("inp", flow, ListSource(data))
    bop.output("out", bop.map("inc", nums, lambda x: x + 1), CountingSink())
    return flow


def count_final(data: list[str]) -> Any:
    flow = Dataflow("wordcount")
    ws = bop.input("inp", flow, ListSource(data))
    bop.output("out", bop.count_final("count", ws, flows._word_key), CountingSink())
    return flow


def stateful_map(data: list[str]) -> Any:
    flow = Dataflow("wordcount_sm")
    pairs = bop.map("pair", bop.input("inp", flow, ListSource(data)), lambda w: (w, 1))
    bop.output("out", bop.stateful_map("count", pairs, flows._running_count), CountingSink())
    return flow


def window(data: list[Any]) -> Any:
    flow = Dataflow("window_sum")
    keyed = bop.key_on("key", bop.input("inp", flow, ListSource(data)), lambda e: e[0])
    clock = bwin.EventClock(flows._event_ts, wait_for_system_duration=timedelta(seconds=60))
    sums = bwin.fold_window(
        "sum",
        keyed,
        clock,
        bwin.TumblingWindower(timedelta(seconds=1), flows.T0),
        lambda: 0,
        lambda acc, e: acc + e[2],
        lambda a, b: a + b,
    )
    bop.output("out", sums.down, CountingSink())
    return flow


def cpu(data: list[int]) -> Any:
    flow = Dataflow("cpu_bound")
    nums = bop.input("inp", flow, ListSource(data, 8, batch_size=1_000))
    bop.output("out", bop.map("work", nums, flows.cpu_work), CountingSink())
    return flow


def numpy_sum(data: list[Any]) -> Any:
    flow = Dataflow("numpy_sum")
    items = bop.input("inp", flow, ListSource(data, 4, batch_size=1_000))
    sums = bop.reduce_final("sum", items, flows._add_arrays)
    bop.output("out", sums, CountingSink())
    return flow


def _runner(build: Callable[[Any], Any]) -> Callable[[Any], Callable[[], None]]:
    def prepare(items: Any) -> Callable[[], None]:
        flow = build(items)  # building (and partitioning the data) is not timed
        return lambda: run_main(flow)

    return prepare


RUNNERS: dict[str, Callable[[Any], Callable[[], None]]] = {
    "passthrough": _runner(passthrough),
    "wordcount_count_final": _runner(count_final),
    "wordcount_stateful_map": _runner(stateful_map),
    "window_sum": _runner(window),
}
"""Names of :data:`engine.tools.flows.FLOWS` -> prepare(items) -> run()."""

BENCHMARK_RUNNERS: dict[str, Callable[[Any], Callable[[], None]]] = {
    "passthrough": _runner(passthrough),
    "wordcount": _runner(count_final),
    "window": _runner(window),
    "cpu": _runner(cpu),
    "numpy": _runner(numpy_sum),
}
"""Names of :data:`engine.tools.flows.BENCHMARKS` -> prepare(items) -> run()."""
