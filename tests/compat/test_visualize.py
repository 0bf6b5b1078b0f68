"""``engine.visualize``: the operator tree as JSON, Mermaid and PlantUML, like Bytewax's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import Dataflow, Stream, operator
from engine.testing import TestingSink, TestingSource
from engine.visualize import to_json, to_mermaid, to_plantuml, to_rendered
from tests.compat.conftest import EntryPoint

ROOT = Path(__file__).resolve().parents[2]

THREE_STEPS_MERMAID = """\
flowchart TD
subgraph "three (Dataflow)"
three.inp["inp (input)"]
three.double["double (map)"]
three.inp -- "down → up" --> three.double
three.out["out (output)"]
three.double -- "down → up" --> three.out
end"""


def _three_steps(ops: ModuleType, testing: ModuleType, dataflow: ModuleType, out: list[Any]) -> Any:
    """The same 3-step flow on our modules or on Bytewax's."""
    flow = dataflow.Dataflow("three")
    nums = ops.input("inp", flow, testing.TestingSource([1, 2, 3]))
    ops.output("out", ops.map("double", nums, lambda x: 2 * x), testing.TestingSink(out))
    return flow


def _split_and_merge(ops: ModuleType, testing: ModuleType, dataflow: ModuleType) -> Any:
    """Multi-output (branch) and multi-input (merge) ports, and a filter inside."""
    flow = dataflow.Dataflow("split")
    nums = ops.input("inp", flow, testing.TestingSource(range(6)))
    halves = ops.branch("even", nums, lambda x: x % 2 == 0)
    small = ops.filter("small", halves.falses, lambda x: x < 4)
    both = ops.merge("both", halves.trues, small)
    ops.output("out", ops.map("inc", both, lambda x: x + 1), testing.TestingSink([]))
    return flow


def _ours() -> tuple[ModuleType, ModuleType, ModuleType]:
    import engine.dataflow
    import engine.testing

    return op, engine.testing, engine.dataflow


def _bytewax() -> tuple[ModuleType, ModuleType, ModuleType]:
    bytewax_ops = pytest.importorskip("bytewax.operators")
    return (
        bytewax_ops,
        pytest.importorskip("bytewax.testing"),
        pytest.importorskip("bytewax.dataflow"),
    )


def test_mermaid_of_three_steps() -> None:
    assert to_mermaid(_three_steps(*_ours(), [])) == THREE_STEPS_MERMAID


def test_json_has_every_step_port_and_link() -> None:
    tree = json.loads(to_json(_three_steps(*_ours(), [])))
    assert (tree["typ"], tree["flow_id"]) == ("RenderedDataflow", "three")
    inp, double, out = tree["substeps"]
    assert [(s["step_id"], s["op_type"], s["step_name"]) for s in tree["substeps"]] == [
        ("three.inp", "input", "inp"),
        ("three.double", "map", "double"),
        ("three.out", "output", "out"),
    ]
    assert inp["inp_ports"] == [] and out["out_ports"] == []
    assert double["inp_ports"] == [
        {
            "typ": "RenderedPort",
            "port_name": "up",
            "port_id": "three.double.up",
            "from_port_ids": ["three.inp.down"],
            "from_stream_ids": ["three.inp.down"],
        }
    ]
    # The map's output comes out of its core sub-step, which reads the map's input port.
    (core,) = double["substeps"]
    assert (core["op_type"], core["step_id"]) == ("flat_map_batch", "three.double.flat_map_batch")
    assert core["inp_ports"][0]["from_port_ids"] == ["three.double.up"]
    assert double["out_ports"][0]["from_port_ids"] == ["three.double.flat_map_batch.down"]
    assert out["inp_ports"][0]["from_port_ids"] == ["three.double.down"]


def test_multi_ports_link_every_stream() -> None:
    rendered = to_rendered(_split_and_merge(*_ours()))
    both = next(s for s in rendered.substeps if s.step_name == "both")
    (ups,) = both.inp_ports
    assert ups.port_name == "ups"
    assert ups.from_port_ids == ["split.even.trues", "split.small.down"]
    mermaid = to_mermaid(_split_and_merge(*_ours()))
    assert 'split.even -- "trues → ups" --> split.both' in mermaid
    assert 'split.even -- "falses → up" --> split.small' in mermaid
    assert 'split.small -- "down → ups" --> split.both' in mermaid


def test_custom_operator_nests_its_steps() -> None:
    @operator
    def add_then_double(step_id: str, up: Stream[int]) -> Stream[int]:
        return op.map("double", op.map("add", up, lambda x: x + 1), lambda x: 2 * x)

    flow = Dataflow("nested")
    nums = op.input("inp", flow, TestingSource([1]))
    op.output("out", add_then_double("calc", nums), TestingSink([]))
    (_, calc, _) = to_rendered(flow).substeps
    assert calc.op_type == "add_then_double"
    assert [s.step_id for s in calc.substeps] == ["nested.calc.add", "nested.calc.double"]
    add, double = calc.substeps
    assert add.inp_ports[0].from_port_ids == ["nested.calc.up"]
    assert double.inp_ports[0].from_port_ids == ["nested.calc.add.down"]
    assert calc.out_ports[0].from_port_ids == ["nested.calc.double.down"]
    # Mermaid shows the top level only; PlantUML -r shows the inside too.
    assert "nested.calc.add" not in to_mermaid(flow)
    assert "component nested.calc.add [" in to_plantuml(flow, recursive=True)
    assert "component nested.calc.add [" not in to_plantuml(flow)


def test_same_output_as_bytewax_for_the_same_flow() -> None:
    bytewax_visualize = pytest.importorskip("bytewax.visualize")
    ours, theirs = _three_steps(*_ours(), []), _three_steps(*_bytewax(), [])
    assert to_mermaid(ours) == bytewax_visualize.to_mermaid(theirs)
    assert json.loads(to_json(ours)) == json.loads(bytewax_visualize.to_json(theirs))
    for recursive in (False, True):
        assert to_plantuml(ours, recursive) == bytewax_visualize.to_plantuml(theirs, recursive)


def _top_level(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """Steps and port links of the top level.

    Stream ids are left out: they name the core step that made the stream, and a
    derived operator may decompose differently here than in Bytewax.
    """
    return [
        {
            "step": (step["step_id"], step["step_name"], step["op_type"]),
            "inputs": [
                (port["port_name"], port["port_id"], port["from_port_ids"])
                for port in step["inp_ports"]
            ],
            "outputs": [port["port_id"] for port in step["out_ports"]],
        }
        for step in tree["substeps"]
    ]


def test_same_structure_as_bytewax_with_multi_ports() -> None:
    bytewax_visualize = pytest.importorskip("bytewax.visualize")
    ours, theirs = _split_and_merge(*_ours()), _split_and_merge(*_bytewax())
    assert to_mermaid(ours) == bytewax_visualize.to_mermaid(theirs)
    assert _top_level(json.loads(to_json(ours))) == _top_level(
        json.loads(bytewax_visualize.to_json(theirs))
    )


def test_visualizing_leaves_the_flow_runnable(entry_point: EntryPoint) -> None:
    out: list[int] = []
    flow = _three_steps(*_ours(), out)
    before = to_json(flow)
    entry_point(flow)
    assert sorted(out) == [2, 4, 6]
    assert to_json(flow) == before


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "viz_flow.py"
    path.write_text(
        textwrap.dedent(
            """
            import engine.operators as op
            from engine.dataflow import Dataflow
            from engine.testing import TestingSink, TestingSource

            flow = Dataflow("three")
            nums = op.input("inp", flow, TestingSource([1, 2, 3]))
            op.output("out", op.map("double", nums, lambda x: 2 * x), TestingSink([]))
            """
        )
    )
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.visualize", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_cli_prints_the_mermaid_diagram(flow_file: Path) -> None:
    result = _cli(str(flow_file))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == THREE_STEPS_MERMAID + "\n"


def test_cli_other_formats(flow_file: Path) -> None:
    as_json = _cli(f"{flow_file}:flow", "-o", "json")
    assert json.loads(as_json.stdout)["flow_id"] == "three"
    plantuml = _cli(str(flow_file), "--output-format", "plantuml", "--recursive")
    assert plantuml.stdout.startswith("@startuml\n")
    assert "component three.double.flat_map_batch [" in plantuml.stdout


def test_cli_bad_import_str_is_one_line_exit_2(tmp_path: Path) -> None:
    result = _cli(str(tmp_path / "missing.py"))
    assert result.returncode == 2
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr
