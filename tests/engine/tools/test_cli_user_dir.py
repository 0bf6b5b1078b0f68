"""The CLI beside user files named like our packages: ``recovery.py``, ``shm.py``, ``engine.py``.

Bytewax's recovery guide saves its flow as ``recovery.py``; shmflow's own packages
``recovery``, ``shm`` and ``engine`` must still be the ones imported, in the command's
process and in every worker process, whether the flow is started with ``python -m
engine.run`` (which puts the current directory first on ``sys.path``) or with the
``shmflow`` console script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import run as run_module
from engine.tools.args import load_flow
from engine.tools.own_packages import PACKAGE_ROOT, import_own_packages

REPO = Path(__file__).resolve().parents[3]
SHMFLOW = Path(sys.executable).parent / "shmflow"

FLOW_SOURCE = """\
import engine.operators as op
from engine.connectors.stdio import StdOutSink
from engine.dataflow import Dataflow
from engine.testing import TestingSource

flow = Dataflow("user_dir")
words = op.input("inp", flow, TestingSource(["b", "a", "b", "c", "b"] * 20, batch_size=7))
counts = op.count_final("count", words, lambda w: w)
op.output("out", op.map("fmt", counts, lambda kv: f"{kv[0]}={kv[1]}"), StdOutSink())
"""
EXPECTED = ["a=20", "b=60", "c=20"]
#: A user's module shadowing one of ours: importing it by mistake fails loudly.
SHADOW_SOURCE = "raise ImportError('the user file {name} was imported instead of ours')\n"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=90, check=False
    )


def _python_m(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine.run", *args]


def _shmflow(*args: str) -> list[str]:
    return [str(SHMFLOW), "run", *args]


@pytest.fixture
def recovery_dir(tmp_path: Path) -> Path:
    """A directory holding a flow saved as ``recovery.py``, as Bytewax's guide does."""
    (tmp_path / "recovery.py").write_text(FLOW_SOURCE)
    return tmp_path


@pytest.fixture
def shm_dir(tmp_path: Path) -> Path:
    """A ``flow.py`` with an unrelated ``shm.py`` (and ``recovery.py``) beside it."""
    (tmp_path / "flow.py").write_text(FLOW_SOURCE)
    for name in ("shm", "recovery"):
        (tmp_path / f"{name}.py").write_text(SHADOW_SOURCE.format(name=f"{name}.py"))
    return tmp_path


def _assert_ran(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == EXPECTED
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_python_m_runs_a_flow_saved_as_recovery_py(recovery_dir: Path, workers: str) -> None:
    _assert_ran(_run(_python_m("./recovery.py", "-w", workers), recovery_dir))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_shmflow_runs_a_flow_saved_as_recovery_py(recovery_dir: Path, workers: str) -> None:
    _assert_ran(_run(_shmflow("recovery.py", "-w", workers), recovery_dir))


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("import_str", ["flow.py", "./flow.py", "flow", "flow:flow"])
def test_python_m_beside_a_users_shm_py(shm_dir: Path, import_str: str, workers: str) -> None:
    _assert_ran(_run(_python_m(import_str, "-w", workers), shm_dir))


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("import_str", ["flow.py", "flow"])
def test_shmflow_beside_a_users_shm_py(shm_dir: Path, import_str: str, workers: str) -> None:
    _assert_ran(_run(_shmflow(import_str, "-w", workers), shm_dir))


def test_shmflow_runs_a_flow_saved_as_engine_py(tmp_path: Path) -> None:
    # `python -m engine.run` cannot work here (Python finds ./engine.py first); the
    # console script does not put the current directory on sys.path.
    (tmp_path / "engine.py").write_text(FLOW_SOURCE)
    _assert_ran(_run(_shmflow("engine.py", "-w", "2"), tmp_path))


@pytest.mark.parametrize("command", [_python_m, _shmflow], ids=["python-m", "shmflow"])
@pytest.mark.parametrize(
    ("import_str", "suggestion"),
    [
        ("recovery:flow", "./recovery.py"),
        ("recovery", "./recovery.py"),
        ("shm:make(2)", "./shm.py:make(2)"),
    ],
)
def test_our_package_names_as_module_name_suggest_the_path(
    recovery_dir: Path, command, import_str: str, suggestion: str
) -> None:
    result = _run(command(import_str), recovery_dir)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "shmflow's own package" in lines[0]
    assert lines[0].endswith(f"give its path instead: {suggestion}")


# -- in this process -------------------------------------------------------------------------


def test_load_flow_by_path_uses_a_synthetic_module_name(monkeypatch, recovery_dir: Path) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "shmflow_user_recovery", None)  # removed at teardown
    monkeypatch.delitem(sys.modules, "shmflow_user_recovery")
    flow = load_flow(str(recovery_dir / "recovery.py"))
    assert flow.flow_id == "user_dir"
    assert "shmflow_user_recovery" in sys.modules
    assert Path(sys.modules["recovery"].__file__ or "").parent.parent == PACKAGE_ROOT


def test_module_name_of_our_package_is_a_usage_error(capsys) -> None:
    assert run_module.main(["recovery:flow"]) == 2
    assert "give its path instead: ./recovery.py" in capsys.readouterr().err


def test_a_foreign_module_under_our_name_is_reported(monkeypatch, tmp_path: Path) -> None:
    impostor = type(sys)("shm")
    impostor.__file__ = str(tmp_path / "shm.py")
    monkeypatch.setitem(sys.modules, "shm", impostor)
    with pytest.raises(ImportError, match=r"imported from .*shm\.py, not from shmflow's"):
        import_own_packages()
