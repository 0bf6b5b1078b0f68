"""The built-in benchmark flows, their data and their baselines (``shmflow bench``).

Every flow reads an in-memory list through :class:`ListSource` (partitioned, in
batches) and ends in a :class:`CountingSink`, so what is measured is the engine plus the
user callbacks. Each flow has two baselines doing the same work on the same data, measured
in the same run:

- **python loop**: one plain Python loop over the data in this process;
- **mp.Queue**: a producer process puts the data, in the flow's batches, on a bounded
  ``multiprocessing.Queue``; a consumer process gets each batch and does the loop's work
  on it (the classic way to move batches between processes; start-up not timed).

Bytewax 0.21.1 runs the same flows when it is installed (``pip install 'shmflow[bench]'``,
see :mod:`engine.tools.bytewax_flows`).

The flows (:data:`BENCHMARKS`, by name):

``passthrough``
    ``x + 1`` on ints: the per-item cost of the engine itself.
``wordcount``
    ``count_final`` over words from a 10,000-word vocabulary (pre-aggregated per batch
    before the exchange).
``window``
    ``fold_window`` sums per sensor and 1-second tumbling window on an event clock.
``cpu``
    about 20 us of pure-Python arithmetic per int: the flow that scales with workers.
``numpy``
    ``(key, float64 array)`` items summed per key with ``reduce_final``: each worker
    adds up its arrays per key and epoch first, so one partial sum per key crosses the
    rings (out-of-band buffers) instead of every array.

>>> flow = BENCHMARKS["wordcount"].build(BENCHMARKS["wordcount"].make_data("small"))
>>> flow.flow_id
'wordcount'
>>> state: dict = {}
>>> BENCHMARKS["wordcount"].loop(["a", "b", "a"], state)
>>> state
{'a': 2, 'b': 1}
"""

from __future__ import annotations

import os
import platform
import queue
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import engine.operators as op
import engine.operators.windowing as win
from engine.dataflow import Dataflow
from engine.inputs import FixedPartitionedSource, StatefulSourcePartition
from engine.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

__all__ = [
    "BENCHMARKS",
    "FLOWS",
    "KEY_STRIDE",
    "SIZES",
    "T0",
    "Benchmark",
    "CountingPartitionedSink",
    "CountingSink",
    "GeneratedSource",
    "ListSource",
    "arrays",
    "as_source",
    "count_baseline",
    "count_final_flow",
    "cpu_flow",
    "cpu_work",
    "empty_flow",
    "events",
    "generated_event",
    "generated_int",
    "generated_word",
    "ints",
    "machine",
    "numpy_flow",
    "passthrough_baseline",
    "passthrough_flow",
    "queue_baseline",
    "stateful_map_flow",
    "window_baseline",
    "window_flow",
    "words",
]

#: Time of the first benchmark event.
T0 = datetime(2024, 1, 1, tzinfo=UTC)
#: ``--size`` choices of ``shmflow bench``.
SIZES = ("small", "full")
#: Event ``i``'s key index is congruent to ``i`` modulo this (see :func:`events`).
KEY_STRIDE = 4


# -- source and sinks ----------------------------------------------------------------------


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

    >>> ListSource([1, 2, 3], partitions=2).list_parts()
    ['part-0', 'part-1']
    """

    def __init__(self, items: list[Any], partitions: int = 4, batch_size: int = 10_000):
        self.parts = [items[i::partitions] for i in range(partitions)]
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [f"part-{i}" for i in range(len(self.parts))]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ListPartition:
        index = int(for_part.rsplit("-", 1)[1])
        return _ListPartition(self.parts[index], self.batch_size, resume_state)


class _GeneratedPartition(StatefulSourcePartition[Any, int]):
    def __init__(
        self, item: Callable[[int], Any], indexes: range, batch_size: int, start: int | None
    ) -> None:
        self.item = item
        self.indexes = indexes
        self.batch_size = batch_size
        self.position = start or 0

    def next_batch(self) -> list[Any]:
        if self.position >= len(self.indexes):
            raise StopIteration
        end = self.position + self.batch_size
        batch = list(map(self.item, self.indexes[self.position : end]))
        self.position = end
        return batch

    def snapshot(self) -> int:
        return self.position


class GeneratedSource(FixedPartitionedSource[Any, int]):
    """Item ``i`` is ``item(i)``; partitions deal the indexes ``0..n-1`` round-robin.

    Each worker generates only its own partitions' items, batch by batch: for runs on
    worker processes, nothing but the generator function crosses to the workers.
    :func:`materialize` gives the same items as a list (for baselines).
    """

    def __init__(
        self, item: Callable[[int], Any], n: int, partitions: int = 4, batch_size: int = 10_000
    ) -> None:
        self.item = item
        self.n = n
        self.partitions = partitions
        self.batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [f"part-{i}" for i in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _GeneratedPartition:
        index = int(for_part.rsplit("-", 1)[1])
        indexes = range(index, self.n, self.partitions)
        return _GeneratedPartition(self.item, indexes, self.batch_size, resume_state)

    def materialize(self) -> list[Any]:
        """Every item, in index order."""
        return list(map(self.item, range(self.n)))


def as_source(data: Any, partitions: int = 4, batch_size: int = 10_000) -> Any:
    """A :class:`ListSource` over ``data``, or ``data`` itself if it is already a source."""
    if isinstance(data, FixedPartitionedSource):
        return data
    return ListSource(data, partitions, batch_size)


def generated_word(i: int, vocabulary: int = 10_000) -> str:
    """Word ``i`` of a deterministic stream over ``vocabulary`` distinct words."""
    return f"word{(i * 2_654_435_761 + 12_345) % 4_294_967_291 % vocabulary}"


def generated_event(i: int, keys: int = 100) -> tuple[str, datetime, int]:
    """Event ``i``: ``(key, timestamp, value)`` at 1,000 events per second.

    Keys are spread like those of :func:`events` (each key in one partition).
    """
    lane = (i * 2_654_435_761) % 4_294_967_291 % (keys // KEY_STRIDE)
    return (
        _sensor(lane, i),
        T0 + timedelta(milliseconds=i),
        (i * 40_503) % 100,
    )


def generated_int(i: int) -> int:
    return i


class _CountingPartition(StatelessSinkPartition[Any]):
    def __init__(self) -> None:
        self.count = 0

    def write_batch(self, items: list[Any]) -> None:
        self.count += len(items)


class CountingSink(DynamicSink[Any]):
    """Counts items and drops them (each worker counts its own)."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        return _CountingPartition()


class _CountingSinkPartition(StatefulSinkPartition[Any, int]):
    def __init__(self, resume_state: int | None) -> None:
        self.count = resume_state or 0

    def write_batch(self, values: list[Any]) -> None:
        self.count += len(values)

    def snapshot(self) -> int:
        return self.count


class CountingPartitionedSink(FixedPartitionedSink[Any, int]):
    """Counts items and drops them, with the partitions and routing of another sink.

    Standing in for a partitioned sink it keeps the exchange before the sink (items
    still move to the worker owning their partition), so a flow runs as it would with
    the real sink, minus the writing.

    >>> sink = CountingPartitionedSink(["a", "b"], lambda key: len(key))
    >>> sink.list_parts(), sink.part_fn("xyz")
    (['a', 'b'], 3)
    """

    def __init__(self, parts: list[str], part_fn: Callable[[str], int]) -> None:
        self._parts = list(parts)
        self._part_fn = part_fn

    def list_parts(self) -> list[str]:
        return list(self._parts)

    def part_fn(self, item_key: str) -> int:
        return self._part_fn(item_key)

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _CountingSinkPartition:
        return _CountingSinkPartition(resume_state)


# -- data ----------------------------------------------------------------------------------


def ints(n: int) -> list[int]:
    """``0 .. n-1``."""
    return list(range(n))


def words(n: int, vocabulary: int = 10_000, seed: int = 7) -> list[str]:
    """``n`` words drawn from ``vocabulary`` distinct ones."""
    rng = random.Random(seed)
    vocab = [f"word{i}" for i in range(vocabulary)]
    return rng.choices(vocab, k=n)


def events(n: int, keys: int = 100, seed: int = 7) -> list[tuple[str, datetime, int]]:
    """``(key, timestamp, value)``: 1,000 events per second, in time order.

    Event ``i``'s key index is congruent to ``i`` modulo :data:`KEY_STRIDE` (``keys`` is
    rounded down to a multiple of it), so a source dealing the events round-robin into 1, 2 or 4
    partitions keeps every key in one partition, in time order, like a log partitioned
    by key. Then no event is late on any number of workers. (Were a key's events dealt
    into several partitions, workers reading them apart in event time would make some
    late where the key's windows are, and results would change with the worker count.)
    """
    rng = random.Random(seed)
    lanes = keys // KEY_STRIDE
    return [
        (_sensor(rng.randrange(lanes), i), T0 + timedelta(milliseconds=i), rng.randrange(100))
        for i in range(n)
    ]


def _sensor(lane: int, i: int) -> str:
    """The key of event ``i`` drawn as ``lane``: its index is congruent to ``i``."""
    return f"sensor{lane * KEY_STRIDE + i % KEY_STRIDE}"


def arrays(
    n: int, length: int = 128, keys: int = 16, seed: int = 7, distinct: int = 1024
) -> list[tuple[str, Any]]:
    """``n`` items ``(key, float64 array of length)``, cycling over ``distinct`` arrays.

    Items share the same ``distinct`` array objects, so the input costs little memory
    and pickles (to reach worker processes) as those arrays plus references.
    """
    import numpy as np  # here: a worker loading a benchmark flow's plan needs no numpy

    rng = np.random.default_rng(seed)
    rows = list(rng.random((min(n, distinct), length)))
    return [(f"key{i % keys}", rows[i % distinct]) for i in range(n)]


def machine() -> str:
    """CPU count and model, Python and OS, in one line."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


# -- flows and plain-loop baselines ----------------------------------------------------------
#
# A baseline's ``loop(batch, state)`` does the flow's work for one batch; the python-loop
# baseline calls it once with all the data, the mp.Queue consumer once per batch.


def passthrough_flow(data: list[int], partitions: int = 4) -> Dataflow:
    flow = Dataflow("passthrough")
    nums = op.input("inp", flow, as_source(data, partitions))
    op.output("out", op.map("inc", nums, lambda x: x + 1), CountingSink())
    return flow


def _passthrough_loop(batch: list[int], state: dict[Any, Any]) -> None:
    state["n"] = state.get("n", 0) + len([x + 1 for x in batch])


def passthrough_baseline(data: list[int]) -> int:
    return len([x + 1 for x in data])


def _word_key(word: str) -> str:
    return word


def count_final_flow(data: list[str], partitions: int = 4) -> Dataflow:
    flow = Dataflow("wordcount")
    ws = op.input("inp", flow, as_source(data, partitions))
    op.output("out", op.count_final("count", ws, _word_key), CountingSink())
    return flow


def _running_count(count: int | None, _one: int) -> tuple[int, int]:
    count = (count or 0) + 1
    return count, count


def stateful_map_flow(data: list[str], partitions: int = 4) -> Dataflow:
    flow = Dataflow("wordcount_sm")
    ws = op.input("inp", flow, as_source(data, partitions))
    pairs = op.map("pair", ws, lambda w: (w, 1))
    op.output("out", op.stateful_map("count", pairs, _running_count), CountingSink())
    return flow


def _count_loop(batch: list[str], state: dict[Any, Any]) -> None:
    for word in batch:
        state[word] = state.get(word, 0) + 1


def count_baseline(data: list[str]) -> int:
    counts: dict[str, int] = {}
    _count_loop(data, counts)
    return len(counts)


def _event_ts(event: tuple[str, datetime, int]) -> datetime:
    return event[1]


def window_flow(data: list[tuple[str, datetime, int]], partitions: int = 4) -> Dataflow:
    flow = Dataflow("window_sum")
    evs = op.input("inp", flow, as_source(data, partitions))
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


def _window_loop(batch: list[tuple[str, datetime, int]], state: dict[Any, Any]) -> None:
    for key, ts, value in batch:
        window = int((ts - T0).total_seconds() // 1)
        state[key, window] = state.get((key, window), 0) + value


def window_baseline(data: list[tuple[str, datetime, int]]) -> int:
    sums: dict[Any, Any] = {}
    _window_loop(data, sums)
    return len(sums)


def cpu_work(x: int, rounds: int = 300) -> int:
    """About 20 microseconds of pure-Python arithmetic on a 2-core box (see bench notes)."""
    acc = x
    for i in range(rounds):
        acc = (acc * 31 + i) % 1_000_003
    return acc


def cpu_flow(data: list[int], partitions: int = 8) -> Dataflow:
    flow = Dataflow("cpu_bound")
    nums = op.input("inp", flow, as_source(data, partitions, batch_size=1_000))
    op.output("out", op.map("work", nums, cpu_work), CountingSink())
    return flow


def _cpu_loop(batch: list[int], state: dict[Any, Any]) -> None:
    state["n"] = state.get("n", 0) + len([cpu_work(x) for x in batch])


def _add_arrays(total: Any, value: Any) -> Any:
    return total + value


def numpy_flow(data: list[tuple[str, Any]], partitions: int = 4) -> Dataflow:
    flow = Dataflow("numpy_sum")
    items = op.input("inp", flow, as_source(data, partitions, batch_size=1_000))
    sums = op.reduce_final("sum", items, _add_arrays)
    op.output("out", sums, CountingSink())
    return flow


def _numpy_loop(batch: list[tuple[str, Any]], state: dict[Any, Any]) -> None:
    for key, value in batch:
        state[key] = state.get(key, 0.0) + value


def empty_flow() -> Dataflow:
    flow = Dataflow("empty")
    op.output("out", op.input("inp", flow, ListSource([], 1)), CountingSink())
    return flow


@dataclass(frozen=True)
class Benchmark:
    """A built-in benchmark: its data, its flow and its plain-loop work."""

    name: str
    description: str
    #: ``--size`` -> number of input items.
    sizes: dict[str, int]
    make: Callable[[int], list[Any]]
    build: Callable[[list[Any]], Dataflow]
    #: The flow's work for one batch, updating ``state`` (see the baselines above).
    loop: Callable[[list[Any], dict[Any, Any]], None]
    #: Items per batch of the flow's source (the mp.Queue baseline uses the same).
    batch_size: int = 10_000

    def make_data(self, size: str) -> list[Any]:
        """The input items for ``size`` (``"small"`` or ``"full"``)."""
        return self.make(self.sizes[size])


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "passthrough",
            "x + 1 on ints",
            {"small": 50_000, "full": 2_000_000},
            ints,
            passthrough_flow,
            _passthrough_loop,
        ),
        Benchmark(
            "wordcount",
            "count_final over words (10k vocabulary)",
            {"small": 50_000, "full": 2_000_000},
            words,
            count_final_flow,
            _count_loop,
        ),
        Benchmark(
            "window",
            "fold_window sums per key, 1 s tumbling windows",
            {"small": 20_000, "full": 1_000_000},
            events,
            window_flow,
            _window_loop,
        ),
        Benchmark(
            "cpu",
            "~20 us of Python arithmetic per item",
            {"small": 5_000, "full": 200_000},
            ints,
            cpu_flow,
            _cpu_loop,
            batch_size=1_000,
        ),
        Benchmark(
            "numpy",
            "float64[128] arrays summed per key (reduce_final)",
            {"small": 20_000, "full": 1_000_000},
            arrays,
            numpy_flow,
            _numpy_loop,
            batch_size=1_000,
        ),
    )
}
"""The flows ``shmflow bench`` runs, by name."""

FLOWS: dict[str, tuple[Callable[..., Any], Callable[[Any], Dataflow], Callable[[Any], int]]] = {
    "passthrough": (lambda: ints(2_000_000), passthrough_flow, passthrough_baseline),
    "wordcount_count_final": (lambda: words(2_000_000), count_final_flow, count_baseline),
    "wordcount_stateful_map": (lambda: words(2_000_000), stateful_map_flow, count_baseline),
    "window_sum": (lambda: events(1_000_000), window_flow, window_baseline),
}
"""name -> (make data, build flow, baseline) of the pytest-benchmark suite in ``bench/``."""


# -- the multiprocessing.Queue baseline ----------------------------------------------------

#: Batches the mp.Queue may hold (it is bounded, like a ring).
QUEUE_DEPTH = 64
#: Longest a baseline run may take before it is given up.
QUEUE_TIMEOUT_S = 600.0


def _queue_producer(data: list[Any], batch_size: int, batches: Any, ready: Any, go: Any) -> None:
    ready.put("producer")
    go.wait()
    for start in range(0, len(data), batch_size):
        batches.put(data[start : start + batch_size])
    batches.put(None)


def _queue_consumer(loop: Callable[..., None], batches: Any, ready: Any, results: Any) -> None:
    state: dict[Any, Any] = {}
    count = 0
    ready.put("consumer")
    while (batch := batches.get()) is not None:
        loop(batch, state)
        count += len(batch)
    results.put(count)


def queue_baseline(data: list[Any], loop: Callable[..., None], batch_size: int) -> float:
    """Seconds to move ``data`` in batches through a multiprocessing.Queue and process it.

    A producer process puts the batches on a bounded queue; a consumer process runs
    ``loop(batch, state)`` on each. Both are started (spawn) and ready before the clock
    starts; the clock stops when the consumer has processed the last batch.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    batches, ready, results = ctx.Queue(QUEUE_DEPTH), ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    procs = [
        ctx.Process(target=_queue_producer, args=(data, batch_size, batches, ready, go)),
        ctx.Process(target=_queue_consumer, args=(loop, batches, ready, results)),
    ]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=QUEUE_TIMEOUT_S)
        started = time.perf_counter()
        go.set()
        count = results.get(timeout=QUEUE_TIMEOUT_S)
        elapsed = time.perf_counter() - started
        if count != len(data):
            msg = f"mp.Queue baseline processed {count} of {len(data)} items"
            raise RuntimeError(msg)
        return elapsed
    except queue.Empty:
        msg = f"mp.Queue baseline did not finish within {QUEUE_TIMEOUT_S:g} s"
        raise RuntimeError(msg) from None
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for q in (batches, ready, results):
            q.close()
            q.join_thread()
