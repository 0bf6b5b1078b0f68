"""Classes defined in a flow file or a script cross workers and go into snapshots.

Flows are loaded the three ways users load them: by file path (``python -m engine.run
flow.py``), by module name (``python -m engine.run mod:flow``) and as a script that
calls ``cluster_main`` at module level (its ``__main__``). Each item is a dataclass
defined in that file; it crosses workers at the keyed step and is the keyed state, so
it is also snapshotted, and a resume in a new process loads it back. Worker
tracebacks show the user's file, line and source text.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FLOW = textwrap.dedent(
    """
    from dataclasses import dataclass

    import engine.operators as op
    from engine.connectors.stdio import StdOutSink
    from engine.dataflow import Dataflow
    from engine.testing import TestingSource


    @dataclass(frozen=True)
    class Search:
        user: str
        clicks: int


    @dataclass
    class Tally:
        searches: int = 0
        clicks: int = 0


    def tally(state, search):
        state = state or Tally()
        state = Tally(state.searches + 1, state.clicks + search.clicks)
        return state, (search.user, state.searches, state.clicks)


    SEARCHES = [Search(u, c) for u, c in [("ann", 1), ("bob", 2), ("ann", 3), ("cy", 0)]]
    flow = Dataflow("searches")
    events = op.input("inp", flow, TestingSource(SEARCHES + [TestingSource.EOF()] + SEARCHES))
    keyed = op.key_on("user", events, lambda s: s.user)
    out = op.stateful_map("tally", keyed, tally)
    op.output("out", op.map("fmt", out, lambda kv: "%s %d %d" % kv[1]), StdOutSink())
    """
)

FIRST_RUN = ["ann 1 1", "ann 2 4", "bob 1 2", "cy 1 0"]
RESUMED = ["ann 3 5", "ann 4 8", "bob 2 4", "cy 2 0"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return sorted(line for line in result.stdout.splitlines() if line)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_flow_file_s_classes_cross_workers_and_resume_from_snapshots(
    tmp_path: Path, workers: int
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    store = tmp_path / "store"
    init = _run(["-m", "recovery", "init", str(store)], tmp_path)
    assert init.returncode == 0, init.stderr
    run = ["-m", "engine.run", "flow.py", "-w", str(workers), "-r", str(store), "-s", "0"]
    assert _lines(_run(run, tmp_path)) == FIRST_RUN
    # A new process, possibly another worker count: the Tally states load back.
    resumed = [*run[:4], str(3 - workers), *run[5:]]
    assert _lines(_run(resumed, tmp_path)) == RESUMED


def test_a_module_flow_s_classes_cross_workers(tmp_path: Path) -> None:
    (tmp_path / "search_flow.py").write_text(FLOW)
    result = _run(["-m", "engine.run", "search_flow:flow", "-w", "2"], tmp_path)
    assert _lines(result) == FIRST_RUN


def test_a_script_s_classes_cross_workers(tmp_path: Path) -> None:
    script = FLOW + textwrap.dedent(
        """
        from engine.testing import cluster_main

        # At module level, no __main__ guard: workers must not run this file again.
        cluster_main(flow, [], 0, worker_count_per_proc=2)
        """
    )
    (tmp_path / "script.py").write_text(script)
    assert _lines(_run(["script.py"], tmp_path)) == FIRST_RUN


def test_worker_tracebacks_show_the_user_s_file_line_and_source(tmp_path: Path) -> None:
    failing = FLOW.replace('lambda kv: "%s %d %d" % kv[1]', 'lambda kv: "%s %d %d" % kv[1] + None')
    path = tmp_path / "flow.py"
    path.write_text(failing)
    line = next(n for n, text in enumerate(failing.splitlines(), 1) if "+ None" in text)
    result = _run(["-m", "engine.run", "flow.py", "-w", "2"], tmp_path)
    assert result.returncode == 1
    assert f'File "{path}", line {line}, in <lambda>' in result.stderr
    assert "% kv[1] + None" in result.stderr  # the source text of that line
    assert "<dynamic-code>" not in result.stderr
