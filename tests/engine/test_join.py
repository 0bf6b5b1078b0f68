"""op.join: every insert/emit mode against what Bytewax 0.21.1 emits for the same input.

The inputs are scripted through one source and split into sides, so the order in which
the join sees values is fixed. Expected rows were worked out by hand and checked against
Bytewax 0.21.1; they are compared per key (order within a key is promised, across keys
it is not).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.errors import ItemTypeError
from engine.operators._join import _JoinLogic
from engine.testing import TestingSink, TestingSource

EntryPoint = Callable[..., None]

#: (side, key, value) in arrival order.
TWO_SIDES = [
    (0, "a", 1),
    (1, "b", 10),
    (0, "a", 2),
    (1, "a", 10),
    (0, "b", 1),
    (1, "a", 11),
    (0, "a", 3),
    (1, "c", 5),
    (1, "a", 12),
    (0, "a", 4),
]
THREE_SIDES = [(0, "a", 1), (2, "a", "z"), (1, "a", 10), (0, "a", 2), (2, "b", "y"), (1, "a", 11)]

A_PRODUCT_RUNNING = [
    *[(1, None)],
    *[(1, None), (2, None)],
    *[(1, 10), (2, 10)],
    *[(1, 10), (1, 11), (2, 10), (2, 11)],
    *[(1, 10), (1, 11), (2, 10), (2, 11), (3, 10), (3, 11)],
    *[(x, y) for x in (1, 2, 3) for y in (10, 11, 12)],
    *[(x, y) for x in (1, 2, 3, 4) for y in (10, 11, 12)],
]

EXPECTED_TWO_SIDES: dict[tuple[str, str], dict[str, list[tuple[Any, ...]]]] = {
    ("first", "complete"): {"a": [(1, 10), (3, 11), (4, 12)], "b": [(1, 10)]},
    ("last", "complete"): {"a": [(2, 10), (3, 11), (4, 12)], "b": [(1, 10)]},
    ("product", "complete"): {"a": [(1, 10), (2, 10), (3, 11), (4, 12)], "b": [(1, 10)]},
    ("first", "final"): {"a": [(1, 10)], "b": [(1, 10)], "c": [(None, 5)]},
    ("last", "final"): {"a": [(4, 12)], "b": [(1, 10)], "c": [(None, 5)]},
    ("product", "final"): {
        "a": [(x, y) for x in (1, 2, 3, 4) for y in (10, 11, 12)],
        "b": [(1, 10)],
        "c": [(None, 5)],
    },
    ("first", "running"): {
        "a": [(1, None), (1, None), (1, 10), (1, 10), (1, 10), (1, 10), (1, 10)],
        "b": [(None, 10), (1, 10)],
        "c": [(None, 5)],
    },
    ("last", "running"): {
        "a": [(1, None), (2, None), (2, 10), (2, 11), (3, 11), (3, 12), (4, 12)],
        "b": [(None, 10), (1, 10)],
        "c": [(None, 5)],
    },
    ("product", "running"): {
        "a": A_PRODUCT_RUNNING,
        "b": [(None, 10), (1, 10)],
        "c": [(None, 5)],
    },
}

EXPECTED_THREE_SIDES: dict[tuple[str, str], dict[str, list[tuple[Any, ...]]]] = {
    ("first", "complete"): {"a": [(1, 10, "z")]},
    ("last", "complete"): {"a": [(1, 10, "z")]},
    ("product", "complete"): {"a": [(1, 10, "z")]},
    ("first", "final"): {"a": [(1, 10, "z")], "b": [(None, None, "y")]},
    ("last", "final"): {"a": [(2, 11, "z")], "b": [(None, None, "y")]},
    ("product", "final"): {
        "a": [(1, 10, "z"), (1, 11, "z"), (2, 10, "z"), (2, 11, "z")],
        "b": [(None, None, "y")],
    },
    ("first", "running"): {
        "a": [(1, None, None), (1, None, "z"), (1, 10, "z"), (1, 10, "z"), (1, 10, "z")],
        "b": [(None, None, "y")],
    },
    ("last", "running"): {
        "a": [(1, None, None), (1, None, "z"), (1, 10, "z"), (2, 10, "z"), (2, 11, "z")],
        "b": [(None, None, "y")],
    },
    ("product", "running"): {
        "a": [
            (1, None, None),
            (1, None, "z"),
            (1, 10, "z"),
            *[(1, 10, "z"), (2, 10, "z")],
            *[(1, 10, "z"), (1, 11, "z"), (2, 10, "z"), (2, 11, "z")],
        ],
        "b": [(None, None, "y")],
    },
}

MODES = [(i, e) for e in ("complete", "final", "running") for i in ("first", "last", "product")]


def _by_key(items: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)
    return grouped


def _run_join(
    entry_point: EntryPoint,
    script: list[tuple[int, str, Any]],
    side_count: int,
    batch_size: int = 1,
    **modes: str,
) -> list[tuple[str, Any]]:
    flow = Dataflow("join_test")
    inp = op.input("inp", flow, TestingSource(script, batch_size=batch_size))
    sides = []
    for side in range(side_count):
        mine = op.filter(f"only_{side}", inp, lambda x, side=side: x[0] == side)
        sides.append(op.map(f"pair_{side}", mine, lambda x: (x[1], x[2])))
    out: list[tuple[str, Any]] = []
    op.output("out", op.join("join", *sides, **modes), TestingSink(out))
    entry_point(flow, epoch_interval=timedelta(0))
    return out


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize(("insert_mode", "emit_mode"), MODES)
def test_two_sides_every_mode(
    entry_point: EntryPoint, insert_mode: str, emit_mode: str, batch_size: int
) -> None:
    out = _run_join(
        entry_point, TWO_SIDES, 2, batch_size, insert_mode=insert_mode, emit_mode=emit_mode
    )
    assert _by_key(out) == EXPECTED_TWO_SIDES[insert_mode, emit_mode]


@pytest.mark.parametrize(("insert_mode", "emit_mode"), MODES)
def test_three_sides_every_mode(entry_point: EntryPoint, insert_mode: str, emit_mode: str) -> None:
    out = _run_join(entry_point, THREE_SIDES, 3, insert_mode=insert_mode, emit_mode=emit_mode)
    assert _by_key(out) == EXPECTED_THREE_SIDES[insert_mode, emit_mode]


def test_defaults_are_last_and_complete(entry_point: EntryPoint) -> None:
    out = _run_join(entry_point, TWO_SIDES, 2)
    assert _by_key(out) == EXPECTED_TWO_SIDES["last", "complete"]


def test_join_of_two_inputs(entry_point: EntryPoint) -> None:
    flow = Dataflow("join_inputs")
    names = op.input("names", flow, TestingSource([("u1", "Ann"), ("u2", "Bob"), ("u3", "Cy")]))
    emails = op.input("emails", flow, TestingSource([("u2", "bob@x"), ("u1", "ann@x")]))
    out: list[tuple[str, Any]] = []
    op.output("out", op.join("join", names, emails), TestingSink(out))
    entry_point(flow, epoch_interval=timedelta(0))
    assert sorted(out) == [("u1", ("Ann", "ann@x")), ("u2", ("Bob", "bob@x"))]


def test_one_side_final(entry_point: EntryPoint) -> None:
    out = _run_join(entry_point, [(0, "a", 1), (0, "a", 2)], 1, emit_mode="final")
    assert out == [("a", (2,))]


@pytest.mark.parametrize(("insert_mode", "emit_mode"), MODES)
def test_empty_input_emits_nothing(
    entry_point: EntryPoint, insert_mode: str, emit_mode: str
) -> None:
    assert _run_join(entry_point, [], 2, insert_mode=insert_mode, emit_mode=emit_mode) == []


def test_complete_mode_drops_incomplete_rows_at_eof(entry_point: EntryPoint) -> None:
    out = _run_join(entry_point, [(0, "a", 1), (1, "b", 2)], 2, emit_mode="complete")
    assert out == []


@pytest.mark.parametrize(
    ("modes", "match"),
    [
        ({"insert_mode": "all"}, "insert_mode 'all'"),
        ({"emit_mode": "eventually"}, "emit_mode 'eventually'"),
    ],
)
def test_unknown_mode_is_a_value_error(modes: dict[str, str], match: str) -> None:
    flow = Dataflow("join_bad_mode")
    side = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(ValueError, match=match):
        op.join("join", side, side, **modes)


def test_no_sides_is_a_type_error() -> None:
    flow = Dataflow("join_no_sides")
    with pytest.raises(TypeError, match=r"join_no_sides\.join"):
        op.join("join", flow)


@pytest.mark.parametrize("bad_item", [7, ("a", 1, 2), "ab"])
def test_non_pair_items_name_the_step(entry_point: EntryPoint, bad_item: Any) -> None:
    flow = Dataflow("join_bad_items")
    left = op.input("left", flow, TestingSource([("a", 1), bad_item]))
    right = op.input("right", flow, TestingSource([("a", 2)]))
    op.output("out", op.join("join", left, right), TestingSink([]))
    with pytest.raises(TypeError, match=r"join_bad_items\.join") as info:
        entry_point(flow, epoch_interval=timedelta(0))
    assert isinstance(info.value, ItemTypeError)


def test_non_str_key_names_the_step(entry_point: EntryPoint) -> None:
    flow = Dataflow("join_bad_key")
    left = op.input("left", flow, TestingSource([(1, "x")]))
    op.output("out", op.join("join", left, left), TestingSink([]))
    with pytest.raises(TypeError, match=r"join_bad_key\.join.*str key"):
        entry_point(flow, epoch_interval=timedelta(0))


def _new_logic(insert_mode: Any, emit_mode: Any, sides: int = 2) -> _JoinLogic:
    return _JoinLogic(insert_mode, emit_mode, [[] for _ in range(sides)])


def test_complete_restarts_within_one_batch_and_keeps_the_rest() -> None:
    logic = _new_logic("last", "complete")
    emits, discard = logic.on_batch([(0, 1), (1, 10), (0, 2)])
    assert (list(emits), discard) == ([(1, 10)], False)
    assert logic.snapshot() == ((2,), ())
    emits, discard = logic.on_batch([(1, 20)])
    assert (list(emits), discard) == ([(2, 20)], True)


def test_state_survives_a_snapshot_round_trip() -> None:
    flow = Dataflow("join_resume")
    side = op.input("inp", flow, TestingSource([]))
    op.output(
        "out",
        op.join("join", side, side, insert_mode="product", emit_mode="final"),
        TestingSink([]),
    )
    (step,) = [s for s in flow.core_steps if s.kind == "stateful_batch"]
    builder = step.config["builder"]
    logic = builder(None)
    logic.on_batch([(0, "x"), (1, "y"), (0, "z")])
    resumed = builder(pickle.loads(pickle.dumps(logic.snapshot())))
    resumed.on_batch([(1, "w")])
    emits, discard = resumed.on_eof()
    assert list(emits) == [("x", "y"), ("x", "w"), ("z", "y"), ("z", "w")]
    assert discard is True


@pytest.mark.parametrize("emit_mode", ["complete", "running"])
def test_eof_keeps_state_and_emits_nothing_unless_final(emit_mode: Any) -> None:
    logic = _new_logic("first", emit_mode)
    logic.on_batch([(0, 1)])
    assert logic.on_eof() == ((), False)
