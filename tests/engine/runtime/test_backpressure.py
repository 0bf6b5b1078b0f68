"""Backpressure: a slow sink behind a fast source keeps memory bounded.

The source generates ~190 MB of items as fast as it can on both workers; every item goes
to the one worker owning their key, whose sink sleeps per batch. Rings are bounded, so a full ring
pauses the sender (and with it its source) instead of queueing: each worker's peak RSS
stays far below the data volume, the rings report full waits, and nothing is lost.
Also with recovery on and with a window step in the path.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import engine.operators as op
import engine.operators.windowing as win
from engine import run_flow
from engine.dataflow import Dataflow
from engine.inputs import FixedPartitionedSource, StatefulSourcePartition
from engine.outputs import DynamicSink, StatelessSinkPartition
from recovery import RecoveryConfig, init_db_dir

ITEMS = 96_000
PAYLOAD = 2_000  # bytes per item: ~190 MB in all
BATCH = 200
#: What a worker may hold at its peak: an interpreter (~45 MB) plus the rings and a
#: few batches. Queueing the ~95 MB that cross (half the items) would exceed it.
RSS_BOUND = 100 * 2**20
#: One key: every item goes to the one worker owning it, so the other worker's source
#: can only go as fast as that worker's sink through a full ring.
KEYS = ["hot"]


class _FastPartition(StatefulSourcePartition[tuple[str, str], int]):
    def __init__(self, start: int, step: int, resume: int | None) -> None:
        self.next, self.step = (start if resume is None else resume), step

    def next_batch(self) -> list[tuple[str, str]]:
        if self.next >= ITEMS:
            raise StopIteration
        batch = []
        for i in range(self.next, min(self.next + BATCH * self.step, ITEMS), self.step):
            batch.append((KEYS[i % len(KEYS)], str(i).ljust(PAYLOAD, "x")))
        self.next += BATCH * self.step
        return batch

    def snapshot(self) -> int:
        return self.next


class FastSource(FixedPartitionedSource[tuple[str, str], int]):
    """Two partitions generating keyed items of PAYLOAD bytes, never waiting."""

    def list_parts(self) -> list[str]:
        return ["even", "odd"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> Any:
        return _FastPartition(0 if for_part == "even" else 1, 2, resume_state)


class _SlowPartition(StatelessSinkPartition[Any]):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.count = 0

    def write_batch(self, items: list[Any]) -> None:
        time.sleep(0.004)  # a slow sink: the point of the test, not an ordering device
        self.count += len(items)

    def close(self) -> None:
        self.out.write_text(str(self.count))


class SlowSink(DynamicSink[Any]):
    """Sleeps per batch; each worker writes how many items it got at close."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SlowPartition:
        return _SlowPartition(self.out_dir / f"worker{worker_index}.count")


def _flow(out_dir: Path, windows: bool) -> Dataflow:
    flow = Dataflow("backpressure")
    items = op.input("inp", flow, FastSource())
    if windows:
        clock = win.SystemClock()
        windower = win.TumblingWindower(length=timedelta(seconds=10), align_to=win.UTC_MIN)
        counted = win.count_window("count", items, clock, windower, lambda kv: kv[0])
        # The window emits at EOF; keep the per-item load on the sink with the items.
        op.output("windows", counted.down, SlowSink(out_dir / "w"))
    keyed = op.stateful_map("touch", items, lambda state, value: (1, len(value)))
    op.output("out", keyed, SlowSink(out_dir))
    return flow


def _received(out_dir: Path) -> int:
    return sum(int(p.read_text()) for p in out_dir.glob("worker*.count"))


@pytest.mark.parametrize(
    ("recovery", "windows"), [(False, False), (True, False), (False, True)], ids=str
)
def test_slow_sink_keeps_memory_bounded(tmp_path: Path, recovery: bool, windows: bool) -> None:
    out_dir = tmp_path / "out"
    (out_dir / "w").mkdir(parents=True)
    config = None
    if recovery:
        init_db_dir(tmp_path / "store")
        config = RecoveryConfig(tmp_path / "store")
    summary = run_flow(
        _flow(out_dir, windows),
        workers=2,
        epoch_interval=timedelta(seconds=0.5),
        recovery_config=config,
        ring_capacity=4 * 2**20,
    )
    assert _received(out_dir) == ITEMS  # lost == 0, and nothing twice
    assert summary.ring_full_waits > 0, "the rings never filled: no backpressure tested"
    peaks = [w.max_rss_bytes for w in summary.per_worker]
    assert max(peaks) < RSS_BOUND, f"peak RSS per worker {peaks} for ~190 MB of items"
