"""The cyclic GC while a worker runs: the caller's heap frozen, full collections rarer,
short-lived cyclic garbage still reclaimed, and every setting restored afterwards."""

from __future__ import annotations

import gc
import sys
from typing import Any

import cloudpickle

import engine.operators as op
from engine.dataflow import Dataflow
from engine.runtime.worker import RUN_GC_THRESHOLD2
from engine.testing import TestingSink, TestingSource, run_main

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_settings_during_the_run_and_restored_after() -> None:
    seen: list[tuple[tuple[int, int, int], int]] = []

    def look(x: int) -> int:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return x

    before = gc.get_threshold()
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([1, 2]))
    op.output("out", op.map("look", s, look), TestingSink([]))
    run_main(flow)
    (threshold, frozen), _ = seen
    assert threshold == (before[0], before[1], max(before[2], RUN_GC_THRESHOLD2))
    assert frozen > 0  # what was alive before the run is out of the collector's scans
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


class _Node:
    """A self-referencing object that counts its live instances."""

    alive = 0
    peak = 0

    def __init__(self) -> None:
        self.me = self
        _Node.alive += 1
        _Node.peak = max(_Node.peak, _Node.alive)

    def __del__(self) -> None:
        _Node.alive -= 1


def _make_cycle(x: int) -> int:
    _Node()  # dropped at once: garbage only the cyclic GC can reclaim
    return x


def test_short_lived_cyclic_garbage_is_reclaimed_during_the_run() -> None:
    _Node.alive = _Node.peak = 0
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(range(100_000), batch_size=1000))
    op.output("out", op.map("cycle", s, _make_cycle), TestingSink(out))
    run_main(flow)
    assert len(out) == 100_000
    # Young collections keep reclaiming them: never more than a few thresholds' worth.
    assert _Node.peak < 20_000
    gc.collect()
    assert _Node.alive == 0
