"""The benchmark flows of :mod:`bench.flows`, run on Bytewax 0.21.1 for comparison.

Only imported when Bytewax is installed (``pip install -e '.[bench]'``). The flows are
the same code with Bytewax's imports, which is also how a Bytewax user ports a flow to
shmflow.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bytewax.operators as bop  # type: ignore[import-not-found]
import bytewax.operators.windowing as bwin  # type: ignore[import-not-found]
from bytewax.dataflow import Dataflow  # type: ignore[import-not-found]
from bytewax.inputs import (  # type: ignore[import-not-found]
    FixedPartitionedSource,
    StatefulSourcePartition,
)
from bytewax.outputs import DynamicSink, StatelessSinkPartition  # type: ignore[import-not-found]
from bytewax.testing import run_main  # type: ignore[import-not-found]

from bench import flows


class _ListPartition(StatefulSourcePartition):  # type: ignore[misc]
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


class ListSource(FixedPartitionedSource):  # type: ignore[misc]
    def __init__(self, items: list[Any], partitions: int = 4, batch_size: int = 10_000):
        self.parts = [items[i::partitions] for i in range(partitions)]
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [f"part-{i}" for i in range(len(self.parts))]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _ListPartition:
        index = int(for_part.rsplit("-", 1)[1])
        return _ListPartition(self.parts[index], self.batch_size, resume_state)


class _Counting(StatelessSinkPartition):  # type: ignore[misc]
    def __init__(self) -> None:
        self.count = 0

    def write_batch(self, items: list[Any]) -> None:
        self.count += len(items)


class CountingSink(DynamicSink):  # type: ignore[misc]
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


def _runner(build: Callable[[Any], Any]) -> Callable[[Any], Callable[[], None]]:
    def prepare(items: Any) -> Callable[[], None]:
        flow = build(items)
        return lambda: run_main(flow)

    return prepare


RUNNERS: dict[str, Callable[[Any], Callable[[], None]]] = {
    "passthrough": _runner(passthrough),
    "wordcount_count_final": _runner(count_final),
    "wordcount_stateful_map": _runner(stateful_map),
    "window_sum": _runner(window),
}
