"""Windowing operators: fold/collect/count/reduce/max/min/join_window, ``window`` itself,
ordered vs unordered, EOF, errors, and snapshot/resume of the per-key logic.

Expected outputs were checked against Bytewax 0.21.1 on the same input (encoded by hand);
the documented deviations (join merges in session windows) are marked.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import engine.operators as op
import engine.operators.windowing as win
from engine.dataflow import Dataflow, Stream
from engine.errors import EngineRuntimeError
from engine.operators._windowing_core import window_step_builder
from engine.testing import TestingSink, TestingSource, TimeTestingGetter

EntryPoint = Callable[..., None]

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SEC = timedelta(seconds=1)
TUMBLING = win.TumblingWindower(10 * SEC, T0)


def at(seconds: float) -> datetime:
    return T0 + seconds * SEC


def clock(wait: float = 0) -> win.EventClock[Any]:
    return win.EventClock(lambda v: v[0], wait * SEC, now_getter=TimeTestingGetter(T0).get)


def collect(stream: Stream[Any]) -> list[Any]:
    items: list[Any] = []
    op.output(stream.stream_id.replace(".", "_"), stream, TestingSink(items))
    return items


#: (key, (timestamp, value)) arriving in this order; "a"@5s is late.
DATA = [
    ("a", (at(1), 3)),
    ("a", (at(2), 9)),
    ("b", (at(3), 4)),
    ("a", (at(4), 9)),
    ("a", (at(11), 1)),
    ("b", (at(12), 2)),
    ("a", (at(5), 7)),
]


def run_op(
    entry_point: EntryPoint, build: Callable[[Stream[Any]], win.WindowOut[Any, Any]]
) -> tuple[list[Any], list[Any]]:
    flow = Dataflow("ops")
    out = build(op.input("inp", flow, TestingSource(DATA)))
    down, late = collect(out.down), collect(out.late)
    entry_point(flow, epoch_interval=timedelta(0))
    return sorted(down), sorted(late)


def value_only(items: Iterable[Any]) -> list[Any]:
    return sorted((k, (i, v[1])) for k, (i, v) in items)


LATE_A = [("a", (0, (at(5), 7)))]


def test_count_window(entry_point: EntryPoint) -> None:
    down, late = run_op(
        entry_point,
        lambda up: win.count_window(
            "count",
            up,
            win.EventClock(lambda kv: kv[1][0], timedelta(0), now_getter=TimeTestingGetter(T0).get),
            TUMBLING,
            lambda kv: kv[0],
        ),
    )
    assert down == [("a", (0, 3)), ("a", (1, 1)), ("b", (0, 1)), ("b", (1, 1))]
    assert late == [("a", (0, ("a", (at(5), 7))))]


def test_reduce_window_folds_in_arrival_order(entry_point: EntryPoint) -> None:
    down, late = run_op(
        entry_point,
        lambda up: win.reduce_window(
            "digits", up, clock(), TUMBLING, lambda a, b: (a[0], a[1] * 10 + b[1])
        ),
    )
    assert value_only(down) == [("a", (0, 399)), ("a", (1, 1)), ("b", (0, 4)), ("b", (1, 2))]
    assert late == LATE_A


def test_max_window_first_of_equal_wins(entry_point: EntryPoint) -> None:
    down, _ = run_op(
        entry_point, lambda up: win.max_window("max", up, clock(), TUMBLING, by=lambda v: v[1])
    )
    assert down == [
        ("a", (0, (at(2), 9))),
        ("a", (1, (at(11), 1))),
        ("b", (0, (at(3), 4))),
        ("b", (1, (at(12), 2))),
    ]


def test_min_window(entry_point: EntryPoint) -> None:
    down, _ = run_op(
        entry_point, lambda up: win.min_window("min", up, clock(), TUMBLING, by=lambda v: v[1])
    )
    assert value_only(down) == [("a", (0, 3)), ("a", (1, 1)), ("b", (0, 4)), ("b", (1, 2))]


@pytest.mark.parametrize(
    ("into", "expected"),
    [
        (list, [(at(1), 3), (at(2), 9), (at(4), 9)]),
        (set, {(at(1), 3), (at(2), 9), (at(4), 9)}),
        (dict, {at(1): 3, at(2): 9, at(4): 9}),  # values are (dict key, dict value) pairs
    ],
)
def test_collect_window_into(entry_point: EntryPoint, into: type, expected: Any) -> None:
    data = [("a", (at(4), 9)), ("a", (at(1), 3)), ("a", (at(2), 9))]
    flow = Dataflow("collect")
    up = op.input("inp", flow, TestingSource(data))
    out = win.collect_window("coll", up, clock(wait=5), TUMBLING, into=into)
    down = collect(out.down)
    entry_point(flow, epoch_interval=timedelta(0))
    assert down == [("a", (0, expected))]
    assert type(down[0][1][1]) is into


def test_collect_window_rejects_other_containers_and_bad_pairs(entry_point: EntryPoint) -> None:
    flow = Dataflow("bad_collect")
    up = op.input("inp", flow, TestingSource([("a", (at(1), 3))]))
    with pytest.raises(TypeError, match="list, set or dict"):
        win.collect_window("coll", up, clock(), TUMBLING, into=tuple)
    out = win.collect_window(
        "coll2",
        op.map_value("ts", up, lambda v: v[0]),
        win.EventClock(lambda ts: ts, timedelta(0)),
        TUMBLING,
        into=dict,
    )
    collect(out.down)
    with pytest.raises(TypeError, match=r"bad_collect\.coll2.*2-tuples"):
        entry_point(flow, epoch_interval=timedelta(0))


def test_fold_window_ordered_vs_unordered(entry_point: EntryPoint) -> None:
    data = [("a", (at(s), v)) for s, v in [(1, 1), (12, 2), (3, 3), (25, 5), (21, 6), (15, 7)]]
    results = {}
    for ordered in (True, False):
        flow = Dataflow("order")
        up = op.input("inp", flow, TestingSource(data))
        out = win.fold_window(
            "f",
            up,
            clock(wait=10),
            TUMBLING,
            list,
            lambda acc, v: [*acc, v[1]],
            list.__add__,
            ordered=ordered,
        )
        down, late = collect(out.down), collect(out.late)
        entry_point(flow, epoch_interval=timedelta(0))
        assert late == []
        results[ordered] = sorted(down)
    assert results[True] == [("a", (0, [1, 3])), ("a", (1, [2, 7])), ("a", (2, [6, 5]))]
    assert results[False] == [("a", (0, [1, 3])), ("a", (1, [2, 7])), ("a", (2, [5, 6]))]


def test_eof_closes_open_windows_and_meta_stream(entry_point: EntryPoint) -> None:
    flow = Dataflow("eof")
    up = op.input("inp", flow, TestingSource([("a", (at(1), 1)), ("a", (at(2), 2))]))
    out = win.fold_window(
        "sum", up, clock(wait=3600), TUMBLING, int, lambda acc, v: acc + v[1], int.__add__
    )
    down, meta = collect(out.down), collect(out.meta)
    entry_point(flow, epoch_interval=timedelta(0))
    assert down == [("a", (0, 3))]
    assert meta == [("a", (0, win.WindowMetadata(at(0), at(10), set())))]


def test_empty_input_emits_nothing(entry_point: EntryPoint) -> None:
    flow = Dataflow("empty")
    out = win.count_window(
        "count", op.input("inp", flow, TestingSource([])), clock(), TUMBLING, str
    )
    down, late, meta = collect(out.down), collect(out.late), collect(out.meta)
    entry_point(flow, epoch_interval=timedelta(0))
    assert down == late == meta == []


class Tracker(win.WindowLogic[Any, Any, Any]):
    """Emits on every value and merge; its state is the list of values."""

    def __init__(self, state: list[Any] | None) -> None:
        self.values = list(state or [])

    def on_value(self, value: Any) -> Iterable[Any]:
        self.values.append(value[1])
        return [("value", value[1])]

    def on_merge(self, original: Any) -> Iterable[Any]:
        self.values += original.values
        return [("merged", len(self.values))]

    def on_close(self) -> Iterable[Any]:
        return [("close", sorted(self.values))]

    def snapshot(self) -> list[Any]:
        return list(self.values)


def test_window_with_custom_logic_and_session_merge(entry_point: EntryPoint) -> None:
    data = [("k", (at(s), v)) for s, v in [(0, "a"), (10, "b"), (5, "c")]]
    flow = Dataflow("custom")
    up = op.input("inp", flow, TestingSource(data))
    out = win.window("w", up, clock(wait=100), win.SessionWindower(5 * SEC), Tracker, ordered=False)
    down, meta = collect(out.down), collect(out.meta)
    entry_point(flow, epoch_interval=timedelta(0))
    assert down == [
        ("k", (0, ("value", "a"))),
        ("k", (1, ("value", "b"))),
        ("k", (0, ("value", "c"))),
        ("k", (0, ("merged", 3))),
        ("k", (0, ("close", ["a", "b", "c"]))),
    ]
    assert meta == [("k", (0, win.WindowMetadata(at(0), at(10), {1})))]


JOIN_DATA = [
    (0, "a", 1, "a1"),
    (1, "a", 2, "b1"),
    (0, "a", 3, "a2"),
    (1, "b", 4, "b2"),
    (0, "a", 12, "a3"),
    (1, "a", 13, "b3"),
    (1, "a", 14, "b4"),
    (0, "c", 15, "c1"),
]
JOIN_EXPECTED: dict[tuple[str, str], list[Any]] = {
    ("first", "final"): [
        ("a", 0, ("a1", "b1")),
        ("a", 1, ("a3", "b3")),
        ("b", 0, (None, "b2")),
        ("c", 1, ("c1", None)),
    ],
    ("last", "final"): [
        ("a", 0, ("a2", "b1")),
        ("a", 1, ("a3", "b4")),
        ("b", 0, (None, "b2")),
        ("c", 1, ("c1", None)),
    ],
    ("product", "final"): [
        ("a", 0, ("a1", "b1")),
        ("a", 0, ("a2", "b1")),
        ("a", 1, ("a3", "b3")),
        ("a", 1, ("a3", "b4")),
        ("b", 0, (None, "b2")),
        ("c", 1, ("c1", None)),
    ],
    ("last", "complete"): [("a", 0, ("a1", "b1")), ("a", 1, ("a3", "b3"))],
    ("product", "complete"): [("a", 0, ("a1", "b1")), ("a", 1, ("a3", "b3"))],
    ("last", "running"): [
        ("a", 0, ("a1", "b1")),
        ("a", 0, ("a1", None)),
        ("a", 0, ("a2", "b1")),
        ("a", 1, ("a3", "b3")),
        ("a", 1, ("a3", "b4")),
        ("a", 1, ("a3", None)),
        ("b", 0, (None, "b2")),
        ("c", 1, ("c1", None)),
    ],
    ("first", "running"): [
        ("a", 0, ("a1", "b1")),
        ("a", 0, ("a1", "b1")),
        ("a", 0, ("a1", None)),
        ("a", 1, ("a3", "b3")),
        ("a", 1, ("a3", "b3")),
        ("a", 1, ("a3", None)),
        ("b", 0, (None, "b2")),
        ("c", 1, ("c1", None)),
    ],
}


def join_flow(
    data: list[tuple[int, str, int, str]],
    windower: win.Windower[Any],
    wait: float = 0,
    **kwargs: Any,
) -> tuple[Dataflow, list[Any], list[Any]]:
    flow = Dataflow("join")
    inp = op.input("inp", flow, TestingSource(data))
    sides = op.branch("side", inp, lambda x: x[0] == 0)
    left = op.map("left", sides.trues, lambda x: (x[1], (at(x[2]), x[3])))
    right = op.map("right", sides.falses, lambda x: (x[1], (at(x[2]), x[3])))
    out = win.join_window("jw", clock(wait), windower, left, right, **kwargs)
    return flow, collect(out.down), collect(out.meta)


def join_rows(down: list[Any]) -> list[Any]:
    rows = [(k, i, tuple(None if v is None else v[1] for v in row)) for k, (i, row) in down]
    return sorted(rows, key=repr)


@pytest.mark.parametrize(("insert_mode", "emit_mode"), sorted(JOIN_EXPECTED))
def test_join_window_modes(entry_point: EntryPoint, insert_mode: str, emit_mode: str) -> None:
    flow, down, _ = join_flow(JOIN_DATA, TUMBLING, insert_mode=insert_mode, emit_mode=emit_mode)
    entry_point(flow, epoch_interval=timedelta(0))
    assert join_rows(down) == sorted(JOIN_EXPECTED[insert_mode, emit_mode], key=repr)


@pytest.mark.parametrize(
    ("insert_mode", "expected"),
    [
        # Deviation from Bytewax 0.21.1 (which gives ("x1", "y1") and ("x2", "y0")): after a
        # merge "first" keeps the earlier window's values, "last" the later window's.
        ("first", [("x0", "y0")]),
        ("last", [("x1", "y1")]),
        ("product", [(x, y) for x in ("x0", "x1", "x2") for y in ("y0", "y1")]),
    ],
)
def test_join_window_session_merge(
    entry_point: EntryPoint, insert_mode: str, expected: list[Any]
) -> None:
    data = [
        (0, "a", 0, "x0"),
        (1, "a", 1, "y0"),
        (0, "a", 10, "x1"),
        (1, "a", 11, "y1"),
        (0, "a", 5, "x2"),
    ]
    flow, down, meta = join_flow(
        data, win.SessionWindower(5 * SEC), wait=100, insert_mode=insert_mode, ordered=False
    )
    entry_point(flow, epoch_interval=timedelta(0))
    assert join_rows(down) == sorted((("a", 0, row) for row in expected), key=repr)
    assert [(k, i, m.merged_ids) for k, (i, m) in meta] == [("a", 0, {1})]


def test_join_window_validates_modes() -> None:
    flow = Dataflow("join_bad")
    up = op.input("inp", flow, TestingSource([]))
    with pytest.raises(ValueError, match="insert_mode"):
        win.join_window("j1", clock(), TUMBLING, up, insert_mode="all")
    with pytest.raises(ValueError, match="emit_mode"):
        win.join_window("j2", clock(), TUMBLING, up, emit_mode="now")


def test_window_validates_clock_and_windower() -> None:
    flow = Dataflow("args")
    up = op.input("inp", flow, TestingSource([]))
    with pytest.raises(TypeError, match="clock must be a Clock"):
        win.count_window("c1", up, "event", TUMBLING, str)
    with pytest.raises(TypeError, match="windower must be a Windower"):
        win.count_window("c2", up, clock(), 10 * SEC, str)


def test_user_exception_surfaces_with_step_and_cause(entry_point: EntryPoint) -> None:
    flow = Dataflow("boom")
    up = op.input("inp", flow, TestingSource([("a", (at(1), 0))]))
    out = win.fold_window(
        "divide", up, clock(), TUMBLING, int, lambda acc, v: acc + 1 // v[1], int.__add__
    )
    collect(out.down)
    with pytest.raises(EngineRuntimeError, match=r"boom\.divide") as info:
        entry_point(flow, epoch_interval=timedelta(0))
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_non_pair_items_raise_type_error_naming_the_step(entry_point: EntryPoint) -> None:
    flow = Dataflow("unkeyed")
    up = op.input("inp", flow, TestingSource([(at(1), 1)]))
    out = win.collect_window("coll", up, clock(), TUMBLING)
    collect(out.down)
    with pytest.raises(TypeError, match=r"unkeyed\.coll"):
        entry_point(flow, epoch_interval=timedelta(0))


def test_per_key_state_snapshots_and_resumes() -> None:
    """Snapshot mid-stream, pickle, rebuild through the builder: same result as no stop."""
    now = TimeTestingGetter(T0)
    step = window_step_builder(
        win.EventClock(lambda v: v[0], 5 * SEC, now_getter=now.get),
        win.SessionWindower(3 * SEC),
        Tracker,
        True,
    )
    first = [(at(0), "a"), (at(2), "b"), (at(20), "c"), (at(1), "d")]
    second = [(at(18), "e"), (at(40), "f")]

    def events(logic: Any, batches: list[list[Any]]) -> list[Any]:
        out: list[Any] = []
        for batch in batches:
            emits, _ = logic.on_batch(batch)
            out += emits
        emits, _ = logic.on_eof()
        return out + list(emits)

    straight = events(step(None), [first, second])
    logic = step(None)
    before, _ = logic.on_batch(first)
    assert logic.notify_at() is not None  # sessions are open, items queued
    resumed = step(pickle.loads(pickle.dumps(logic.snapshot())))
    assert list(before) + events(resumed, [second]) == straight
