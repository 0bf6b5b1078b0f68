"""Real resource limits (FAULTS rows 8 and 15): a full disk under the store, a small /dev/shm.

Each test runs a script in a private mount namespace (``unshare --mount``) on a small
tmpfs, so nothing is mounted on the host and the mount goes away with the script. That
needs root (or the right capabilities); the tests skip with the reason otherwise.

- Row 8, disk full: a flow whose state outgrows a 2 MiB store fails with one
  ``EngineRuntimeError`` caused by ``StoreFullError`` ("disk full on PATH", free vs
  total bytes); the store still verifies and holds the last commit; after the tmpfs is
  remounted bigger, a new execution resumes and completes, and every input item is
  reflected in the output (lost == 0) with the same final state as a fault-free run.
- Row 15, /dev/shm too small: ``run_flow(flow, workers=2)`` on a 1 MiB /dev/shm fails
  at start naming needed vs available bytes; no SIGBUS, no worker left, no segment left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Bound on each script (a hang is a failure, not a stuck test run).
SCRIPT_TIMEOUT_S = 120.0
STARTED = "script started"

DISK_FULL_SCRIPT = """
import json, subprocess, sys
from datetime import timedelta

import engine.operators as op
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.testing import TestingSink, TestingSource, run_main
from recovery import RecoveryConfig, RecoveryStore, StoreFullError, init_db_dir, verify_store

print("script started", flush=True)
mount = sys.argv[1]
store = f"{mount}/store"
KEYS, PER_KEY, PAD = 40, 8, 2000
items = [(f"k{i % KEYS}", i) for i in range(KEYS * PER_KEY)]


def keep(state, value):
    state = [*(state or []), "x" * PAD + str(value)]  # grows: outgrows 2 MiB of snapshots
    return state, (value, len(state))


def flow(out):
    flow = Dataflow("disk_full")
    s = op.input("inp", flow, TestingSource(items, batch_size=1))
    op.output("out", op.stateful_map("keep", s, keep), TestingSink(out))
    return flow


init_db_dir(store)
config = RecoveryConfig(store)
first, second, report = [], [], {}
try:
    run_main(flow(first), epoch_interval=timedelta(0), recovery_config=config)
except EngineRuntimeError as error:
    report["error"] = str(error)
    report["cause"] = type(error.__cause__).__name__
else:
    report["error"] = None
with RecoveryStore.open(store) as opened:
    report["resume_epoch"] = opened.next_resume_epoch()
verify_store(store)  # raises if the failed commit damaged anything
report["verified"] = True
subprocess.run(["mount", "-o", "remount,size=64m", mount], check=True)
run_main(flow(second), epoch_interval=timedelta(0), recovery_config=config)
report.update(items=len(items), first=first, second=second)
print(json.dumps(report))
"""

SMALL_SHM_SCRIPT = """
import json, os, time
from datetime import timedelta

import psutil

import engine.operators as op
from engine import run_flow
from engine.dataflow import Dataflow
from engine.testing import TestingSink, TestingSource

print("script started", flush=True)
flow = Dataflow("small_shm")
s = op.input("inp", flow, TestingSource([(f"k{i}", i) for i in range(100)]))
op.output("out", op.stateful_map("sum", s, lambda st, v: ((st or 0) + v, v)), TestingSink([]))
started = time.monotonic()
report = {"error": None}
try:
    run_flow(flow, workers=2, epoch_interval=timedelta(0))
except Exception as error:
    chain, cause = [], error
    while cause is not None:
        chain.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    report.update(error=str(error), chain=chain)
report["seconds"] = time.monotonic() - started
report["segments_left"] = [n for n in os.listdir("/dev/shm") if n.startswith("shmflow-")]
report["children_left"] = [p.pid for p in psutil.Process().children(recursive=True)]
print(json.dumps(report))
"""


def _in_private_tmpfs(mountpoint: str, size: str, script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` with a fresh ``size`` tmpfs on ``mountpoint`` in its own namespace."""
    env = {k: v for k, v in os.environ.items() if k != "SHMFLOW_SHM_DIR"}
    env["PYTHONPATH"] = str(REPO)
    command = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'mount -t tmpfs -o size={size} tmpfs {mountpoint} && exec "$0" "$@"',
        sys.executable,
        "-c",
        script,
        *args,
    ]
    try:
        child = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=SCRIPT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as error:
        pytest.skip(f"no unshare command: {error}")
    if STARTED not in child.stdout:
        pytest.skip(f"cannot mount a private tmpfs (needs root): {child.stderr.strip()}")
    assert child.returncode == 0, f"script failed (status {child.returncode}):\n{child.stderr}"
    return json.loads(child.stdout.splitlines()[-1])


@pytest.mark.slow
def test_disk_full_under_the_store_keeps_the_last_commit_and_a_rerun_completes(
    tmp_path: Path,
) -> None:
    mount = tmp_path / "small_disk"
    mount.mkdir()
    report = _in_private_tmpfs(str(mount), "2m", DISK_FULL_SCRIPT, str(mount))
    error = report["error"]
    assert error is not None, "the state fit into 2 MiB: make it grow more"
    assert report["cause"] == "StoreFullError"
    assert f"disk full on {mount}/store (" in error and " free of " in error, error
    assert "data.mdb is" in error and "the last committed epoch is intact" in error, error
    assert "could not commit its snapshots before epoch" in error  # names worker and epoch
    assert report["verified"] and report["resume_epoch"] > 1
    outputs = report["first"] + report["second"]  # [key, [value, state length]]
    assert report["first"] and report["second"]
    lost = set(range(report["items"])) - {value for _key, (value, _length) in outputs}
    assert not lost, f"lost {len(lost)} items"
    final: dict[str, int] = {}
    for key, (_value, length) in outputs:
        final[key] = max(final.get(key, 0), length)
    assert final == {f"k{k}": report["items"] // 40 for k in range(40)}  # as fault-free


@pytest.mark.slow
def test_too_small_dev_shm_fails_at_start_naming_needed_and_available() -> None:
    report = _in_private_tmpfs("/dev/shm", "1m", SMALL_SHM_SCRIPT)
    error = report["error"]
    assert error is not None, "the run fit into a 1 MiB /dev/shm"
    assert "ShmFull" in report["chain"], report["chain"]
    assert "not enough shared memory in /dev/shm: needed" in error, error
    assert "available" in error and "--shm-size" in error, error
    assert report["segments_left"] == [] and report["children_left"] == []
    assert report["seconds"] < 10
