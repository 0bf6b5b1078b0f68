"""A CPU-bound job that scales with workers: the example of ``shmflow tune``.

Each item costs about 20 us of pure-Python arithmetic before anything crosses workers,
and the input has 8 partitions, so N workers on N cores go almost N times as fast::

    shmflow tune engine.examples.cpu_bound --repeat 3

``single_partition_flow`` does the same work on one input partition: one worker reads
and maps everything, so more workers cannot help and the tuner recommends one::

    shmflow tune "engine.examples.cpu_bound:single_partition_flow()"

Both print one ``key=sum`` line per key (16 lines); run one with
``python -m engine.examples.cpu_bound``.
"""

from __future__ import annotations

import engine.operators as op
from engine.connectors.stdio import StdOutSink
from engine.dataflow import Dataflow
from engine.testing import run_main
from engine.tools.flows import ListSource, cpu_work

#: Items per run (about a second of work for one worker).
ITEMS = 60_000
KEYS = 16


def _key(x: int) -> str:
    return f"k{x % KEYS:02d}"


def _add(a: int, b: int) -> int:
    return a + b


def _line(key_sum: tuple[str, int]) -> str:
    return f"{key_sum[0]}={key_sum[1]}"


def make_flow(items: int = ITEMS, partitions: int = 8, rounds: int = 300) -> Dataflow:
    """``items`` ints in ``partitions`` parts; ``cpu_work(x, rounds)`` each; sums per key."""
    flow = Dataflow("cpu_bound")
    nums = op.input("inp", flow, ListSource(list(range(items)), partitions, batch_size=500))
    worked = op.map("work", nums, lambda x: cpu_work(x, rounds))
    sums = op.reduce_final("sum", op.key_on("key", worked, _key), _add)
    op.output("out", op.map("fmt", sums, _line), StdOutSink())
    return flow


def single_partition_flow(items: int = ITEMS, rounds: int = 300) -> Dataflow:
    """The same job with one input partition: the work cannot spread over workers."""
    return make_flow(items, partitions=1, rounds=rounds)


flow = make_flow()


if __name__ == "__main__":
    run_main(flow)
