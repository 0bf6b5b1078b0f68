"""op.collect: lists by size, by timeout since their latest value, and at EOF.

Timeouts are tested on the logic with a fake clock; one end-to-end test uses a short
TestingSource.PAUSE to let a real timeout pass.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.errors import ItemTypeError
from engine.operators._collect import _CollectLogic
from engine.testing import TestingSink, TestingSource, TimeTestingGetter

EntryPoint = Callable[..., None]

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _run_collect(
    entry_point: EntryPoint,
    items: list[Any],
    timeout: timedelta = timedelta(hours=1),
    max_size: int = 3,
    batch_size: int = 1,
) -> list[tuple[str, list[Any]]]:
    flow = Dataflow("collect_test")
    inp = op.input("inp", flow, TestingSource(items, batch_size=batch_size))
    out: list[tuple[str, list[Any]]] = []
    op.output("out", op.collect("collect", inp, timeout, max_size), TestingSink(out))
    entry_point(flow, epoch_interval=timedelta(0))
    return out


def _logic(clock: TimeTestingGetter, timeout: timedelta = MINUTE, max_size: int = 3) -> Any:
    return _CollectLogic(timeout, max_size, clock.get)


# -- end to end --------------------------------------------------------------------------


def test_emits_full_lists_then_the_rest_at_eof(entry_point: EntryPoint) -> None:
    items = [("a", i) for i in range(7)] + [("b", 10), ("b", 11)]
    out = _run_collect(entry_point, items, max_size=3)
    assert sorted(out) == [("a", [0, 1, 2]), ("a", [3, 4, 5]), ("a", [6]), ("b", [10, 11])]


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_batches_are_split_into_lists_of_max_size(entry_point: EntryPoint, batch_size: int) -> None:
    items = [("k", i) for i in range(10)]
    out = _run_collect(entry_point, items, max_size=4, batch_size=batch_size)
    assert out == [("k", [0, 1, 2, 3]), ("k", [4, 5, 6, 7]), ("k", [8, 9])]


def test_max_size_one_emits_every_value_alone(entry_point: EntryPoint) -> None:
    out = _run_collect(entry_point, [("a", 1), ("a", 2)], max_size=1)
    assert out == [("a", [1]), ("a", [2])]


def test_empty_input_emits_nothing(entry_point: EntryPoint) -> None:
    assert _run_collect(entry_point, []) == []


def test_timeout_emits_before_later_values_arrive(entry_point: EntryPoint) -> None:
    items = [("a", 1), ("a", 2), TestingSource.PAUSE(timedelta(seconds=1)), ("a", 3)]
    # 1 and 2 come in one batch, so a slow machine cannot split them across the timeout;
    # the pause is 20 timeouts long, so a busy machine still wakes the timer within it.
    out = _run_collect(
        entry_point, items, timeout=timedelta(seconds=0.05), max_size=10, batch_size=2
    )
    assert out == [("a", [1, 2]), ("a", [3])]


@pytest.mark.parametrize("bad_item", [5, ("a", 1, 2), (1, "x")])
def test_non_pair_items_name_the_step(entry_point: EntryPoint, bad_item: Any) -> None:
    with pytest.raises(TypeError, match=r"collect_test\.collect") as info:
        _run_collect(entry_point, [("a", 1), bad_item])
    assert isinstance(info.value, ItemTypeError)


@pytest.mark.parametrize(
    ("timeout", "max_size", "error", "match"),
    [
        (MINUTE, 0, ValueError, "max_size must be a positive int"),
        (MINUTE, 2.5, ValueError, "max_size must be a positive int"),
        (MINUTE, True, ValueError, "max_size must be a positive int"),
        (-MINUTE, 2, ValueError, "timeout must not be negative"),
        (60, 2, TypeError, "timeout must be a timedelta"),
    ],
)
def test_bad_arguments(timeout: Any, max_size: Any, error: type[Exception], match: str) -> None:
    flow = Dataflow("collect_args")
    inp = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(error, match=match):
        op.collect("collect", inp, timeout, max_size)


# -- the logic, with a fake clock --------------------------------------------------------


def test_deadline_restarts_at_every_value() -> None:
    # Bytewax 0.21's rule: each value pushes the deadline to ``timeout`` after it.
    clock = TimeTestingGetter(T0)
    logic = _logic(clock)
    assert logic.on_batch([1]) == ([], False)
    assert logic.notify_at() == T0 + MINUTE
    clock.advance(timedelta(seconds=50))
    assert logic.on_batch([2]) == ([], False)
    assert logic.notify_at() == T0 + timedelta(seconds=50) + MINUTE
    assert logic.on_notify() == (([1, 2],), True)


def test_full_list_is_emitted_and_the_key_dropped() -> None:
    logic = _logic(TimeTestingGetter(T0), max_size=2)
    assert logic.on_batch([1, 2]) == ([[1, 2]], True)


def test_remainder_of_a_batch_starts_a_new_list_with_a_new_deadline() -> None:
    clock = TimeTestingGetter(T0)
    logic = _logic(clock, max_size=2)
    logic.on_batch([1])
    clock.advance(timedelta(seconds=30))
    assert logic.on_batch([2, 3, 4, 5, 6]) == ([[1, 2], [3, 4], [5, 6]], True)
    clock.advance(timedelta(seconds=10))
    assert logic.on_batch([7]) == ([], False)
    assert logic.notify_at() == T0 + timedelta(seconds=40) + MINUTE


def test_overdue_list_takes_newer_values_and_restarts_its_deadline() -> None:
    clock = TimeTestingGetter(T0)
    logic = _logic(clock)
    logic.on_batch([1])
    clock.advance(MINUTE)  # due, but on_notify has not run yet
    assert logic.on_batch([2]) == ([], False)
    assert logic.notify_at() == T0 + 2 * MINUTE
    assert logic.on_eof() == (([1, 2],), True)


def test_huge_timeout_never_notifies() -> None:
    logic = _logic(TimeTestingGetter(T0), timeout=timedelta.max)
    logic.on_batch(["x"])
    assert logic.notify_at() is None
    assert logic.on_eof() == ((["x"],), True)


def test_zero_timeout_is_due_at_once() -> None:
    clock = TimeTestingGetter(T0)
    logic = _logic(clock, timeout=timedelta(0))
    logic.on_batch(["x", "y"])
    assert logic.notify_at() == T0
    assert logic.on_notify() == ((["x", "y"],), True)


def test_snapshot_round_trip_keeps_values_and_deadline() -> None:
    clock = TimeTestingGetter(T0)
    logic = _logic(clock)
    logic.on_batch([1, 2])
    state = pickle.loads(pickle.dumps(logic.snapshot()))
    logic.on_batch([3])  # must not change the snapshot taken before
    assert state == ((1, 2), T0 + MINUTE)
    resumed: _CollectLogic[int] = _CollectLogic(MINUTE, 3, clock.get, state)
    assert resumed.notify_at() == T0 + MINUTE
    assert resumed.on_batch([9]) == ([[1, 2, 9]], True)


def test_builder_resumes_from_a_snapshot() -> None:
    flow = Dataflow("collect_resume")
    inp = op.input("inp", flow, TestingSource([]))
    op.output("out", op.collect("collect", inp, MINUTE, 2), TestingSink([]))
    (step,) = [s for s in flow.core_steps if s.kind == "stateful_batch"]
    far_future = datetime(9999, 1, 1, tzinfo=UTC)
    logic = step.config["builder"](((5,), far_future))
    assert logic.on_batch([6]) == ([[5, 6]], True)
    overdue = step.config["builder"](((5,), T0))  # its deadline passed while it was down
    assert overdue.on_batch([6]) == ([[5, 6]], True)
