"""Keyed stateful operators: stateful_batch semantics and the operators built on it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError, ItemTypeError
from engine.runtime.plan import compile_plan
from engine.runtime.ports import WorkerConfig
from engine.runtime.worker import Worker
from engine.testing import TestingSink, TestingSource

ZERO = timedelta(0)


class Recorder(op.StatefulBatchLogic[int, Any, int]):
    """Records every call into a shared journal (only observable in-process)."""

    journal: list[tuple[str, ...]] = []

    def __init__(self, key_hint: int | None) -> None:
        self.total = key_hint or 0

    def on_batch(self, values: list[int]) -> tuple[list[Any], bool]:
        self.total += sum(values)
        self.journal.append(("batch", *map(str, values)))
        return [self.total], self.DISCARD if self.total < 0 else self.RETAIN

    def on_eof(self) -> tuple[list[Any], bool]:
        self.journal.append(("eof", str(self.total)))
        return [f"final {self.total}"], self.RETAIN

    def snapshot(self) -> int:
        self.journal.append(("snapshot", str(self.total)))
        return self.total


def _keyed_flow(items: list[Any], builder, batch_size: int = 1) -> tuple[Dataflow, list[Any]]:
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(items, batch_size=batch_size))
    op.output("out", op.stateful_batch("sb", s, builder), TestingSink(out))
    return flow, out


def test_stateful_batch_groups_values_per_key(entry_point) -> None:
    flow, out = _keyed_flow([("a", 1), ("b", 10), ("a", 2)], Recorder, batch_size=3)
    entry_point(flow)
    # One on_batch per key for the whole batch; no order is promised across keys.
    assert sorted(out, key=repr) == sorted(
        [("a", 3), ("b", 10), ("a", "final 3"), ("b", "final 10")], key=repr
    )


def test_stateful_batch_eof_in_sorted_key_order_and_snapshot_at_close() -> None:
    from engine.testing import run_main

    Recorder.journal = []
    flow, out = _keyed_flow([("b", 1), ("a", 2), ("c", -5)], Recorder)
    run_main(flow, epoch_interval=ZERO)
    # c discarded itself (negative total) so it gets no on_eof; a before b.
    assert out == [("b", 1), ("a", 2), ("c", -5), ("a", "final 2"), ("b", "final 1")]
    eofs = [e for e in Recorder.journal if e[0] == "eof"]
    assert eofs == [("eof", "2"), ("eof", "1")]
    # Every epoch snapshots the keys it touched: one snapshot per batch here, plus the
    # final snapshot of the keys touched by on_eof.
    snapshots = [e for e in Recorder.journal if e[0] == "snapshot"]
    assert snapshots == [("snapshot", "1"), ("snapshot", "2"), ("snapshot", "2"), ("snapshot", "1")]


def test_discarded_key_starts_fresh(entry_point) -> None:
    flow, out = _keyed_flow([("a", -1), ("a", 5)], Recorder)
    entry_point(flow, epoch_interval=ZERO)
    assert out[:2] == [("a", -1), ("a", 5)]


def test_keyed_step_rejects_non_pairs(entry_point) -> None:
    flow, _ = _keyed_flow([("a", 1), "oops"], Recorder, batch_size=2)
    with pytest.raises(TypeError, match=r"step 'f\.sb' is keyed.*str 'oops'") as info:
        entry_point(flow)
    assert isinstance(info.value, ItemTypeError)


def test_keyed_step_rejects_non_str_keys(entry_point) -> None:
    flow, _ = _keyed_flow([(1, "x")], Recorder)
    with pytest.raises(TypeError, match=r"step 'f\.sb' is keyed and needs str keys.*\(1, 'x'\)"):
        entry_point(flow)


def test_keyed_step_rejects_three_tuples(entry_point) -> None:
    flow, _ = _keyed_flow([("a", 1, 2)], Recorder)
    with pytest.raises(TypeError, match=r"2-tuples.*\('a', 1, 2\)"):
        entry_point(flow)


class NotifyOnce(op.StatefulBatchLogic[int, str, bool]):
    def __init__(self, notified: bool | None) -> None:
        self.notified = bool(notified)

    def on_batch(self, values: list[int]) -> tuple[list[str], bool]:
        return [], self.RETAIN

    def on_notify(self) -> tuple[list[str], bool]:
        self.notified = True
        return ["notified"], self.RETAIN

    def notify_at(self) -> datetime | None:
        # In the past: due on the next round, exactly once.
        return None if self.notified else datetime(2000, 1, 1, tzinfo=UTC)

    def snapshot(self) -> bool:
        return self.notified


def test_notify_at_in_the_past_fires_once(entry_point) -> None:
    flow, out = _keyed_flow([("a", 1), ("a", 2), ("b", 3)], NotifyOnce)
    entry_point(flow, epoch_interval=ZERO)
    assert sorted(out) == [("a", "notified"), ("b", "notified")]


class Alarm(op.StatefulBatchLogic[float, str, float]):
    """Fires ``on_notify`` at the wall time given by the last value."""

    def __init__(self, at: float | None) -> None:
        self.at = at

    def on_batch(self, values: list[float]) -> tuple[list[str], bool]:
        self.at = values[-1]
        return [], self.RETAIN

    def on_notify(self) -> tuple[list[str], bool]:
        return [f"ring {self.at}"], self.DISCARD

    def notify_at(self) -> datetime | None:
        return datetime.fromtimestamp(self.at, UTC) if self.at is not None else None

    def snapshot(self) -> float | None:
        return self.at


def test_notify_timers_with_an_injected_clock() -> None:
    """Script the worker round by round with a fake wall clock; no sleeping."""
    now = [1000.0]
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input(
        "inp",
        flow,
        TestingSource(
            [("a", 1005.0), ("b", 1002.0), TestingSource.PAUSE(timedelta(days=1))], batch_size=2
        ),
    )
    op.output("out", op.stateful_batch("alarm", s, Alarm), TestingSink(out))
    sleeps: list[float] = []
    worker = Worker(
        compile_plan(flow),
        WorkerConfig(epoch_interval_s=0.0, wall_now=lambda: now[0]),
        sleep=sleeps.append,
    )
    worker.open()
    try:
        worker.step()  # reads both items
        assert out == []
        now[0] = 1002.0
        worker.step()
        assert out == [("b", "ring 1002.0")]
        now[0] = 1004.9
        worker.step()
        assert out == [("b", "ring 1002.0")]
        now[0] = 1005.0
        worker.step()
        assert out == [("b", "ring 1002.0"), ("a", "ring 1005.0")]
    finally:
        worker.close()
    # When idle, the worker sleeps until the next timer instead of spinning.
    assert sleeps and all(0 < s <= 0.05 for s in sleeps)


def test_stateful_map_running_state(entry_point) -> None:
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("a", 1), ("b", 1), ("a", 1)], batch_size=2))

    def count(state: int | None, _v: int) -> tuple[int, int]:
        state = (state or 0) + 1
        return state, state

    op.output("out", op.stateful_map("c", s, count), TestingSink(out))
    entry_point(flow)
    assert sorted(out) == [("a", 1), ("a", 2), ("b", 1)]


def test_stateful_map_none_state_discards(entry_point) -> None:
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("a", "x"), ("a", "reset"), ("a", "y")]))

    def remember(state: list[str] | None, v: str) -> tuple[list[str] | None, list[str]]:
        if v == "reset":
            return None, []
        state = [*(state or []), v]
        return state, state

    op.output("out", op.stateful_map("m", s, remember), TestingSink(out))
    entry_point(flow, epoch_interval=ZERO)
    assert out == [("a", ["x"]), ("a", []), ("a", ["y"])]


def test_stateful_map_must_return_2_tuple(entry_point) -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    op.output("out", op.stateful_map("bad", s, lambda st, v: v), TestingSink([]))
    with pytest.raises(TypeError, match=r"stateful_map step 'f\.bad' must return a 2-tuple.*int 1"):
        entry_point(flow)


def test_stateful_map_user_error_names_step_and_key(entry_point) -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("k1", 1)]))
    op.output("out", op.stateful_map("div", s, lambda st, v: (v, v / 0)), TestingSink([]))
    with pytest.raises(EngineRuntimeError, match=r"f\.div.*key 'k1'.*ZeroDivisionError") as info:
        entry_point(flow)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_stateful_flat_map(entry_point) -> None:
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("a", 2), ("a", 3)]))
    op.output("out", op.stateful_flat_map("rep", s, lambda st, v: (v, [v] * v)), TestingSink(out))
    entry_point(flow)
    assert out == [("a", 2), ("a", 2), ("a", 3), ("a", 3), ("a", 3)]


class Dedupe(op.StatefulLogic[str, str, frozenset[str]]):
    def __init__(self, seen: frozenset[str] | None) -> None:
        self.seen = seen or frozenset()

    def on_item(self, value: str) -> tuple[list[str], bool]:
        if value in self.seen:
            return [], self.RETAIN
        self.seen |= {value}
        return [value], self.RETAIN

    def on_eof(self) -> tuple[list[str], bool]:
        return [f"{len(self.seen)} distinct"], self.DISCARD

    def snapshot(self) -> frozenset[str]:
        return self.seen


def test_stateful_with_per_item_logic(entry_point) -> None:
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("k", "x"), ("k", "x"), ("k", "y")], batch_size=3))
    op.output("out", op.stateful("d", s, Dedupe), TestingSink(out))
    entry_point(flow)
    assert out == [("k", "x"), ("k", "y"), ("k", "2 distinct")]


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_count_final(entry_point, batch_size: int) -> None:
    words = ["a", "b", "a", "c", "a", "b"] * 5
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(words, batch_size=batch_size))
    op.output("out", op.count_final("count", s, lambda w: w), TestingSink(out))
    entry_point(flow)
    assert sorted(out) == sorted(Counter(words).items())


def test_count_final_emits_nothing_before_eof(entry_point) -> None:
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(["a", "a", TestingSource.EOF(), "a"]))
    op.output("out", op.count_final("count", s, lambda w: w), TestingSink(out))
    entry_point(flow)
    assert out == [("a", 2)]


def test_count_final_non_str_key(entry_point) -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([1]))
    op.output("out", op.count_final("count", s, lambda w: w), TestingSink([]))
    with pytest.raises(TypeError, match=r"step 'f\.count' must return a str"):
        entry_point(flow)


def test_fold_final(entry_point) -> None:
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("a", 1), ("b", 2), ("a", 3)], batch_size=2))
    op.output("out", op.fold_final("f", s, list, lambda acc, v: [*acc, v]), TestingSink(out))
    entry_point(flow)
    assert sorted(out) == [("a", [1, 3]), ("b", [2])]


def test_reduce_max_min_final(entry_point) -> None:
    items = [("a", 3), ("b", -1), ("a", 7), ("a", 5), ("b", -4)]
    results: dict[str, list[Any]] = {"sum": [], "max": [], "min": [], "maxby": []}
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(items, batch_size=2))
    for name, stream in {
        "sum": op.reduce_final("sum", s, lambda a, b: a + b),
        "max": op.max_final("max", s),
        "min": op.min_final("min", s),
        "maxby": op.max_final("maxby", s, by=abs),
    }.items():
        op.output(f"out_{name}", stream, TestingSink(results[name]))
    entry_point(flow)
    assert sorted(results["sum"]) == [("a", 15), ("b", -5)]
    assert sorted(results["max"]) == [("a", 7), ("b", -1)]
    assert sorted(results["min"]) == [("a", 3), ("b", -4)]
    assert sorted(results["maxby"]) == [("a", 7), ("b", -4)]


def test_empty_input_to_stateful_ops(entry_point) -> None:
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([]))
    op.output("out", op.count_final("count", s, str), TestingSink(out))
    entry_point(flow)
    assert out == []
