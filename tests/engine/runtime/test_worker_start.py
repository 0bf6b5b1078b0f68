"""Starting worker processes: all start before any is sent its (possibly big) plan."""

from __future__ import annotations

from typing import Any

import pytest

import engine.operators as op
import engine.runtime.supervisor as supervisor
from engine import run_flow
from engine.dataflow import Dataflow
from engine.testing import TestingSink, TestingSource


def _big_flow(out: list[Any]) -> Dataflow:
    # ~24 MB of items in the plan: far more than a socket buffer, so sending a plan
    # blocks until the worker has started and read it.
    items = [bytes([i]) * 3_000_000 for i in range(8)]
    flow = Dataflow("big")
    s = op.input("inp", flow, TestingSource(items))
    op.output("out", op.map("size", s, len), TestingSink(out))
    return flow


def test_every_worker_starts_before_any_plan_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    start = supervisor._start_worker

    def recording_start(index: int) -> Any:
        worker = start(index)
        events.append(f"start {index}")
        send = worker.conn.send

        def recording_send(obj: Any) -> None:
            events.append(f"send {index}")
            send(obj)

        worker.conn.send = recording_send
        return worker

    monkeypatch.setattr(supervisor, "_start_worker", recording_start)
    out: list[Any] = []
    run_flow(_big_flow(out), workers=2)
    assert events == ["start 0", "start 1", "send 0", "send 1"]
    assert sorted(out) == [3_000_000] * 8


# -- what start-up costs: modules a run without recovery does not need ----------------------


def _loaded(names: tuple[str, ...]) -> Any:
    def which(_item: Any) -> tuple[str, ...]:
        import sys

        return tuple(name for name in names if name in sys.modules)

    return which


HEAVY = ("lmdb", "numpy", "psutil")


def test_a_worker_without_recovery_imports_no_lmdb_numpy_or_psutil() -> None:
    # Each of them costs a worker 15-60 ms of start-up, on every run.
    out: list[Any] = []
    flow = Dataflow("light")
    s = op.input("inp", flow, TestingSource([0, 1]))
    op.output("out", op.map("loaded", s, _loaded(HEAVY)), TestingSink(out))
    run_flow(flow, workers=2)
    assert out == [(), ()]


def _script_output(body: str) -> tuple[str, str]:
    """What a script building a flow prints (stdout, stderr), run in a fresh interpreter
    (this test process's modules stay out of its plan)."""
    import subprocess
    import sys

    script = (
        "import operator, sys\n"
        "import engine.operators as op\n"
        "from engine import run_flow\n"
        "from engine.dataflow import Dataflow\n"
        "from engine.testing import TestingSink, TestingSource\n"
        "out = []\n"
        "flow = Dataflow('light')\n"
    ) + body
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip(), done.stderr


def test_a_worker_imports_only_what_its_flow_needs() -> None:
    # Its control connection speaks multiprocessing's framing itself, and the recovery
    # key hash takes blake2b from the builtin module: multiprocessing.connection (with
    # tempfile, shutil, socket, subprocess) and hashlib (OpenSSL) cost a worker ~20 ms.
    # The `shm` package imports its in-process reference ring only when it is used
    # (~5 ms), the worker the window kernel only for a flow with a window step (~7 ms),
    # `engine.operators` the operators a flow uses (join, enrich, collect: ~3 ms).
    printed, errors = _script_output(
        "NAMES = ('multiprocessing', 'hashlib', '_hashlib', 'tempfile', 'subprocess',\n"
        "         'shm._reference', 'engine.runtime.nodes.window',\n"
        "         'engine.operators._join', 'engine.operators._enrich',\n"
        "         'engine.operators._collect')\n"
        "def loaded(item):\n"
        "    return [name for name in NAMES if name in sys.modules]\n"
        "keyed = op.key_on('key', op.input('inp', flow, TestingSource(['a', 'b'])), str)\n"
        "counts = op.count_final('count', keyed, operator.itemgetter(0))\n"
        "op.output('out', op.map('loaded', counts, loaded), TestingSink(out))\n"
        "run_flow(flow, workers=2)\n"
        "print(out)\n"
    )
    assert printed == "[[], []]", errors


def test_a_worker_running_a_builtin_benchmark_flow_imports_no_numpy() -> None:
    # The flows of `shmflow bench` and bench/ live in engine.tools.flows, which the
    # worker imports to unpickle their sources and sinks: numpy there cost every
    # worker ~60 ms, half the start-up of a 2-worker run.
    from engine.tools.flows import ListSource

    out: list[Any] = []
    flow = Dataflow("builtin")
    s = op.input("inp", flow, ListSource([0, 1], partitions=2))
    op.output("out", op.map("loaded", s, _loaded(("engine.tools.flows", *HEAVY))), TestingSink(out))
    run_flow(flow, workers=2)
    assert out == [("engine.tools.flows",)] * 2


def test_the_caller_reads_the_run_summary_without_numpy() -> None:
    # The summary used to read the counters through numpy: ~60 ms at the end of a run
    # of a script that does not use numpy itself.
    printed, errors = _script_output(
        "op.output('out', op.input('inp', flow, TestingSource([1, 2])), TestingSink(out))\n"
        "summary = run_flow(flow, workers=2)\n"
        "assert sorted(out) == [1, 2] and summary.items_in == 2, (out, summary)\n"
        "print(sorted(m for m in ('numpy', 'lmdb') if m in sys.modules))\n"
    )
    assert printed == "[]", errors
