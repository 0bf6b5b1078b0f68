"""Benchmark flows, their data and their plain-Python baselines.

Every flow reads from an in-memory partitioned source in batches and ends in a sink that
only counts, so what is measured is the engine plus the user callbacks. Each has a
baseline doing the same work in a plain Python loop over the same data.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import engine.operators as op
import engine.operators.windowing as win
from engine.dataflow import Dataflow
from engine.inputs import FixedPartitionedSource, StatefulSourcePartition
from engine.outputs import DynamicSink, StatelessSinkPartition

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class _ListPartition(StatefulSourcePartition[Any, int]):
    def __init__(self, items: list[Any], batch_size: int, start: int | None) -> None:
        self.items = items
        self.batch_size = batch_size
        self.position = start or 0

    def next_batch(self) -> list[Any]:
        if self.position >= len(self.items):
            raise StopIteration
        end = self.position + self.batch_size
        batch = self.items[self.position : end]
        self.position = end
        return batch

    def snapshot(self) -> int:
        return self.position


class ListSource(FixedPartitionedSource[Any, int]):
    """Items of a list dealt round-robin into ``partitions`` parts, read in batches.

    Dealing (rather than cutting into contiguous runs) keeps every partition moving
    through event time together, as partitions of a real log do.
    """

    def __init__(self, items: list[Any], partitions: int = 4, batch_size: int = 10_000):
        self.parts = [items[i::partitions] for i in range(partitions)]
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [f"part-{i}" for i in range(len(self.parts))]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ListPartition:
        index = int(for_part.rsplit("-", 1)[1])
        return _ListPartition(self.parts[index], self.batch_size, resume_state)


class _CountingPartition(StatelessSinkPartition[Any]):
    def __init__(self) -> None:
        self.count = 0

    def write_batch(self, items: list[Any]) -> None:
        self.count += len(items)


class CountingSink(DynamicSink[Any]):
    """Counts items and drops them."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        return _CountingPartition()


# -- data ---------------------------------------------------------------------------------


def ints(n: int) -> list[int]:
    return list(range(n))


def words(n: int, vocabulary: int = 10_000, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"word{i}" for i in range(vocabulary)]
    return rng.choices(vocab, k=n)


def events(n: int, keys: int = 100, seed: int = 7) -> list[tuple[str, datetime, int]]:
    """``(key, timestamp, value)``: 1,000 events per second, in time order."""
    rng = random.Random(seed)
    return [
        (f"sensor{rng.randrange(keys)}", T0 + timedelta(milliseconds=i), rng.randrange(100))
        for i in range(n)
    ]


# -- flows and baselines --------------------------------------------------------------------


def passthrough_flow(data: list[int], partitions: int = 4) -> Dataflow:
    flow = Dataflow("passthrough")
    nums = op.input("inp", flow, ListSource(data, partitions))
    op.output("out", op.map("inc", nums, lambda x: x + 1), CountingSink())
    return flow


def passthrough_baseline(data: list[int]) -> int:
    return len([x + 1 for x in data])


def _word_key(word: str) -> str:
    return word


def count_final_flow(data: list[str], partitions: int = 4) -> Dataflow:
    flow = Dataflow("wordcount")
    ws = op.input("inp", flow, ListSource(data, partitions))
    op.output("out", op.count_final("count", ws, _word_key), CountingSink())
    return flow


def _running_count(count: int | None, _one: int) -> tuple[int, int]:
    count = (count or 0) + 1
    return count, count


def stateful_map_flow(data: list[str], partitions: int = 4) -> Dataflow:
    flow = Dataflow("wordcount_sm")
    ws = op.input("inp", flow, ListSource(data, partitions))
    pairs = op.map("pair", ws, lambda w: (w, 1))
    op.output("out", op.stateful_map("count", pairs, _running_count), CountingSink())
    return flow


def count_baseline(data: list[str]) -> int:
    counts: dict[str, int] = {}
    for word in data:
        counts[word] = counts.get(word, 0) + 1
    return len(counts)


def _event_ts(event: tuple[str, datetime, int]) -> datetime:
    return event[1]


def window_flow(data: list[tuple[str, datetime, int]], partitions: int = 4) -> Dataflow:
    flow = Dataflow("window_sum")
    evs = op.input("inp", flow, ListSource(data, partitions))
    keyed = op.key_on("key", evs, lambda e: e[0])
    clock = win.EventClock(_event_ts, wait_for_system_duration=timedelta(seconds=60))
    sums = win.fold_window(
        "sum",
        keyed,
        clock,
        win.TumblingWindower(timedelta(seconds=1), T0),
        lambda: 0,
        lambda acc, e: acc + e[2],
        lambda a, b: a + b,
    )
    op.output("out", sums.down, CountingSink())
    return flow


def window_baseline(data: list[tuple[str, datetime, int]]) -> int:
    sums: dict[tuple[str, int], int] = {}
    for key, ts, value in data:
        window = int((ts - T0).total_seconds() // 1)
        sums[key, window] = sums.get((key, window), 0) + value
    return len(sums)


def cpu_work(x: int, rounds: int = 300) -> int:
    """About 20 microseconds of pure-Python arithmetic on a 2-core box (see bench notes)."""
    acc = x
    for i in range(rounds):
        acc = (acc * 31 + i) % 1_000_003
    return acc


def cpu_flow(data: list[int], partitions: int = 8) -> Dataflow:
    flow = Dataflow("cpu_bound")
    nums = op.input("inp", flow, ListSource(data, partitions, batch_size=1_000))
    op.output("out", op.map("work", nums, cpu_work), CountingSink())
    return flow


def empty_flow() -> Dataflow:
    flow = Dataflow("empty")
    op.output("out", op.input("inp", flow, ListSource([], 1)), CountingSink())
    return flow


FLOWS: dict[str, tuple[Callable[..., Any], Callable[[Any], Dataflow], Callable[[Any], int]]] = {
    "passthrough": (lambda: ints(2_000_000), passthrough_flow, passthrough_baseline),
    "wordcount_count_final": (lambda: words(2_000_000), count_final_flow, count_baseline),
    "wordcount_stateful_map": (lambda: words(2_000_000), stateful_map_flow, count_baseline),
    "window_sum": (lambda: events(1_000_000), window_flow, window_baseline),
}
"""name -> (make data, build flow, baseline), as in the single-worker benchmarks."""
