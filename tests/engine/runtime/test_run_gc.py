"""The cyclic GC while a worker runs: the caller's heap frozen, young and full
collections rarer, short-lived cyclic garbage still reclaimed, and every setting
restored afterwards."""

from __future__ import annotations

import gc
import sys
from typing import Any

import cloudpickle

import engine.operators as op
from engine.dataflow import Dataflow
from engine.runtime.worker import RUN_GC_THRESHOLD0, RUN_GC_THRESHOLD2
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
    expected = (max(before[0], RUN_GC_THRESHOLD0), before[1], max(before[2], RUN_GC_THRESHOLD2))
    assert threshold == expected
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


def test_a_process_setting_is_kept_when_higher_or_off() -> None:
    seen: list[tuple[int, int, int]] = []

    def look(x: int) -> int:
        seen.append(gc.get_threshold())
        return x

    before = gc.get_threshold()
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([1]))
    op.output("out", op.map("look", s, look), TestingSink([]))
    try:
        for mine in ((10 * RUN_GC_THRESHOLD0, 10, 10 * RUN_GC_THRESHOLD2), (0, 10, 10)):
            gc.set_threshold(*mine)
            run_main(flow)
            during = seen.pop()
            assert during[0] == mine[0]  # higher, or 0: no automatic collection at all
            assert during[2] == max(mine[2], RUN_GC_THRESHOLD2)
            assert gc.get_threshold() == mine
    finally:
        gc.set_threshold(*before)


def test_short_lived_cyclic_garbage_is_reclaimed_during_the_run() -> None:
    _Node.alive = _Node.peak = 0
    out: list[Any] = []
    items = 20 * RUN_GC_THRESHOLD0
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(range(items), batch_size=1000))
    op.output("out", op.map("cycle", s, _make_cycle), TestingSink(out))
    run_main(flow)
    assert len(out) == items
    # Young collections keep reclaiming them: never more than a few thresholds' worth
    # (each cycle is two container objects: the instance and its __dict__).
    assert _Node.peak < 2 * RUN_GC_THRESHOLD0
    gc.collect()
    assert _Node.alive == 0
