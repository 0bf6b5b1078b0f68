"""The eight core operators, run through every entry point."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError, ItemTypeError
from engine.testing import TestingSink, TestingSource

ZERO = timedelta(0)


def test_input_output_passthrough_keeps_order(entry_point) -> None:
    out: list[int] = []
    flow = Dataflow("f")
    op.output(
        "out", op.input("inp", flow, TestingSource(range(100), batch_size=7)), TestingSink(out)
    )
    entry_point(flow)
    assert out == list(range(100))


def test_empty_input_produces_nothing(entry_point) -> None:
    out: list[int] = []
    flow = Dataflow("f")
    op.output("out", op.input("inp", flow, TestingSource([])), TestingSink(out))
    entry_point(flow)
    assert out == []


def test_flat_map_batch_sees_whole_batches(entry_point) -> None:
    seen: list[int] = []
    flow = Dataflow("f")
    nums = op.input("inp", flow, TestingSource(range(10), batch_size=4))

    def sizes(batch: list[int]) -> list[int]:
        return [len(batch)]

    op.output("out", op.flat_map_batch("sizes", nums, sizes), TestingSink(seen))
    entry_point(flow, epoch_interval=ZERO)
    assert seen == [4, 4, 2]


def test_flat_map_batch_accepts_any_iterable(entry_point) -> None:
    out: list[int] = []
    flow = Dataflow("f")
    nums = op.input("inp", flow, TestingSource([1, 2, 3], batch_size=3))
    op.output(
        "out", op.flat_map_batch("gen", nums, lambda b: (x * 10 for x in b)), TestingSink(out)
    )
    entry_point(flow)
    assert out == [10, 20, 30]


def test_flat_map_batch_non_iterable_return_names_step(entry_point) -> None:
    flow = Dataflow("f")
    nums = op.input("inp", flow, TestingSource([1]))
    op.output("out", op.flat_map_batch("bad", nums, lambda b: 5), TestingSink([]))
    with pytest.raises(EngineRuntimeError, match=r"step 'f\.bad'") as info:
        entry_point(flow)
    assert isinstance(info.value.__cause__, TypeError)


def test_branch_splits_by_predicate(entry_point) -> None:
    trues: list[int] = []
    falses: list[int] = []
    flow = Dataflow("f")
    b = op.branch(
        "even", op.input("inp", flow, TestingSource(range(10), batch_size=3)), lambda x: x % 2 == 0
    )
    op.output("t", b.trues, TestingSink(trues))
    op.output("f", b.falses, TestingSink(falses))
    entry_point(flow)
    assert trues == [0, 2, 4, 6, 8]
    assert falses == [1, 3, 5, 7, 9]


def test_branch_predicate_must_return_bool(entry_point) -> None:
    flow = Dataflow("f")
    b = op.branch("truthy", op.input("inp", flow, TestingSource([1, 2])), lambda x: x)
    op.output("t", b.trues, TestingSink([]))
    with pytest.raises(TypeError, match=r"branch 'f\.truthy'.*must return a bool.*item 1") as info:
        entry_point(flow)
    assert isinstance(info.value, ItemTypeError)
    assert info.value.step_id == "f.truthy"


def test_merge_combines_streams(entry_point) -> None:
    out: list[Any] = []
    flow = Dataflow("f")
    a = op.input("a", flow, TestingSource(["a1", "a2"]))
    b = op.input("b", flow, TestingSource(["b1"]))
    c = op.input("c", flow, TestingSource([]))
    op.output("out", op.merge("m", a, b, c), TestingSink(out))
    entry_point(flow)
    assert Counter(out) == Counter(["a1", "a2", "b1"])


def test_merge_needs_upstreams() -> None:
    with pytest.raises(TypeError):
        op.merge("m")


def test_redistribute_keeps_every_item(entry_point) -> None:
    out: list[int] = []
    flow = Dataflow("f")
    s = op.redistribute("spread", op.input("inp", flow, TestingSource(range(50), batch_size=5)))
    op.output("out", s, TestingSink(out))
    entry_point(flow)
    assert sorted(out) == list(range(50))


def test_inspect_debug_sees_epoch_and_worker(entry_point) -> None:
    seen: list[tuple[str, Any, int, int]] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(["x", "y"]))
    op.output("out", op.inspect_debug("dbg", s, lambda *a: seen.append(a)), TestingSink([]))
    # inspector runs inside the worker; the run_main worker is this process
    entry_point(flow, epoch_interval=ZERO)
    if seen:  # only observable in-process
        assert seen == [("f.dbg", "x", 1, 0), ("f.dbg", "y", 2, 0)]


def test_fan_out_gives_each_consumer_its_own_batch(entry_point) -> None:
    a: list[int] = []
    b: list[int] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([3, 1, 2], batch_size=3))

    def sort_in_place(batch: list[int]) -> list[int]:
        batch.sort()
        return batch

    op.output("a", op.flat_map_batch("sorts", s, sort_in_place), TestingSink(a))
    op.output("b", s, TestingSink(b))
    entry_point(flow)
    assert a == [1, 2, 3]
    assert b == [3, 1, 2]


def test_user_exception_names_step_worker_epoch(entry_point) -> None:
    def boom(x: int) -> int:
        if x == 3:
            raise ValueError("no threes")
        return x

    flow = Dataflow("f")
    s = op.map("explode", op.input("inp", flow, TestingSource([1, 2, 3, 4])), boom)
    op.output("out", s, TestingSink([]))
    with pytest.raises(EngineRuntimeError) as info:
        entry_point(flow, epoch_interval=ZERO)
    err = info.value
    assert "f.explode" in str(err)
    assert "worker 0" in str(err)
    assert "epoch 3" in str(err)
    assert "ValueError: no threes" in str(err)
    assert isinstance(err.__cause__, ValueError)
    assert err.step_id == "f.explode.flat_map_batch"
    assert err.epoch == 3


def test_sink_exception_surfaces(entry_point) -> None:
    flow = Dataflow("f")
    op.raises("never", op.input("inp", flow, TestingSource(["oops"])))
    with pytest.raises(EngineRuntimeError, match="never") as info:
        entry_point(flow)
    assert "oops" in str(info.value.__cause__)
