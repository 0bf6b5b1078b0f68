"""Windowing clocks: EventClock watermarks (per item and batched), SystemClock, validation.

Clock logics are tested directly with a scripted ``TimeTestingGetter``; flows run through
the ``entry_point`` fixture.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.operators as op
import engine.operators.windowing as win
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.testing import TestingSink, TestingSource, TimeTestingGetter

EntryPoint = Callable[..., None]

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event_clock(wait: float, now: TimeTestingGetter) -> win.EventClock[datetime]:
    return win.EventClock(lambda ts: ts, timedelta(seconds=wait), now_getter=now.get)


def test_utc_bounds_are_aware() -> None:
    assert win.UTC_MAX.tzinfo is UTC and win.UTC_MIN.tzinfo is UTC
    assert win.UTC_MIN < T0 < win.UTC_MAX
    assert timedelta(0) == win.ZERO_TD


def test_event_clock_watermark_is_max_minus_wait_plus_system_time() -> None:
    now = TimeTestingGetter(at(1000))
    logic = event_clock(5, now).build(None)
    logic.before_batch()
    assert logic.on_item(at(10)) == (at(10), at(5))
    assert logic.on_item(at(3)) == (at(3), at(5))  # before the watermark: late
    assert logic.on_item(at(8)) == (at(8), at(5))  # on time, does not advance
    now.advance(timedelta(seconds=2))
    assert logic.on_notify() == at(7)
    logic.before_batch()
    assert logic.on_item(at(20)) == (at(20), at(15))
    assert logic.on_eof() == win.UTC_MAX
    assert logic.to_system_utc(at(3)) == at(3)


def test_event_clock_watermark_never_goes_back_with_system_time() -> None:
    now = TimeTestingGetter(at(1000))
    logic = event_clock(0, now).build(None)
    logic.before_batch()
    logic.on_item(at(10))
    now.now = at(900)  # the system clock stepped back
    assert logic.on_notify() == at(10)


def test_event_clock_snapshot_round_trip() -> None:
    now = TimeTestingGetter(at(1000))
    clock = event_clock(5, now)
    logic = clock.build(None)
    logic.before_batch()
    logic.on_item(at(30))
    state = pickle.loads(pickle.dumps(logic.snapshot()))
    logic.on_eof()  # must not affect the snapshot
    now.advance(timedelta(seconds=4))
    resumed = clock.build(state)
    assert resumed.on_notify() == at(29)


@pytest.mark.parametrize("wait", [0, 3, -2])
def test_batched_stamping_matches_per_item(wait: float) -> None:
    rng = random.Random(wait)
    stamps = [at(rng.randrange(0, 60)) for _ in range(300)]
    now = TimeTestingGetter(at(500))
    clock = event_clock(wait, now)
    per_item, batched = clock.build(None), clock.build(None)
    for chunk_start in range(0, len(stamps), 50):
        chunk = stamps[chunk_start : chunk_start + 50]
        now.advance(timedelta(milliseconds=300))
        per_item.before_batch()
        expected_late: list[datetime] = []
        expected_on_time: list[datetime] = []
        watermark = None
        for ts in chunk:
            ts_out, watermark = per_item.on_item(ts)
            (expected_late if ts_out < watermark else expected_on_time).append(ts)
        stamped = batched._stamp_batch(chunk)  # type: ignore[attr-defined]
        assert [v for v, _ in stamped.late] == expected_late
        assert stamped.values == expected_on_time == stamped.timestamps
        assert stamped.watermark == watermark
    assert batched.snapshot() == per_item.snapshot()


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.lists(st.integers(0, 80), max_size=30), max_size=6),
    wait=st.sampled_from([0, 3, 40, -2]),
    in_order=st.booleans(),
    step_ms=st.sampled_from([0, 300, 5000]),
)
def test_batched_stamping_matches_per_item_on_any_batches(
    chunks: list[list[int]], wait: float, in_order: bool, step_ms: int
) -> None:
    now = TimeTestingGetter(at(500))
    clock = event_clock(wait, now)
    per_item, batched = clock.build(None), clock.build(None)
    for seconds in chunks:
        chunk = [at(s) for s in (sorted(seconds) if in_order else seconds)]
        now.advance(timedelta(milliseconds=step_ms))
        per_item.before_batch()
        expected = []
        for ts in chunk:
            ts_out, watermark = per_item.on_item(ts)
            expected.append((ts, ts_out < watermark))
        stamped = batched._stamp_batch(chunk)  # type: ignore[attr-defined]
        assert [v for v, _ in stamped.late] == [ts for ts, late in expected if late]
        assert stamped.values == [ts for ts, late in expected if not late] == stamped.timestamps
        assert stamped.watermark == per_item.on_notify()
        assert batched.snapshot() == per_item.snapshot()


def test_naive_timestamps_are_rejected_with_a_clear_error() -> None:
    logic = win.EventClock(lambda v: v, timedelta(0)).build(None)
    with pytest.raises(TypeError, match="naive datetime"):
        logic._stamp_batch([datetime(2024, 1, 1)])  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="naive datetime"):
        logic.on_item(datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="must return datetime"):
        logic._stamp_batch(["noon"])  # type: ignore[attr-defined]


def test_naive_timestamp_in_a_flow_fails_naming_the_step(entry_point: EntryPoint) -> None:
    flow = Dataflow("naive")
    up = op.input("inp", flow, TestingSource([("k", datetime(2024, 1, 1))]))
    clock = win.EventClock(lambda ts: ts, timedelta(0))
    out = win.count_window(
        "count", up, clock, win.TumblingWindower(timedelta(1), T0), lambda kv: kv[0]
    )
    op.output("out", out.down, TestingSink([]))
    with pytest.raises(EngineRuntimeError, match=r"naive\.count") as info:
        entry_point(flow, epoch_interval=timedelta(0))
    assert isinstance(info.value.__cause__, TypeError)


def test_event_clock_validates_its_arguments() -> None:
    with pytest.raises(TypeError, match="wait_for_system_duration"):
        win.EventClock(lambda v: v, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ts_getter"):
        win.EventClock("ts", timedelta(0))  # type: ignore[arg-type]


def test_system_clock_stamps_with_now_and_closes_at_eof(entry_point: EntryPoint) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    windower = win.TumblingWindower(timedelta(days=1), start)
    down: list[Any] = []
    late: list[Any] = []
    meta: list[Any] = []
    flow = Dataflow("sysclock")
    up = op.input("inp", flow, TestingSource([("a", 1), ("b", 2), ("a", 3)]))
    out = win.collect_window("collect", up, win.SystemClock(), windower)
    op.output("down", out.down, TestingSink(down))
    op.output("late", out.late, TestingSink(late))
    op.output("meta", out.meta, TestingSink(meta))
    entry_point(flow, epoch_interval=timedelta(0))
    assert sorted(down) == [("a", (0, [1, 3])), ("b", (0, [2]))]
    assert late == []
    assert sorted((k, i, m.open_time, m.close_time) for k, (i, m) in meta) == [
        ("a", 0, start, start + timedelta(days=1)),
        ("b", 0, start, start + timedelta(days=1)),
    ]


def test_system_clock_logic_basics() -> None:
    logic = win.SystemClock().build(None)
    logic.before_batch()
    ts, watermark = logic.on_item("anything")
    assert ts == watermark and ts.tzinfo is not None
    assert logic.on_notify() >= watermark
    assert logic.on_eof() == win.UTC_MAX
    assert logic.snapshot() is None


def test_to_system_utc_none_still_closes_at_eof(entry_point: EntryPoint) -> None:
    now = TimeTestingGetter(T0)
    clock: win.EventClock[Any] = win.EventClock(
        lambda v: v[0], timedelta(0), now_getter=now.get, to_system_utc=lambda _ts: None
    )
    out_items: list[object] = []
    flow = Dataflow("nowake")
    up = op.input("inp", flow, TestingSource([("k", (at(1), 1)), ("k", (at(2), 2))]))
    out = win.reduce_window(
        "sum",
        up,
        clock,
        win.TumblingWindower(timedelta(seconds=10), T0),
        lambda a, b: (a[0], a[1] + b[1]),
    )
    op.output("out", out.down, TestingSink(out_items))
    entry_point(flow, epoch_interval=timedelta(0))
    assert out_items == [("k", (0, (at(1), 3)))]
