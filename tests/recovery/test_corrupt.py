"""Corrupted or truncated stores: a clear CorruptStoreError, never a crash of the caller.

Opening runs in a child process: if LMDB crashed on the file, the child would die by a
signal and the test would see it, instead of the test run dying.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recovery import CorruptStoreError, RecoveryStore, verify_store
from tests.recovery._procs import run_python

OPEN_AND_READ = """
import sys
from recovery import CorruptStoreError, RecoveryStore
try:
    with RecoveryStore.open(sys.argv[1]) as store:
        store.inspect()
        store.load_keyed_states("flow.count", range(16), 3)
except CorruptStoreError as error:
    print(f"CorruptStoreError: {error}")
else:
    print("opened")
"""


def _store_with_data(store_dir: Path) -> Path:
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("flow", "fp", worker_count=1, key_groups=16)
        snapshots = [("flow.count", f"key-{i}", 1, "v" * 50) for i in range(3000)]
        store.epoch_writer(1, 0).commit_epoch(2, snapshots)
    return store_dir / "data.mdb"


def _damage(data: Path, how: str) -> None:
    size = data.stat().st_size
    if how == "garbage":
        data.write_bytes(os.urandom(64 * 1024))
    elif how == "empty":
        data.write_bytes(b"")
    elif how == "truncated":
        os.truncate(data, size // 2)
    elif how == "garbage pages":
        with data.open("r+b") as file:
            file.seek(3 * 4096)
            file.write(os.urandom(size - 3 * 4096))


@pytest.mark.parametrize("how", ["garbage", "empty", "truncated", "garbage pages"])
def test_damaged_store_raises_corrupt_store_in_the_opener(store_dir: Path, how: str) -> None:
    _damage(_store_with_data(store_dir), how)
    child = run_python(OPEN_AND_READ, str(store_dir))
    assert child.returncode == 0, f"child died (status {child.returncode}): {child.stderr}"
    assert child.stdout.startswith("CorruptStoreError: recovery store"), child.stdout
    assert "restore it from a backup or start afresh" in child.stdout


def test_verify_store_finds_damage_without_handing_the_file_to_lmdb(store_dir: Path) -> None:
    data = _store_with_data(store_dir)
    verify_store(store_dir)  # intact
    _damage(data, "garbage pages")
    with pytest.raises(CorruptStoreError, match="is corrupted"):
        verify_store(store_dir)
