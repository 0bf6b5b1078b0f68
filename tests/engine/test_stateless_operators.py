"""Derived stateless operators (map, filter, key_on, ...)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError, ItemTypeError
from engine.testing import TestingSink, TestingSource


def _run(entry_point, items: list[Any], build, batch_size: int = 3) -> list[Any]:
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(items, batch_size=batch_size))
    op.output("out", build(s), TestingSink(out))
    entry_point(flow)
    return out


def test_map(entry_point) -> None:
    assert _run(entry_point, [1, 2, 3], lambda s: op.map("m", s, lambda x: x * 2)) == [2, 4, 6]


def test_map_value(entry_point) -> None:
    out = _run(entry_point, [("a", 1), ("b", 2)], lambda s: op.map_value("m", s, str))
    assert out == [("a", "1"), ("b", "2")]


def test_map_value_needs_pairs(entry_point) -> None:
    with pytest.raises(TypeError, match=r"step 'f\.m'.*needs \(key, value\) 2-tuples.*5"):
        _run(entry_point, [5], lambda s: op.map_value("m", s, str))


def test_flat_map(entry_point) -> None:
    out = _run(entry_point, ["a b", "", "c"], lambda s: op.flat_map("split", s, str.split))
    assert out == ["a", "b", "c"]


def test_flat_map_value(entry_point) -> None:
    out = _run(entry_point, [("k", [1, 2])], lambda s: op.flat_map_value("fm", s, lambda v: v))
    assert out == [("k", 1), ("k", 2)]


def test_flatten(entry_point) -> None:
    assert _run(entry_point, [[1], [], [2, 3]], lambda s: op.flatten("f", s)) == [1, 2, 3]


def test_flatten_non_iterable_names_step(entry_point) -> None:
    with pytest.raises(TypeError, match=r"step 'f\.fl'.*needs iterable items.*int 7"):
        _run(entry_point, [[1], 7], lambda s: op.flatten("fl", s))


def test_filter(entry_point) -> None:
    assert _run(entry_point, list(range(6)), lambda s: op.filter("f", s, lambda x: x > 3)) == [4, 5]


def test_filter_non_bool_predicate(entry_point) -> None:
    with pytest.raises(ItemTypeError, match=r"predicate in step 'f\.nb' must return a bool.*'x'"):
        _run(entry_point, ["x"], lambda s: op.filter("nb", s, lambda x: x))


def test_filter_value(entry_point) -> None:
    out = _run(entry_point, [("a", 1), ("b", 0)], lambda s: op.filter_value("fv", s, bool))
    assert out == [("a", 1)]


def test_filter_value_non_bool(entry_point) -> None:
    with pytest.raises(TypeError, match="must return a bool"):
        _run(entry_point, [("a", 1)], lambda s: op.filter_value("fv", s, lambda v: v))


def test_filter_map(entry_point) -> None:
    out = _run(
        entry_point,
        [1, 2, 3, 4],
        lambda s: op.filter_map("fm", s, lambda x: x * 10 if x % 2 else None),
    )
    assert out == [10, 30]


def test_filter_map_keeps_falsy_non_none(entry_point) -> None:
    out = _run(entry_point, [0, 1], lambda s: op.filter_map("fm", s, lambda x: x))
    assert out == [0, 1]


def test_filter_map_value(entry_point) -> None:
    out = _run(
        entry_point,
        [("a", 1), ("b", 2)],
        lambda s: op.filter_map_value("fmv", s, lambda v: v if v > 1 else None),
    )
    assert out == [("b", 2)]


def test_key_on_and_key_rm(entry_point) -> None:
    out = _run(entry_point, [{"id": "x"}], lambda s: op.key_on("k", s, lambda d: d["id"]))
    assert out == [("x", {"id": "x"})]
    out = _run(entry_point, [("x", 1), ("y", 2)], lambda s: op.key_rm("rm", s))
    assert out == [1, 2]


def test_key_on_non_str_key_names_step_and_item(entry_point) -> None:
    with pytest.raises(
        ItemTypeError, match=r"key function of step 'f\.k' must return a str.*int 1"
    ):
        _run(entry_point, [{"id": 1}], lambda s: op.key_on("k", s, lambda d: d["id"]))


def test_inspect_prints_step_and_item(entry_point, capfd) -> None:
    flow = Dataflow("f")
    s = op.inspect("look", op.input("inp", flow, TestingSource(["a", 1])))
    op.output("out", s, TestingSink([]))
    entry_point(flow)
    assert capfd.readouterr().out.splitlines() == ["f.look: 'a'", "f.look: 1"]


def test_inspect_custom_inspector_gets_outer_step_id() -> None:
    from engine.testing import run_main

    seen: list[tuple[str, Any]] = []
    flow = Dataflow("f")
    s = op.inspect(
        "look", op.input("inp", flow, TestingSource([1])), lambda sid, x: seen.append((sid, x))
    )
    op.output("out", s, TestingSink([]))
    run_main(flow)
    assert seen == [("f.look", 1)]


def test_raises_fails_on_first_item(entry_point) -> None:
    flow = Dataflow("f")
    op.raises("nothing_expected", op.input("inp", flow, TestingSource([42])))
    with pytest.raises(EngineRuntimeError, match="nothing_expected"):
        entry_point(flow)


def test_raises_passes_on_empty_stream(entry_point) -> None:
    flow = Dataflow("f")
    op.raises("nothing_expected", op.input("inp", flow, TestingSource([])))
    entry_point(flow)


class _Calls:
    """Calls ``fn`` as a callable object and as a bound method."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, x: Any) -> Any:
        return self.fn(x)

    def method(self, x: Any) -> Any:
        return self.fn(x)


def _call(fn: Callable[[Any], Any], x: Any) -> Any:
    return fn(x)


def _kinds(fn: Callable[[Any], Any], builtin: Callable[[Any], Any]) -> list[Callable[[Any], Any]]:
    """``fn`` as each kind of callable the operators apply in different ways (Python
    functions and bound methods in a comprehension, the others through ``map``)."""
    return [
        fn,
        lambda x: fn(x),
        _Calls(fn).method,
        _Calls(fn),
        functools.partial(_call, fn),
        builtin,
    ]


def _negate(x: int) -> int:
    return -x


def _is_odd(x: int) -> bool:
    return x % 2 == 1


def _upper(text: str) -> str:
    return text.upper()


@pytest.mark.parametrize("fn", _kinds(_negate, operator.neg))
def test_map_applies_every_kind_of_callable_like_a_loop(entry_point, fn) -> None:
    items = list(range(-5, 6))
    assert _run(entry_point, items, lambda s: op.map("m", s, fn)) == [fn(x) for x in items]


@pytest.mark.parametrize("fn", _kinds(_negate, operator.neg))
def test_filter_map_applies_every_kind_of_callable_like_a_loop(entry_point, fn) -> None:
    items = list(range(-5, 6))
    out = _run(entry_point, items, lambda s: op.filter_map("fm", s, fn))
    assert out == [fn(x) for x in items]


@pytest.mark.parametrize("fn", _kinds(_is_odd, operator.truth))
def test_filter_applies_every_kind_of_predicate_like_a_loop(entry_point, fn) -> None:
    items = list(range(-5, 6))
    assert _run(entry_point, items, lambda s: op.filter("f", s, fn)) == [x for x in items if fn(x)]


@pytest.mark.parametrize("fn", _kinds(_upper, str.upper))
def test_key_on_applies_every_kind_of_key_function_like_a_loop(entry_point, fn) -> None:
    items = ["a", "Bb", "c"]
    assert _run(entry_point, items, lambda s: op.key_on("k", s, fn)) == [(fn(x), x) for x in items]
