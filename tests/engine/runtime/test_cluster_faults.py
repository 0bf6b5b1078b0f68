"""Faults of the multi-process runtime (FAULTS.md), each with real worker processes.

Every test is bounded by pytest-timeout; the autouse fixture in tests/conftest.py fails
any test that leaves a child process or a /dev/shm segment behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

import engine.operators as op
import engine.runtime.supervisor as cluster_module
from engine import run_flow
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError, ItemTypeError
from engine.testing import TestingSink, TestingSource, cluster_main
from shm import ShmFull, cleanup_stale
from tests.engine.cluster_flows import endless_flow

REPO = Path(__file__).resolve().parents[3]
FLOWS = Path(__file__).parents[1] / "cluster_flows.py"
ZERO = timedelta(0)


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (an observation, not a sleep for ordering) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def _workers_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


# -- FAULTS row 1: unpicklable flow --------------------------------------------------------


def test_unpicklable_flow_fails_before_any_worker_starts(monkeypatch) -> None:
    started: list[int] = []
    monkeypatch.setattr(
        cluster_module, "_start_worker", lambda *a: started.append(1) or pytest.fail("started")
    )
    lock = threading.Lock()
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([1]))
    op.output("out", op.map("uses_lock", s, lambda x: (lock, x)), TestingSink([]))
    with pytest.raises(EngineRuntimeError, match=r"step 'f\.uses_lock\.flat_map_batch'") as info:
        run_flow(flow, workers=2)
    assert "lock" in str(info.value)
    assert "picklable" in str(info.value)
    assert started == []


# -- FAULTS row 2: unpicklable item at an exchange ------------------------------------------


def test_unpicklable_item_at_exchange_names_step_worker_epoch() -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([f"k{i}" for i in range(20)], batch_size=20))
    keyed = op.map("attach_lock", s, lambda k: (k, threading.Lock()))
    op.output("out", op.stateful_map("keep", keyed, lambda st, v: (1, 1)), TestingSink([]))
    with pytest.raises(EngineRuntimeError) as info:
        cluster_main(flow, [], 0, worker_count_per_proc=2, epoch_interval=ZERO)
    message = str(info.value)
    assert "f.keep.stateful_batch" in message
    assert "worker 0" in message
    assert "epoch 1" in message
    assert "lock" in message
    assert "picklable" in message


# -- FAULTS row 4: user exception in one worker ---------------------------------------------


def test_user_exception_in_one_worker_stops_all_and_names_it() -> None:
    def explode(state: int | None, value: int) -> tuple[int, int]:
        if value == 13:
            raise ValueError("thirteen is unlucky")
        return (state or 0) + value, value

    flow = Dataflow("f")
    items = [(f"key{i % 5}", i) for i in range(40)]
    s = op.input("inp", flow, TestingSource(items, batch_size=4))
    op.output("out", op.stateful_map("unlucky", s, explode), TestingSink([]))
    with pytest.raises(EngineRuntimeError) as info:
        cluster_main(flow, [], 0, worker_count_per_proc=3, epoch_interval=ZERO)
    err = info.value
    assert "f.unlucky" in str(err)
    assert "thirteen is unlucky" in str(err)
    assert err.worker_index in (0, 1, 2)
    assert err.epoch == 4  # the 4th batch holds 12..15
    assert isinstance(err.__cause__, ValueError)
    # The worker's traceback travels along, readable.
    assert "explode" in str(err.__cause__.__cause__)


def test_item_type_error_in_a_worker_is_a_type_error() -> None:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource([("a", 1), ["not", "a tuple"]], batch_size=2))
    op.output("out", op.stateful_map("sm", s, lambda st, v: (st, v)), TestingSink([]))
    with pytest.raises(TypeError, match=r"step 'f\.sm\.stateful_batch' is keyed") as info:
        cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert isinstance(info.value, ItemTypeError)


# -- FAULTS row 5: item larger than a ring --------------------------------------------------


def test_item_larger_than_a_ring_is_delivered() -> None:
    big = np.arange(200_000, dtype=np.float64)  # 1.6 MB through 64 KiB rings
    items = [(f"k{i}", big * i) for i in range(4)]
    out: list[Any] = []
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(items, batch_size=4))
    totals = op.stateful_map("sum", s, lambda st, v: (None, float(v.sum())))
    op.output("out", totals, TestingSink(out))
    run_flow(flow, workers=2, ring_capacity=64 * 1024)
    assert sorted(out) == sorted((f"k{i}", float((big * i).sum())) for i in range(4))


# -- FAULTS row 6: a worker killed with SIGKILL ---------------------------------------------


def test_sigkilled_worker_fails_the_run_quickly_and_cleanly() -> None:
    out: list[Any] = []
    flow = endless_flow(out)
    killed: list[int] = []

    def kill_a_worker() -> None:
        _wait_until(lambda: len(out) > 20, 30, "the cluster to produce output")
        victim = _workers_of(os.getpid())[-1]
        killed.append(victim.pid)
        killed.append(int(time.monotonic() * 1000))
        victim.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    with pytest.raises(EngineRuntimeError) as info:
        run_flow(flow, workers=3, epoch_interval=timedelta(milliseconds=100))
    noticed_ms = time.monotonic() * 1000 - killed[1]
    killer.join(5)
    message = str(info.value)
    assert f"(pid {killed[0]}) was killed by signal 9 (SIGKILL) at epoch" in message
    assert noticed_ms < 3000  # FAULTS: noticed within ~1 s (slack for a loaded CI box)


# -- FAULTS row 7: the supervisor killed with SIGKILL ---------------------------------------


def test_workers_exit_when_the_supervisor_is_killed() -> None:
    supervisor = subprocess.Popen(
        [sys.executable, str(FLOWS), "2"], env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert supervisor.stdout is not None
        pid = int(supervisor.stdout.readline())
        _wait_until(lambda: len(_workers_of(pid)) == 2, 30, "two workers")
        workers = _workers_of(pid)
        _wait_until(
            lambda: any(n.startswith(f"shmflow-{pid}-") for n in os.listdir("/dev/shm")),
            30,
            "the run's segments",
        )
        segments = {n for n in os.listdir("/dev/shm") if n.startswith(f"shmflow-{pid}-")}
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(10)
        # They notice within about a second; the bound is generous for a busy machine.
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == [], f"workers outlived their supervisor: {alive}"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        assert supervisor.stdout is not None
        supervisor.stdout.close()
    # The dead supervisor could not unlink its segments; cleanup_stale finds them. Any
    # other shmflow run starting on this machine meanwhile may have cleaned some of them
    # first (every run cleans stale segments at start): those are gone already.
    # Either way none may be left once cleanup_stale() returns.
    assert segments, "the run had segments before it was killed"
    cleanup_stale()
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"shmflow-{pid}-")]


# -- FAULTS row 12: Ctrl-C --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "whole_group", "status", "message"),
    [
        (signal.SIGINT, True, 130, "shmflow: interrupted; all workers stopped"),
        (signal.SIGTERM, False, 143, "shmflow: stopped by SIGTERM; all workers stopped"),
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_stopping_engine_run_exits_cleanly_with_one_message(
    signum: int, whole_group: bool, status: int, message: str
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.run", f"{FLOWS}:flow", "-w", "2"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        _wait_until(lambda: len(_workers_of(process.pid)) == 2, 30, "two workers")
        _wait_until(
            lambda: any(n.startswith(f"shmflow-{process.pid}-") for n in os.listdir("/dev/shm")),
            30,
            "the run's segments",
        )
        workers = _workers_of(process.pid)
        if whole_group:
            os.killpg(process.pid, signum)  # what Ctrl-C does: the whole foreground group
        else:
            os.kill(process.pid, signum)  # e.g. a service manager stopping the supervisor
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == status
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [message]
    _, alive = psutil.wait_procs(workers, timeout=3)
    assert alive == []
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"shmflow-{process.pid}-")]


def test_keyboard_interrupt_from_cluster_main() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.engine.cluster_flows import endless_flow
        from engine.testing import cluster_main
        print("ready", flush=True)
        try:
            cluster_main(endless_flow(), [], 0, worker_count_per_proc=2)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            raise SystemExit(7)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        _wait_until(lambda: len(_workers_of(process.pid)) == 2, 30, "two workers")
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 7
    assert stdout.strip() == "KeyboardInterrupt"
    assert "Traceback" not in stderr  # no per-worker tracebacks


# -- FAULTS row 15: /dev/shm too small --------------------------------------------------------


def test_too_small_shm_fails_at_start_with_sizes(monkeypatch) -> None:
    import errno

    real_fallocate = os.posix_fallocate

    def tiny_shm(fd: int, offset: int, length: int) -> None:
        if length > 1024 * 1024:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fallocate(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", tiny_shm)
    flow = Dataflow("f")
    op.output("out", op.input("inp", flow, TestingSource([1])), TestingSink([]))
    with pytest.raises(ShmFull, match=r"(?i)need.*avail") as info:
        run_flow(flow, workers=2, ring_capacity=8 * 1024 * 1024)
    assert "shm" in str(info.value).lower()


# -- FAULTS row 16: a worker stuck in user code ------------------------------------------------


def test_stall_timeout_names_the_stuck_step_and_epoch() -> None:
    def spin_forever(x: int) -> int:
        if x == 3:
            while True:
                pass
        return x

    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(range(10)))
    op.output("out", op.map("spin", s, spin_forever), TestingSink([]))
    started = time.monotonic()
    with pytest.raises(EngineRuntimeError, match="no progress") as info:
        run_flow(
            flow,
            workers=2,
            epoch_interval=ZERO,
            stall_timeout=timedelta(seconds=1),
        )
    assert time.monotonic() - started < 20
    assert "f.spin.flat_map_batch" in str(info.value)
    assert "epoch 4" in str(info.value)
    assert info.value.worker_index == 0


# -- scripts without a __main__ guard ---------------------------------------------------------


def test_script_without_main_guard_runs_once(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import engine.operators as op
            from engine.dataflow import Dataflow
            from engine.testing import TestingSink, TestingSource, cluster_main

            print("module body runs", flush=True)
            out = []
            flow = Dataflow("unguarded")
            pairs = op.input("inp", flow, TestingSource([("a", 1), ("b", 2), ("a", 3)]))
            op.output("out", op.reduce_final("sum", pairs, lambda x, y: x + y), TestingSink(out))
            cluster_main(flow, [], 0, worker_count_per_proc=2)
            print(sorted(out), flush=True)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["module body runs", "[('a', 4), ('b', 2)]"]


def test_addresses_are_rejected() -> None:
    flow = Dataflow("f")
    op.output("out", op.input("inp", flow, TestingSource([1])), TestingSink([]))
    with pytest.raises(ValueError, match="one machine"):
        cluster_main(flow, ["localhost:2101"], 0)
    with pytest.raises(ValueError, match="proc_id must be 0"):
        cluster_main(flow, [], 1)
    with pytest.raises(ValueError, match="workers must be a positive int"):
        run_flow(flow, workers=0)
