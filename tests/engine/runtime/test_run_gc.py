"""The cyclic GC while a worker runs: the caller's heap frozen, young and full
collections rarer, short-lived cyclic garbage still reclaimed, and every setting
restored afterwards."""

from __future__ import annotations

import gc
import sys
import weakref
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


class _Out(list):  # type: ignore[type-arg]
    """A sink's list that a weak reference can watch."""


class _State:
    """A key's state, watched through a weak reference."""

    def __init__(self) -> None:
        self.total = 0


def _window_flow(out: list[Any], refs: list[Any]) -> Dataflow:
    from datetime import UTC, datetime, timedelta

    import engine.operators.windowing as win

    def add(state: _State | None, value: int) -> tuple[_State, int]:
        state = state or _State()
        refs.append(weakref.ref(state))
        state.total += value
        return state, state.total

    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = [(f"k{i % 7}", start + timedelta(seconds=i)) for i in range(500)]
    flow = Dataflow("left")
    s = op.input("inp", flow, TestingSource(events))
    keyed = op.map("one", s, lambda kv: (kv[0], 1))
    op.output("sums", op.stateful_map("sum", keyed, add), TestingSink(out))
    clock = win.EventClock(lambda e: e[1], wait_for_system_duration=timedelta(0))
    windows = win.count_window(
        "count", s, clock, win.TumblingWindower(timedelta(seconds=10), start), lambda e: e[0]
    )
    op.output("windows", windows.down, TestingSink(out))
    return flow


def test_a_finished_run_leaves_nothing_for_the_cyclic_gc() -> None:
    """What the running nodes held (states, windows, a sink's list) goes when the caller
    drops the flow and the output, not at some later full collection: in-process runs one
    after the other would otherwise pile up memory and slow down."""
    out = _Out()
    refs: list[Any] = []
    flow = _window_flow(out, refs)
    gc.collect()
    gc.disable()
    try:
        run_main(flow)
        assert refs and out
        sink_list = weakref.ref(out)
        del flow, out
        assert sink_list() is None
        assert all(ref() is None for ref in refs)
        assert gc.collect() == 0
    finally:
        gc.enable()
