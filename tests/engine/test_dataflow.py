"""Flow definition: step ids, validation, the compiled plan."""

from __future__ import annotations

import cloudpickle
import pytest

import engine.operators as op
from engine.connectors.files import FileSink
from engine.dataflow import Dataflow, Stream, operator
from engine.errors import FlowError
from engine.runtime.plan import (
    EXCHANGE_KEY,
    EXCHANGE_PARTITION,
    EXCHANGE_REDISTRIBUTE,
    compile_plan,
)
from engine.testing import TestingSink, TestingSource, run_main


def test_flow_id_may_not_contain_dot() -> None:
    with pytest.raises(ValueError, match=r"may not contain '\.'"):
        Dataflow("a.b")


def test_flow_id_must_be_str() -> None:
    with pytest.raises(TypeError, match="flow_id must be a str"):
        Dataflow(3)  # type: ignore[arg-type]


def test_step_ids_are_qualified_by_flow_and_parents() -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([1]))
    m = op.map("double", s, lambda x: x)
    assert s.stream_id == "f.inp.down"
    assert m.stream_id.startswith("f.double.")
    ids = [c.step_id for c in flow.core_steps]
    assert ids == ["f.inp", "f.double.flat_map_batch"]


def test_step_id_with_dot_is_rejected() -> None:
    flow = Dataflow("f")
    with pytest.raises(ValueError, match=r"may not contain '\.'"):
        op.input("in.p", flow, TestingSource([1]))


def test_step_id_must_be_str() -> None:
    flow = Dataflow("f")
    with pytest.raises(TypeError, match="step_id must be a str"):
        op.input(1, flow, TestingSource([1]))  # type: ignore[arg-type]


def test_duplicate_step_id_is_rejected() -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([1]))
    op.map("m", s, str)
    with pytest.raises(ValueError, match=r"step 'f\.m' already exists"):
        op.map("m", s, str)


def test_same_step_id_in_different_scopes_is_fine() -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    op.map_value("a", s, str)
    op.map_value("b", s, str)  # both contain a sub-step "flat_map_batch"
    assert len(flow.core_steps) == 3


def test_streams_of_different_flows_cannot_mix() -> None:
    a = op.input("inp", Dataflow("a"), TestingSource([1]))
    b = op.input("inp", Dataflow("b"), TestingSource([1]))
    with pytest.raises(FlowError, match="mixes streams of flow 'a' and flow 'b'"):
        op.merge("m", a, b)


def test_custom_operator_scopes_substeps_and_then_chains() -> None:
    @operator
    def twice(step_id: str, up: Stream[int]) -> Stream[int]:
        return op.map("again", op.map("once", up, lambda x: x + 1), lambda x: x + 1)

    flow = Dataflow("f")
    out: list[int] = []
    twice("t", op.input("inp", flow, TestingSource([1, 2]))).then(
        op.output, "out", TestingSink(out)
    )
    assert [c.step_id for c in flow.core_steps][1:3] == [
        "f.t.once.flat_map_batch",
        "f.t.again.flat_map_batch",
    ]
    run_main(flow)
    assert out == [3, 4]


def test_input_needs_a_source() -> None:
    with pytest.raises(TypeError, match="source must be a FixedPartitionedSource"):
        op.input("inp", Dataflow("f"), [1, 2])  # type: ignore[arg-type]


def test_output_needs_a_sink() -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([1]))
    with pytest.raises(TypeError, match="sink must be a FixedPartitionedSink"):
        op.output("out", s, [])  # type: ignore[arg-type]


def test_non_callable_mapper_is_rejected_when_building() -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([1]))
    with pytest.raises(TypeError, match="mapper must be callable"):
        op.map("m", s, 3)  # type: ignore[arg-type]


def test_flow_without_input_is_rejected_at_run() -> None:
    with pytest.raises(FlowError, match="has no input step"):
        run_main(Dataflow("empty"))


def test_flow_without_output_is_rejected_at_run() -> None:
    flow = Dataflow("f")
    op.map("m", op.input("inp", flow, TestingSource([1])), str)
    with pytest.raises(FlowError, match="has no output step"):
        run_main(flow)


def test_plan_marks_exchange_points(tmp_path) -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    counted = op.stateful_map("sm", s, lambda st, v: (st, v))
    spread = op.redistribute("spread", counted)
    op.output("file", spread, FileSink(tmp_path / "out.txt"))
    op.output("list", spread, TestingSink([]))
    plan = compile_plan(flow)
    marks = {s.step_id: s.exchange for s in plan.steps}
    assert marks == {
        "f.inp": None,
        "f.sm.stateful_batch": EXCHANGE_KEY,
        "f.spread": EXCHANGE_REDISTRIBUTE,
        "f.file": EXCHANGE_PARTITION,
        "f.list": None,
    }
    assert [s.step_id for s in plan.exchange_steps] == [
        "f.sm.stateful_batch",
        "f.spread",
        "f.file",
    ]


def test_plan_round_trips_through_cloudpickle() -> None:
    flow = Dataflow("f")
    out: list[int] = []
    offset = 10
    op.output(
        "out",
        op.map("m", op.input("inp", flow, TestingSource([1])), lambda x: x + offset),
        TestingSink(out),
    )
    plan = cloudpickle.loads(cloudpickle.dumps(compile_plan(flow)))
    assert [s.step_id for s in plan.steps] == ["f.inp", "f.m.flat_map_batch", "f.out"]
    mapper = plan.steps[1].config.mapper  # type: ignore[union-attr]
    assert mapper([1, 2]) == [11, 12]


def test_compile_rejects_non_flows() -> None:
    with pytest.raises(TypeError, match="expected a Dataflow"):
        compile_plan("not a flow")  # type: ignore[arg-type]
