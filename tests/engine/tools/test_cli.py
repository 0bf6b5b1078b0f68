"""The command line: ``python -m engine.run`` and ``shmflow`` (FAULTS row 17 and more)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import run as run_module
from engine.tools import cli

REPO = Path(__file__).resolve().parents[3]
FLOWS = Path(__file__).resolve().parents[1] / "cluster_flows.py"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture
def small_flow_module(tmp_path: Path) -> Path:
    path = tmp_path / "small_flow.py"
    path.write_text(
        "import engine.operators as op\n"
        "from engine.dataflow import Dataflow\n"
        "from engine.connectors.stdio import StdOutSink\n"
        "from engine.testing import TestingSource\n"
        "flow = Dataflow('small')\n"
        "words = op.input('inp', flow, TestingSource(['b', 'a', 'b'] * 1000, batch_size=100))\n"
        "counts = op.count_final('count', words, lambda w: w)\n"
        "op.output('out', op.map('fmt', counts, lambda kv: f'{kv[0]}={kv[1]}'), StdOutSink())\n"
        "NOT_A_FLOW = 42\n"
        "def make(n):\n"
        "    f = Dataflow('made')\n"
        "    op.output('out', op.input('inp', f, TestingSource(range(n))), StdOutSink())\n"
        "    return f\n"
    )
    return path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["no_such_module_xyz"], "cannot import module 'no_such_module_xyz'"),
        (["engine.examples.wordcount:missing"], "has no attribute 'missing'"),
        (["engine.examples.wordcount:TEXT"], "is a str, not a Dataflow"),
        (["engine.examples.wordcount", "-s", "soon"], "interval 'soon' is not a number"),
        (["engine.examples.wordcount", "-s", "-1"], "must be a finite number of seconds"),
        (["engine.examples.wordcount", "-w", "0"], "worker count must be at least 1"),
        (["engine.examples.wordcount", "-w", "two"], "worker count 'two' is not a whole number"),
        (["/nonexistent/flow.py"], "no such file"),
        (["engine.examples.wordcount:build_flow("], "is not an attribute name or a call"),
        ([], "the following arguments are required: IMPORT_STR"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv: list[str], expected: str) -> None:
    assert run_module.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert expected in lines[0]
    assert lines[0].startswith("engine.run: error: ")
    assert "Traceback" not in captured.err


def test_bad_input_in_a_real_process_has_no_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine.run", "no_such_module_xyz"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_file_path_and_factory_import_strs(small_flow_module: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine.run", str(small_flow_module), "-w", "2"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["a=1000", "b=2000"]
    result = subprocess.run(
        [sys.executable, "-m", "engine.run", f"{small_flow_module}:make(3)"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1", "2"]


def test_not_a_flow_in_file(small_flow_module: Path, capsys) -> None:
    assert run_module.main([f"{small_flow_module}:NOT_A_FLOW"]) == 2
    assert "is a int, not a Dataflow" in capsys.readouterr().err


def test_stats_file_has_the_run_summary(tmp_path: Path, small_flow_module: Path) -> None:
    stats = tmp_path / "stats.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.run",
            str(small_flow_module),
            "-w",
            "2",
            "--stats",
            str(stats),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(stats.read_text())
    assert summary["workers"] == 2
    assert summary["items_in"] == 3000
    assert summary["items_out"] == 2
    assert len(summary["per_worker"]) == 2


def test_failing_flow_exits_1_naming_the_step(tmp_path: Path) -> None:
    path = tmp_path / "failing.py"
    path.write_text(
        "import engine.operators as op\n"
        "from engine.dataflow import Dataflow\n"
        "from engine.testing import TestingSink, TestingSource\n"
        "def boom(x):\n"
        "    raise RuntimeError('bad item ' + str(x))\n"
        "flow = Dataflow('failing')\n"
        "op.output('out', op.map('boom', op.input('inp', flow, TestingSource([7])), boom),\n"
        "          TestingSink([]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "engine.run", str(path), "-w", "2"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("shmflow: error: step 'failing.boom.flat_map_batch' on worker 0")
    assert "bad item 7" in last
    assert "in boom" in result.stderr  # the user's traceback is shown


def test_live_status_line_on_a_terminal(small_flow_module: Path) -> None:
    """On a terminal, ``run`` redraws one status line; with --quiet it does not."""

    def run_on_pty(*extra: str) -> str:
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.run", f"{FLOWS}:flow", "-w", "2", *extra],
            env=_env(),
            stdout=follower,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(follower)
        output = b""
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and output.count(b"\r") < 3:
                ready, _, _ = select.select([leader], [], [], 0.5)
                if ready:
                    try:
                        output += os.read(leader, 4096)
                    except OSError:
                        break
                if extra and time.monotonic() > deadline - 27:
                    break  # quiet: three seconds of silence is enough
        finally:
            os.killpg(process.pid, 2)
            process.wait(20)
            os.close(leader)
        return output.decode(errors="replace")

    shown = run_on_pty()
    assert shown.count("\r") >= 3
    status = shown.split("\r")[-1]
    assert "epoch" in status and "cpu" in status and "ring full waits" in status
    assert "/s" in status
    assert run_on_pty("--quiet") == ""


def test_no_status_line_when_not_a_terminal(small_flow_module: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine.run", str(small_flow_module)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "\r" not in result.stdout
    assert "epoch" not in result.stdout


def test_shmflow_command_dispatches(capsys) -> None:
    assert cli.main(["run", "no_such_module_xyz"]) == 2
    assert "cannot import module" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "run IMPORT_STR" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err
    assert cli.main([]) == 2


def test_restarts_resume_from_the_store_after_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "flaky.py"
    marker = tmp_path / "failed-once"
    out = tmp_path / "out.txt"
    path.write_text(
        "import pathlib\n"
        "import engine.operators as op\n"
        "from engine.connectors.files import FileSink\n"
        "from engine.dataflow import Dataflow\n"
        "from engine.testing import TestingSource\n"
        f"MARKER = pathlib.Path({str(marker)!r})\n"
        "def fail_once(kv):\n"
        "    if kv[1] == 5 and not MARKER.exists():\n"
        "        MARKER.touch()\n"
        "        raise RuntimeError('transient failure')\n"
        "    return kv\n"
        "flow = Dataflow('flaky')\n"
        "s = op.input('inp', flow, TestingSource([('k', i) for i in range(10)]))\n"
        "s = op.map('fail_once', s, fail_once)\n"
        "s = op.map_value('fmt', s, str)\n"
        f"op.output('out', s, FileSink(pathlib.Path({str(out)!r})))\n"
    )
    store = tmp_path / "store"
    assert (
        subprocess.run(
            [sys.executable, "-m", "recovery", "init", str(store)], env=_env(), timeout=60
        ).returncode
        == 0
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.run",
            str(path),
            "-w",
            "2",
            "-r",
            str(store),
            "-s",
            "0",
            "--restarts",
            "2",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "transient failure" in result.stderr
    assert "restart 1 of 2" in result.stderr
    assert out.read_text().split() == [str(i) for i in range(10)]  # FileSink: exactly once
    inspected = subprocess.run(
        [sys.executable, "-m", "recovery", "inspect", "--json", str(store)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(json.loads(inspected.stdout)["executions"]) == 2


def test_restarts_need_a_recovery_directory(capsys) -> None:
    assert run_module.main(["engine.examples.wordcount", "--restarts", "2"]) == 2
    assert "need -r" in capsys.readouterr().err


def test_drop_state_needs_a_recovery_directory(capsys: pytest.CaptureFixture[str]) -> None:
    status = run_module.main(["engine.examples.wordcount:flow", "--drop-state", "f.sum"])
    assert status == 2
    assert "--drop-state need -r" in capsys.readouterr().err


def test_drop_state_reaches_the_recovery_config() -> None:
    from engine.tools import run as run_tool

    args = run_tool.build_parser().parse_args(
        ["f:flow", "-r", "state/", "--drop-state", "f.a", "--drop-state", "f.b"]
    )
    config = run_tool._recovery_config(args)
    assert config is not None
    assert config.drop_state == frozenset({"f.a", "f.b"})
