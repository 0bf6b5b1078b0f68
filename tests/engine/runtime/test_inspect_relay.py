"""``inspect`` on worker processes shows items as they were when inspected.

The default printer runs on the worker at inspection time (so its lines keep their
place among the worker's other output); a caller-side inspector gets a copy of the
item pickled at inspection time, not the object later steps mutated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.runtime.plan import InspectConfig, compile_plan
from engine.runtime.relay import RelayInspector, with_relays
from engine.testing import TestingSink, TestingSource, cluster_main

ROOT = Path(__file__).resolve().parents[3]
PROCESS_TIMEOUT_S = 60

#: inspect -> a map that mutates each dict in place -> stdout, written for ``{pkg}``.
MUTATING_FLOW = textwrap.dedent(
    """
    import {pkg}.operators as op
    from {pkg}.connectors.stdio import StdOutSink
    from {pkg}.dataflow import Dataflow
    from {pkg}.testing import TestingSource


    def mutate(item):
        item["seen"] = True
        return item


    flow = Dataflow("mut")
    items = op.input("inp", flow, TestingSource([{{"n": n}} for n in range(6)]))
    op.output("out", op.map("mutate", op.inspect("show", items), mutate), StdOutSink())
    """
)


@pytest.fixture(autouse=True)
def _ship_this_module_by_value() -> None:
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _run_flow_file(tmp_path: Path, pkg: str, workers: int) -> list[str]:
    """Run the mutating flow with ``python -m {pkg}.run``; its stdout lines."""
    flow_dir = tmp_path / pkg
    flow_dir.mkdir()
    (flow_dir / "flow.py").write_text(MUTATING_FLOW.format(pkg=pkg))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", f"{pkg}.run", "flow.py", "-w", str(workers)]
    done = subprocess.run(
        cmd,
        cwd=flow_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("workers", [1, 2])
def test_default_inspect_prints_like_bytewax_in_order_with_downstream_output(
    tmp_path: Path, workers: int
) -> None:
    pytest.importorskip("bytewax")
    expected = _run_flow_file(tmp_path, "bytewax", workers)
    # One source partition: every line comes from the worker that reads it, in order.
    assert expected[:2] == ["mut.show: {'n': 0}", "{'n': 0, 'seen': True}"]
    assert _run_flow_file(tmp_path, "engine", workers) == expected


def _mutate(item: dict[str, Any]) -> dict[str, Any]:
    item["seen"] = True
    return item


def test_a_caller_side_inspector_sees_items_as_they_were_when_inspected() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    out: list[dict[str, Any]] = []
    flow = Dataflow("mut")
    items = op.input("inp", flow, TestingSource([{"n": n} for n in range(6)]))
    shown = op.inspect("show", items, lambda step_id, item: seen.append((step_id, item)))
    op.output("out", op.map("mutate", shown, _mutate), TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert seen == [("mut.show", {"n": n}) for n in range(6)]
    assert out == [{"n": n, "seen": True} for n in range(6)]


def test_with_relays_keeps_the_default_printer_in_the_plan() -> None:
    flow = Dataflow("keep")
    items = op.input("inp", flow, TestingSource([1]))
    op.inspect("user", op.inspect("printed", items), lambda *_: None)
    shipped, relays = with_relays(compile_plan(flow))
    inspectors = {
        s.step_id: s.config.inspector for s in shipped.steps if isinstance(s.config, InspectConfig)
    }
    assert isinstance(inspectors["keep.user.inspect_debug"], RelayInspector)
    assert not isinstance(inspectors["keep.printed.inspect_debug"], RelayInspector)
    assert [step_id for step_id, _ in relays.inspectors.values()] == ["keep.user.inspect_debug"]
