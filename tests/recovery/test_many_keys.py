"""Many keys through the runtime: a worker killed with SIGKILL mid-run, a resume, the state
equal to a fault-free run's; the supervisor's loop going on while a GC works."""

from __future__ import annotations

import signal
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

import engine.runtime.supervisor as supervisor
from bench.bench_many_keys import (
    STATE_STEP,
    Shape,
    hot_rounds_done,
    many_keys_flow,
    run_many_keys,
    stored_states,
)
from engine import run_flow
from recovery import RecoveryConfig, RecoveryError, RecoveryStore, init_db_dir, verify_store
from tests.recovery._procs import start_python

#: The supervisor of the run that gets a worker killed: a child process of the test.
SUPERVISOR = textwrap.dedent(
    """
    import sys
    from datetime import timedelta
    from pathlib import Path
    from bench.bench_many_keys import Shape, run_many_keys
    keys, hot_rounds, pace_s, interval_s = map(float, sys.argv[2:6])
    shape = Shape(keys=int(keys), hot_rounds=int(hot_rounds), pace_s=pace_s)
    run_many_keys(Path(sys.argv[1]), shape, epoch_interval=timedelta(seconds=interval_s))
    """
)


def _kill_a_worker_then_resume(
    tmp_path: Path, shape: Shape, interval_s: float, deadline_s: float
) -> None:
    store_dir = tmp_path / "store"
    init_db_dir(store_dir)
    args = (str(shape.keys), str(shape.hot_rounds), str(shape.pace_s), str(interval_s))
    child = start_python(SUPERVISOR, str(store_dir), *args)
    try:
        with RecoveryStore.open(store_dir) as store:
            deadline = time.monotonic() + deadline_s
            while hot_rounds_done(store, shape) < 2:  # every key has state on disk
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the first run made no progress"
                time.sleep(0.1)
        workers = psutil.Process(child.pid).children()
        assert len(workers) == 2
        workers[1].send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode != 0
    assert "killed by signal 9" in err, err
    summary = run_many_keys(store_dir, shape, epoch_interval=timedelta(seconds=interval_s))
    assert summary is not None and summary.workers_ready_s is not None
    assert stored_states(store_dir) == shape.expected_states()  # as a fault-free run
    with RecoveryStore.open(store_dir) as store:
        report = store.inspect()
    assert report["steps"][STATE_STEP]["snapshots"] == shape.keys  # compacted to one each
    assert report["gc_index_records"] == 0
    assert verify_store(store_dir).snapshots == shape.keys + 2  # and the 2 partitions


@pytest.mark.timeout(300)
def test_200k_keys_survive_a_killed_worker(tmp_path: Path) -> None:
    shape = Shape(keys=200_000, hot_keys=1_000, hot_rounds=8, pace_s=0.3)
    _kill_a_worker_then_resume(tmp_path, shape, interval_s=0.25, deadline_s=120)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_5m_keys_survive_a_killed_worker(tmp_path: Path) -> None:
    shape = Shape(keys=5_000_000, hot_keys=1_000, hot_rounds=8, pace_s=1.0)
    _kill_a_worker_then_resume(tmp_path, shape, interval_s=1.0, deadline_s=1800)


def test_the_supervisor_loop_goes_on_while_a_gc_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GC that takes long must not hold up the loop: statuses keep coming meanwhile.

    The GC blocks until the loop has reported 3 statuses; were it run by the loop
    itself, no status would come and the GC would give up (failing the run).
    """
    monkeypatch.setattr(supervisor, "GC_INTERVAL_S", 0.05)
    in_gc, release = threading.Event(), threading.Event()
    statuses_during_gc = 0
    real_gc = RecoveryStore.gc

    def slow_gc(self: RecoveryStore, *args: Any, **kwargs: Any) -> Any:
        if not release.is_set():
            in_gc.set()
            if not release.wait(30):
                raise AssertionError("the supervisor loop stalled while a GC ran")
        return real_gc(self, *args, **kwargs)

    def on_status(status: Any) -> None:
        nonlocal statuses_during_gc
        if in_gc.is_set() and not release.is_set():
            statuses_during_gc += 1
            if statuses_during_gc >= 3:
                release.set()

    monkeypatch.setattr(RecoveryStore, "gc", slow_gc)
    shape = Shape(keys=10_000, hot_keys=100, hot_rounds=10, pace_s=0.3)
    init_db_dir(tmp_path / "store")
    run_flow(
        many_keys_flow(shape),
        workers=2,
        epoch_interval=timedelta(seconds=0.1),
        recovery_config=RecoveryConfig(tmp_path / "store"),
        on_status=on_status,
    )
    assert release.is_set() and statuses_during_gc >= 3
    assert stored_states(tmp_path / "store") == shape.expected_states()


def test_a_failed_background_gc_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "GC_INTERVAL_S", 0.05)

    def failing_gc(self: RecoveryStore, *args: Any, **kwargs: Any) -> Any:
        raise RecoveryError("the GC broke")

    monkeypatch.setattr(RecoveryStore, "gc", failing_gc)
    init_db_dir(tmp_path / "store")
    shape = Shape(keys=1_000, hot_keys=10, hot_rounds=10, pace_s=0.3)
    with pytest.raises(RecoveryError, match="the GC broke"):
        run_many_keys(tmp_path / "store", shape, epoch_interval=timedelta(seconds=0.1))
