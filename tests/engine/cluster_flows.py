"""Flows used by the process-level fault tests (imported by path in subprocesses)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta

import engine.operators as op
from engine.dataflow import Dataflow
from engine.inputs import DynamicSource, StatelessSourcePartition
from engine.testing import TestingSink, cluster_main


class _Ticks(StatelessSourcePartition[tuple[str, int]]):
    """Never ends: a small batch of keyed ticks every 10 ms."""

    def __init__(self, worker_index: int) -> None:
        self.worker_index = worker_index
        self.count = 0

    def next_batch(self) -> list[tuple[str, int]]:
        self.count += 1
        return [(f"k{(self.count + i) % 7}", self.count) for i in range(10)]

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(milliseconds=10)


class EndlessSource(DynamicSource[tuple[str, int]]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Ticks:
        return _Ticks(worker_index)


def endless_flow(sink: list | None = None) -> Dataflow:
    """Runs until stopped; keyed, so items cross workers."""
    flow = Dataflow("endless")
    ticks = op.input("ticks", flow, EndlessSource())
    counts = op.stateful_map("count", ticks, lambda s, v: ((s or 0) + 1, (s or 0) + 1))
    op.output("out", counts, TestingSink(sink if sink is not None else []))
    return flow


flow = endless_flow()


if __name__ == "__main__":
    # A script without a __main__-style guard around the flow definition would also
    # work; this one reports its pid and runs the endless flow on 2 workers.
    print(os.getpid(), flush=True)
    cluster_main(endless_flow(), [], 0, worker_count_per_proc=int(sys.argv[1]))
