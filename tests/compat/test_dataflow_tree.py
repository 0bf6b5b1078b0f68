"""``Dataflow.substeps``, ``Operator`` and the port types, as in ``bytewax.dataflow``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import (
    Dataflow,
    DataflowId,
    MultiPort,
    Operator,
    Port,
    SinglePort,
    Stream,
    operator,
)
from engine.testing import TestingSink, TestingSource
from tests.compat.conftest import EntryPoint


def _flow(out: list[int]) -> Dataflow:
    flow = Dataflow("tree")
    nums = op.input("inp", flow, TestingSource([1, 2, 3, 4]))
    halves = op.branch("even", nums, lambda x: x % 2 == 0)
    both = op.merge("both", halves.trues, op.map("neg", halves.falses, lambda x: -x))
    op.output("out", both, TestingSink(out))
    return flow


def _at(step: Operator, name: str) -> Any:
    """A field of an operator's record (the fields depend on the operator)."""
    return getattr(step, name)


def _fields(step: Operator) -> list[str]:
    return [f.name for f in dataclasses.fields(step)]


def test_substeps_lists_the_top_level_operators_in_order() -> None:
    flow = _flow([])
    assert [(s.step_id, s.step_name, type(s).__name__) for s in flow.substeps] == [
        ("tree.inp", "inp", "input"),
        ("tree.even", "even", "branch"),
        ("tree.neg", "neg", "map"),
        ("tree.both", "both", "merge"),
        ("tree.out", "out", "output"),
    ]
    assert all(isinstance(s, Operator) for s in flow.substeps)


def test_operators_record_arguments_and_ports() -> None:
    inp, even, neg, both, out = _flow([]).substeps
    assert _at(inp, "flow") == DataflowId("tree")
    assert isinstance(_at(inp, "source"), TestingSource)
    assert _at(inp, "down") == SinglePort("tree.inp.down", "tree.inp.down")
    assert (even.ups_names, even.dwn_names) == (["up"], ["trues", "falses"])
    assert _at(even, "trues") == SinglePort("tree.even.trues", "tree.even.trues")
    assert _at(both, "ups") == MultiPort(
        "tree.both.ups", {0: "tree.even.trues", 1: "tree.neg.flat_map_batch.down"}
    )
    assert (out.ups_names, out.dwn_names) == (["up"], [])
    for port in (_at(inp, "down"), _at(both, "ups"), _at(neg, "up")):
        assert isinstance(port, Port)
    assert SinglePort("p", "s").stream_ids == {"stream": "s"}


def test_core_operators_have_no_operators_inside() -> None:
    inp, even, neg, both, out = _flow([]).substeps
    assert [s.core for s in (inp, even, neg, both, out)] == [True, True, False, True, True]
    assert inp.substeps == even.substeps == both.substeps == []
    (inner,) = neg.substeps
    assert (type(inner).__name__, inner.step_id) == ("flat_map_batch", "tree.neg.flat_map_batch")
    assert _at(inner, "up") == SinglePort("tree.neg.flat_map_batch.up", "tree.even.falses")


def test_same_fields_as_bytewax() -> None:
    bop = pytest.importorskip("bytewax.operators")
    btesting = pytest.importorskip("bytewax.testing")
    bdataflow = pytest.importorskip("bytewax.dataflow")
    theirs = bdataflow.Dataflow("tree")
    nums = bop.input("inp", theirs, btesting.TestingSource([1]))
    halves = bop.branch("even", nums, lambda x: x % 2 == 0)
    both = bop.merge("both", halves.trues, bop.map("neg", halves.falses, lambda x: -x))
    bop.output("out", both, btesting.TestingSink([]))
    ours = _flow([])
    for mine, bytewax_step in zip(ours.substeps, theirs.substeps, strict=True):
        assert type(mine).__name__ == type(bytewax_step).__name__
        assert _fields(mine) == _fields(bytewax_step)
        assert (mine.ups_names, mine.dwn_names) == (bytewax_step.ups_names, bytewax_step.dwn_names)
    # The ports agree too where both decompose alike (all but the map's output stream).
    assert _at(ours.substeps[3], "ups").port_id == theirs.substeps[3].ups.port_id
    assert _at(ours.substeps[1], "trues") == SinglePort(
        **dataclasses.asdict(theirs.substeps[1].trues)
    )
    for cls in (SinglePort, MultiPort, DataflowId, Operator):
        assert [f.name for f in dataclasses.fields(cls)] == [
            f.name for f in dataclasses.fields(getattr(bdataflow, cls.__name__))
        ]


@dataclass(frozen=True)
class _Pair:
    low: Stream[int]
    high: Stream[int]
    cut: int


@operator
def split_at(step_id: str, up: Stream[int], threshold: int) -> _Pair:
    halves = op.branch("cmp", up, lambda x: x < threshold)
    return _Pair(halves.trues, halves.falses, threshold)


@operator
def merge_all(step_id: str, *ups: Stream[int], **named: Stream[int]) -> Stream[int]:
    return op.merge("merge", *ups, *named.values())


def test_custom_operators_record_dataclass_results_and_var_args(
    entry_point: EntryPoint,
) -> None:
    out: list[int] = []
    flow = Dataflow("custom")
    pair = split_at("split", op.input("inp", flow, TestingSource(range(6))), threshold=3)
    op.output("out", merge_all("all", pair.low, extra=pair.high), TestingSink(out))
    _, split, merged, _ = flow.substeps
    assert (split.ups_names, split.dwn_names) == (["up"], ["low", "high"])
    assert _at(split, "cut") == 3
    assert _at(split, "low") == SinglePort("custom.split.low", "custom.split.cmp.trues")
    assert [s.step_id for s in split.substeps] == ["custom.split.cmp"]
    assert _at(merged, "ups") == MultiPort("custom.all.ups", {0: "custom.split.cmp.trues"})
    assert _at(merged, "named") == MultiPort(
        "custom.all.named", {"extra": "custom.split.cmp.falses"}
    )
    assert merged.ups_names == ["ups", "named"]
    entry_point(flow)
    assert sorted(out) == list(range(6))


def test_a_failed_builder_records_no_operator() -> None:
    flow = Dataflow("fails")
    nums = op.input("inp", flow, TestingSource([1]))
    with pytest.raises(TypeError, match="mapper must be callable"):
        op.map("bad", nums, 3)
    with pytest.raises(TypeError, match="operator 'map' called incorrectly"):
        op.map("missing", nums)
    assert [s.step_name for s in flow.substeps] == ["inp"]
    op.map("missing", nums, str)  # a call that failed to bind took no step id


def test_operator_fields_may_not_be_hidden() -> None:
    with pytest.raises(TypeError, match="substeps"):

        @operator
        def bad(step_id: str, up: Stream[Any], substeps: int) -> Stream[Any]:
            return up

    @dataclass(frozen=True)
    class Clash:
        up: Stream[Any]

    @operator
    def clashing(step_id: str, up: Stream[Any]) -> Clash:
        return Clash(op.map("m", up, str))

    flow = Dataflow("clash")
    with pytest.raises(TypeError, match="result fields named up clash"):
        clashing("c", op.input("inp", flow, TestingSource([1])))
