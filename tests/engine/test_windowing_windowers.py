"""Windowers: window ids (incl. negative and overlapping), session merges, validation.

Flow cases were run through Bytewax 0.21.1 with the same input; its outputs are encoded
here by hand.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import engine.operators as op
import engine.operators.windowing as win
from engine.dataflow import Dataflow
from engine.testing import TestingSink, TestingSource, TimeTestingGetter

EntryPoint = Callable[..., None]

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SEC = timedelta(seconds=1)


def at(seconds: float) -> datetime:
    return T0 + seconds * SEC


def secs(when: datetime) -> float:
    return (when - T0).total_seconds()


def run_collect(
    entry_point: EntryPoint,
    items: list[tuple[str, tuple[datetime, Any]]],
    windower: win.Windower[Any],
    *,
    wait: float = 0,
    ordered: bool = True,
) -> tuple[list[Any], list[Any], list[Any]]:
    """Collect values into lists; return (down, late, meta) as sorted, readable lists."""
    now = TimeTestingGetter(T0)
    clock: win.EventClock[Any] = win.EventClock(lambda v: v[0], wait * SEC, now_getter=now.get)
    down: list[Any] = []
    late: list[Any] = []
    meta: list[Any] = []
    flow = Dataflow("windowers")
    up = op.input("inp", flow, TestingSource(items))
    out = win.fold_window(
        "w",
        up,
        clock,
        windower,
        list,
        lambda acc, v: [*acc, v[1]],
        lambda a, b: a + b,
        ordered=ordered,
    )
    op.output("down", out.down, TestingSink(down))
    op.output("late", out.late, TestingSink(late))
    op.output("meta", out.meta, TestingSink(meta))
    entry_point(flow, epoch_interval=timedelta(0))
    return (
        sorted(down),
        sorted((k, i, secs(v[0]), v[1]) for k, (i, v) in late),
        sorted(
            (k, i, secs(m.open_time), secs(m.close_time), sorted(m.merged_ids))
            for k, (i, m) in meta
        ),
    )


# -- validation ---------------------------------------------------------------------------


def test_sliding_offset_longer_than_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="offset"):
        win.SlidingWindower(10 * SEC, 11 * SEC, T0)


@pytest.mark.parametrize("length", [timedelta(0), -SEC])
def test_non_positive_lengths_are_rejected(length: timedelta) -> None:
    with pytest.raises(ValueError, match="positive"):
        win.TumblingWindower(length, T0)
    with pytest.raises(ValueError, match="positive"):
        win.SlidingWindower(SEC, length, T0)


def test_naive_align_to_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        win.TumblingWindower(SEC, datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        win.SlidingWindower(2 * SEC, SEC, datetime(2024, 1, 1))


def test_wrong_types_are_rejected() -> None:
    with pytest.raises(TypeError, match="timedelta"):
        win.TumblingWindower(10, T0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="datetime"):
        win.TumblingWindower(SEC, "2024-01-01")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timedelta"):
        win.SessionWindower(5)  # type: ignore[arg-type]


def test_negative_session_gap_is_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        win.SessionWindower(-SEC)


# -- sliding / tumbling logic -------------------------------------------------------------


def test_windows_closing_together_come_out_in_close_time_order() -> None:
    # Opened out of order; one watermark closes all three. Item by item, a watermark
    # passing them one at a time would close them in close-time order: so must one pass.
    logic = win.TumblingWindower(SEC, T0).build(None)
    for second in (7, 2, 5):
        logic.open_for(at(second))
    assert [i for i, _ in logic.close_for(at(10))] == [2, 5, 7]


def test_sliding_ids_overlap_and_go_negative_before_align_to() -> None:
    logic = win.SlidingWindower(10 * SEC, 5 * SEC, T0).build(None)
    assert list(logic.open_for(at(-7))) == [-3, -2]
    assert list(logic.open_for(at(6))) == [0, 1]
    assert list(logic.open_for(at(5))) == [0, 1]  # open times are inclusive
    assert list(logic.late_for(at(10))) == [1, 2]  # close times are exclusive
    assert logic.notify_at() == at(-5)
    closed = logic.close_for(at(5))
    assert [(i, secs(m.open_time), secs(m.close_time)) for i, m in closed] == [
        (-3, -15, -5),
        (-2, -10, 0),
    ]
    assert not logic.is_empty()


def test_tumbling_window_metadata_and_snapshot() -> None:
    windower = win.TumblingWindower(10 * SEC, T0)
    logic = windower.build(None)
    assert list(logic.open_for(at(-0.5))) == [-1]
    assert list(logic.open_for(at(25))) == [2]
    restored = windower.build(pickle.loads(pickle.dumps(logic.snapshot())))
    assert [(i, m) for i, m in restored.close_for(win.UTC_MAX)] == [
        (-1, win.WindowMetadata(at(-10), at(0))),
        (2, win.WindowMetadata(at(20), at(30))),
    ]
    assert restored.is_empty() and restored.notify_at() is None
    assert not logic.is_empty()  # the snapshot was a copy


def test_tumbling_flow_matches_bytewax(entry_point: EntryPoint) -> None:
    items = [
        ("a", (at(1), 1)),
        ("a", (at(12), 2)),
        ("a", (at(3), 3)),
        ("b", (at(-5), 4)),
        ("a", (at(25), 5)),
        ("a", (at(21), 6)),
        ("a", (at(15), 7)),
    ]
    down, late, meta = run_collect(entry_point, items, win.TumblingWindower(10 * SEC, T0))
    assert down == [("a", (0, [1])), ("a", (1, [2])), ("a", (2, [5])), ("b", (-1, [4]))]
    assert late == [("a", 0, 3, 3), ("a", 1, 15, 7), ("a", 2, 21, 6)]
    assert meta == [
        ("a", 0, 0, 10, []),
        ("a", 1, 10, 20, []),
        ("a", 2, 20, 30, []),
        ("b", -1, -10, 0, []),
    ]


def test_sliding_flow_matches_bytewax(entry_point: EntryPoint) -> None:
    items = [
        ("a", (at(-7), 1)),
        ("a", (at(1), 2)),
        ("a", (at(6), 3)),
        ("a", (at(14), 4)),
        ("a", (at(2), 5)),
    ]
    down, late, meta = run_collect(entry_point, items, win.SlidingWindower(10 * SEC, 5 * SEC, T0))
    assert down == [
        ("a", (-3, [1])),
        ("a", (-2, [1])),
        ("a", (-1, [2])),
        ("a", (0, [2, 3])),
        ("a", (1, [3, 4])),
        ("a", (2, [4])),
    ]
    assert late == [("a", -1, 2, 5), ("a", 0, 2, 5)]
    assert [(i, o, c) for _, i, o, c, _ in meta] == [
        (-3, -15, -5),
        (-2, -10, 0),
        (-1, -5, 5),
        (0, 0, 10),
        (1, 5, 15),
        (2, 10, 20),
    ]


# -- sessions -----------------------------------------------------------------------------


def test_session_logic_merges_and_reports_merged_ids() -> None:
    windower = win.SessionWindower(5 * SEC)
    logic = windower.build(None)
    assert list(logic.open_for(at(0))) == [0]
    assert list(logic.open_for(at(20))) == [1]
    assert list(logic.open_for(at(12))) == [2]
    assert list(logic.open_for(at(2))) == [0]  # inside session 0's gap
    assert list(logic.merged()) == []
    assert list(logic.open_for(at(16))) == [1]  # extends 1 back to 16, within 5s of 2
    assert list(logic.merged()) == [(1, 2)]
    assert list(logic.merged()) == []  # reported once
    assert list(logic.late_for(at(0))) == [win.LATE_SESSION_ID]
    assert logic.notify_at() == at(7)
    resumed = windower.build(pickle.loads(pickle.dumps(logic.snapshot())))
    closed = dict(resumed.close_for(at(13)))  # sessions ending before 13 - 5 close
    assert closed == {0: win.WindowMetadata(at(0), at(2))}
    assert dict(resumed.close_for(win.UTC_MAX)) == {2: win.WindowMetadata(at(12), at(20), {1})}
    assert not resumed.is_empty()  # session keys are kept (ids are never reused)


def test_session_merged_ids_include_earlier_merges() -> None:
    logic = win.SessionWindower(5 * SEC).build(None)
    for seconds in (0, 20, 30, 25):
        logic.open_for(at(seconds))  # 25 merges session 2 (30) into 1 (20)
    logic.open_for(at(12))  # new session 3 ...
    logic.open_for(at(16))  # ... which 16 bridges with session 1 (20-30)
    assert list(logic.merged()) == [(2, 1), (1, 3)]
    closed = dict(logic.close_for(win.UTC_MAX))
    assert closed[3] == win.WindowMetadata(at(12), at(30), {1, 2})


def test_sessions_closing_together_close_in_time_order() -> None:
    # Created out of time order (as with ordered=False); a watermark closing both
    # closes the earlier one first, as a watermark passing them one at a time would.
    logic = win.SessionWindower(5 * SEC).build(None)
    assert list(logic.open_for(at(30))) == [0]
    assert list(logic.open_for(at(10))) == [1]
    assert [i for i, _ in logic.close_for(at(100))] == [1, 0]


def test_session_flow_ordered_matches_bytewax(entry_point: EntryPoint) -> None:
    items = [
        ("a", (at(s), v)) for s, v in [(0, 1), (3, 2), (20, 3), (12, 4), (16, 5), (40, 6), (1, 7)]
    ]
    down, late, meta = run_collect(entry_point, items, win.SessionWindower(5 * SEC), wait=30)
    assert down == [("a", (0, [1, 2])), ("a", (1, [4, 5, 3])), ("a", (2, [6]))]
    assert late == [("a", win.LATE_SESSION_ID, 1, 7)]
    assert meta == [("a", 0, 0, 3, []), ("a", 1, 12, 20, []), ("a", 2, 40, 40, [])]


def test_session_flow_out_of_order_item_merges_two_sessions(entry_point: EntryPoint) -> None:
    items = [
        ("a", (at(s), v)) for s, v in [(0, 1), (3, 2), (20, 3), (12, 4), (16, 5), (40, 6), (1, 7)]
    ]
    down, late, meta = run_collect(
        entry_point, items, win.SessionWindower(5 * SEC), wait=30, ordered=False
    )
    assert down == [("a", (0, [1, 2])), ("a", (2, [4, 3, 5])), ("a", (3, [6]))]
    assert late == [("a", -1, 1, 7)]
    assert meta == [("a", 0, 0, 3, []), ("a", 2, 12, 20, [1]), ("a", 3, 40, 40, [])]
