"""Describe a flow's structure; ``python -m engine.visualize IMPORT_STR`` prints it.

The diagrams are drawn from the operator tree a flow records as it is built
(:attr:`engine.dataflow.Dataflow.substeps`): every operator call, with the operators
its builder called and its input and output ports. :func:`to_rendered` resolves, for
every input port, the output port each of its streams comes from; :func:`to_json`,
:func:`to_mermaid` and :func:`to_plantuml` print that, in the formats and layout of
Bytewax 0.21, so tools built around Bytewax's output keep working.

>>> import engine.operators as op
>>> from engine.dataflow import Dataflow
>>> from engine.testing import TestingSink, TestingSource
>>> flow = Dataflow("viz")
>>> nums = op.input("nums", flow, TestingSource([1, 2]))
>>> op.output("out", op.map("double", nums, lambda x: 2 * x), TestingSink([]))
>>> print(to_mermaid(flow))
flowchart TD
subgraph "viz (Dataflow)"
viz.nums["nums (input)"]
viz.double["double (map)"]
viz.nums -- "down → up" --> viz.double
viz.out["out (output)"]
viz.double -- "down → up" --> viz.out
end

From the command line (``-o json`` for the whole tree, ``-o plantuml -r`` for a
diagram with the sub-steps):

.. code-block:: sh

    python -m engine.visualize my_flows:flow > flow.mmd
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import ChainMap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from engine.dataflow import Dataflow, Operator, Port

__all__ = [
    "RenderedDataflow",
    "RenderedOperator",
    "RenderedPort",
    "main",
    "to_json",
    "to_mermaid",
    "to_plantuml",
    "to_rendered",
]

OutputFormat = Literal["json", "mermaid", "plantuml"]


@dataclass(frozen=True)
class RenderedPort:
    """A port with the ports its streams come from.

    ``from_port_ids[i]`` is where ``from_stream_ids[i]`` comes from: for an input port,
    the output port (or enclosing operator's input port) that produced it; for an output
    port of an operator with sub-steps, the inner port that produced it (empty for
    operators without sub-steps).
    """

    port_name: str
    port_id: str
    from_port_ids: list[str]
    from_stream_ids: list[str]


@dataclass(frozen=True)
class RenderedOperator:
    """An operator call with its ports resolved; ``op_type`` is the operator's name."""

    op_type: str
    step_name: str
    step_id: str
    inp_ports: list[RenderedPort]
    out_ports: list[RenderedPort]
    substeps: list[RenderedOperator]


@dataclass(frozen=True)
class RenderedDataflow:
    """A flow's operator tree with every port link resolved."""

    flow_id: str
    substeps: list[RenderedOperator]


#: Stream id -> id of the port it comes from, as seen from inside one operator.
_Origins = ChainMap[str, str]


def to_rendered(flow: Dataflow) -> RenderedDataflow:
    """The operator tree of ``flow`` with, for every port, where its streams come from."""
    origins: _Origins = ChainMap()
    return RenderedDataflow(flow.flow_id, [_render(step, origins) for step in flow.substeps])


def _ports(step: Operator, names: Sequence[str]) -> list[tuple[str, Port]]:
    ports = ((name, getattr(step, name)) for name in names)
    return [(name, port) for name, port in ports if isinstance(port, Port)]


def _linked(name: str, port: Port, origins: _Origins) -> RenderedPort:
    stream_ids = [sid for sid in port.stream_ids.values() if sid in origins]
    return RenderedPort(name, port.port_id, [origins[sid] for sid in stream_ids], stream_ids)


def _render(step: Operator, origins: _Origins) -> RenderedOperator:
    inputs = _ports(step, step.ups_names)
    outputs = _ports(step, step.dwn_names)
    inp_ports = [_linked(name, port, origins) for name, port in inputs]
    # Steps after this one, in the same scope, see its streams coming from its outputs.
    origins.update({sid: port.port_id for _, port in outputs for sid in port.stream_ids.values()})
    # Inside it, streams that came in through an input port come from that port.
    inner = origins.new_child(
        {sid: port.port_id for _, port in inputs for sid in port.stream_ids.values()}
    )
    substeps = [_render(substep, inner) for substep in step.substeps]
    if substeps:
        out_ports = [_linked(name, port, inner) for name, port in outputs]
    else:
        out_ports = [RenderedPort(name, port.port_id, [], []) for name, port in outputs]
    return RenderedOperator(
        type(step).__name__, step.step_name, step.step_id, inp_ports, out_ports, substeps
    )


def _as_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, RenderedDataflow):
        return {"typ": "RenderedDataflow", "flow_id": value.flow_id, "substeps": value.substeps}
    if isinstance(value, RenderedOperator):
        return {
            "typ": "RenderedOperator",
            "op_type": value.op_type,
            "step_name": value.step_name,
            "step_id": value.step_id,
            "inp_ports": value.inp_ports,
            "out_ports": value.out_ports,
            "substeps": value.substeps,
        }
    if isinstance(value, RenderedPort):
        return {"typ": "RenderedPort", **vars(value)}
    return value


class _RenderedEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, RenderedDataflow | RenderedOperator | RenderedPort):
            return _as_json(o)
        return super().default(o)


def to_json(flow: Dataflow) -> str:
    """The whole operator tree of ``flow`` as JSON (the layout of Bytewax's ``to_json``).

    >>> import engine.operators as op
    >>> from engine.testing import TestingSink, TestingSource
    >>> flow = Dataflow("viz_json")
    >>> op.output("out", op.input("inp", flow, TestingSource([1])), TestingSink([]))
    >>> tree = json.loads(to_json(flow))
    >>> [(s["step_id"], s["op_type"]) for s in tree["substeps"]]
    [('viz_json.inp', 'input'), ('viz_json.out', 'output')]
    >>> tree["substeps"][1]["inp_ports"][0]["from_port_ids"]
    ['viz_json.inp.down']
    """
    return json.dumps(to_rendered(flow), cls=_RenderedEncoder, indent=2)


def to_mermaid(flow: Dataflow) -> str:
    """A Mermaid flowchart of the top-level steps of ``flow`` and the streams between them.

    Each step is a node ``step_id["step_name (operator)"]``; each stream an edge labelled
    ``"output port → input port"``. Sub-steps are not shown (use :func:`to_json` or
    :func:`to_plantuml` with ``recursive=True``).
    """
    rendered = to_rendered(flow)
    owner: dict[str, tuple[RenderedOperator, RenderedPort]] = {
        port.port_id: (step, port)
        for step in rendered.substeps
        for port in [*step.inp_ports, *step.out_ports]
    }
    lines = ["flowchart TD", f'subgraph "{flow.flow_id} (Dataflow)"']
    for step in rendered.substeps:
        lines.append(f'{step.step_id}["{step.step_name} ({step.op_type})"]')
        for port in step.inp_ports:
            for from_port_id in port.from_port_ids:
                from_step, from_port = owner[from_port_id]
                lines.append(
                    f'{from_step.step_id} -- "{from_port.port_name} → {port.port_name}" '
                    f"--> {step.step_id}"
                )
    lines.append("end")
    return "\n".join(lines)


def to_plantuml(flow: Dataflow, recursive: bool = False) -> str:
    """A PlantUML component diagram of ``flow``; ``recursive`` also draws sub-steps."""
    lines = ["@startuml"]
    for step in to_rendered(flow).substeps:
        lines.extend(_plantuml_component(step, recursive))
    lines.append("@enduml")
    return "\n".join(lines)


def _plantuml_links(port: RenderedPort) -> list[str]:
    return [
        f"{from_port_id} --> {port.port_id} : {stream_id}"
        for from_port_id, stream_id in zip(port.from_port_ids, port.from_stream_ids, strict=True)
    ]


def _plantuml_component(step: RenderedOperator, recursive: bool) -> list[str]:
    body = [f"portin {port.port_id}" for port in step.inp_ports]
    body += [f"portout {port.port_id}" for port in step.out_ports]
    for port in step.inp_ports:
        body += _plantuml_links(port)
    if recursive:
        for substep in step.substeps:
            body += _plantuml_component(substep, recursive)
        for port in step.out_ports:
            body += _plantuml_links(port)
    return [
        f"component {step.step_id} [",
        f"    {step.step_id} ({step.op_type})",
        "]",
        f"component {step.step_id} {{",
        *("    " + line for line in body),
        "}",
    ]


def _render_as(flow: Dataflow, output_format: OutputFormat, recursive: bool) -> str:
    if output_format == "json":
        return to_json(flow)
    if output_format == "plantuml":
        return to_plantuml(flow, recursive)
    return to_mermaid(flow)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Print a diagram of a dataflow's steps (Mermaid by default). Pipe it "
        "into a file and render it with Mermaid (https://mermaid.js.org/) or PlantUML; "
        "the JSON format is the full operator tree, for tools and debugging.",
    )
    parser.add_argument(
        "import_str",
        metavar="IMPORT_STR",
        help="the flow: module[:attr] or path/to/file.py[:attr]; attr defaults to 'flow' "
        "and may be a factory call such as make_flow(8)",
    )
    parser.add_argument(
        "-o",
        "--output-format",
        choices=get_args(OutputFormat),
        default="mermaid",
        help="output format (default: mermaid)",
    )
    parser.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="also draw sub-steps (PlantUML only: Mermaid shows top-level steps, JSON all)",
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m engine.visualize") -> int:
    """Print the diagram of the flow named on the command line; return the exit status.

    0 when printed, 2 when the arguments or the ``IMPORT_STR`` are wrong.
    """
    args = _parser(prog).parse_args(argv)
    # Imported here: loading flows pulls in the command-line tools, which the
    # functions above do not need.
    from engine.run import UsageError, load_flow

    try:
        flow = load_flow(args.import_str)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    print(_render_as(flow, args.output_format, args.recursive))
    return 0


if __name__ == "__main__":
    sys.exit(main())
