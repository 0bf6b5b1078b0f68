"""An unchanged Bytewax flow file runs with ``--bytewax-imports`` and prints what Bytewax prints."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import run as run_module
from engine.tools import bytewax_imports as bytewax_imports_module
from engine.tools.bytewax_imports import NoBytewaxEquivalentError, bytewax_imports

REPO = Path(__file__).resolve().parents[2]
SHMFLOW = Path(sys.executable).parent / "shmflow"

#: Written for Bytewax 0.21: not one shmflow name in it.
BYTEWAX_FLOW = """\
import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

WORDS = ["apple", "fig", "apple", "kiwi", "fig", "apple", "plum"] * 3


def running_total(total, _word):
    total = (total or 0) + 1
    return total, total


flow = Dataflow("bytewax_words")
words = op.input("inp", flow, TestingSource(WORDS, batch_size=2))
keyed = op.key_on("key", words, lambda w: w)
totals = op.stateful_map("total", keyed, running_total)
op.output("totals", op.map("fmt_total", totals, lambda kv: f"total {kv[0]} {kv[1]}"), StdOutSink())
counts = op.count_final("count", words, lambda w: w)
op.output("counts", op.map("fmt_count", counts, lambda kv: f"count {kv[0]} {kv[1]}"), StdOutSink())
"""
_COUNTS = {"apple": 9, "fig": 6, "kiwi": 3, "plum": 3}
EXPECTED = sorted(
    [f"count {w} {n}" for w, n in _COUNTS.items()]
    + [f"total {w} {i}" for w, n in _COUNTS.items() for i in range(1, n + 1)]
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=90, check=False
    )


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.splitlines())


@pytest.fixture
def flow_dir(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(BYTEWAX_FLOW)
    return tmp_path


COMMANDS = {
    "python-m": [sys.executable, "-m", "engine.run"],
    "shmflow": [str(SHMFLOW), "run"],
}


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("command", COMMANDS)
def test_unchanged_bytewax_flow_runs(flow_dir: Path, command: str, workers: str) -> None:
    argv = [*COMMANDS[command], "--bytewax-imports", "flow.py", "-w", workers]
    assert _lines(_run(argv, flow_dir)) == EXPECTED


@pytest.mark.parametrize("workers", ["1", "2"])
def test_output_equals_bytewax(flow_dir: Path, workers: str) -> None:
    pytest.importorskip("bytewax")
    theirs = _lines(_run([sys.executable, "-m", "bytewax.run", "flow.py"], flow_dir))
    ours = _run([*COMMANDS["python-m"], "--bytewax-imports", "flow.py", "-w", workers], flow_dir)
    assert _lines(ours) == theirs == EXPECTED


def test_unmapped_bytewax_module_names_it(flow_dir: Path) -> None:
    (flow_dir / "kafka_flow.py").write_text(
        "from bytewax.connectors.kafka import KafkaSource\n" + BYTEWAX_FLOW
    )
    result = _run([*COMMANDS["python-m"], "--bytewax-imports", "kafka_flow.py"], flow_dir)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "NoBytewaxEquivalentError" in lines[0]
    assert "cannot import 'bytewax.connectors.kafka' under --bytewax-imports" in lines[0]
    assert "shmflow has no equivalent of it" in lines[0]


def test_without_the_flag_the_error_suggests_it(flow_dir: Path, capsys) -> None:
    # Real Bytewax installed: its Dataflow is not ours. Not installed: no module bytewax.
    assert run_module.main([str(flow_dir / "flow.py")]) == 2
    err = capsys.readouterr().err
    assert "--bytewax-imports" in err
    assert err.count("\n") == 1


# -- the finder, in this process -------------------------------------------------------------


def test_mapped_names_are_our_modules() -> None:
    with bytewax_imports():
        import bytewax.connectors.stdio
        import bytewax.operators.windowing
        from bytewax.errors import BytewaxRuntimeError
        from bytewax.testing import TestingSource

    import engine.connectors.stdio
    import engine.operators.windowing
    import engine.testing
    from engine.errors import EngineRuntimeError

    assert bytewax.operators.windowing is engine.operators.windowing
    assert bytewax.connectors.stdio is engine.connectors.stdio
    assert TestingSource is engine.testing.TestingSource
    assert BytewaxRuntimeError is EngineRuntimeError
    # The alias leaves our module's own identity alone.
    assert engine.operators.windowing.__spec__ is not None
    assert engine.operators.windowing.__spec__.name == "engine.operators.windowing"


def test_real_bytewax_does_not_leak_in_and_comes_back() -> None:
    real = pytest.importorskip("bytewax.dataflow")
    with bytewax_imports():
        import bytewax.dataflow

        assert bytewax.dataflow is not real
        assert bytewax.dataflow.__name__ == "engine.dataflow"
    assert sys.modules["bytewax.dataflow"] is real


def test_unmapped_module_raises_no_equivalent() -> None:
    with bytewax_imports(), pytest.raises(NoBytewaxEquivalentError, match=r"bytewax\.tracingx"):
        importlib.import_module("bytewax.tracingx")


def test_mapping_is_lazy(monkeypatch) -> None:
    # A mapped module is imported when the flow imports it, not before: finding the
    # spec imports nothing, so a missing target only fails at import.
    missing = "engine._not_written_yet"
    monkeypatch.setitem(bytewax_imports_module.BYTEWAX_MODULES, "bytewax.later", missing)
    with bytewax_imports():
        assert importlib.util.find_spec("bytewax.later") is not None
        assert missing not in sys.modules
        with pytest.raises(NoBytewaxEquivalentError, match=r"maps to 'engine\._not_written_yet'"):
            importlib.import_module("bytewax.later")
