"""Key hashing: stable, well spread, and a store keeps the hash it was written with."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import lmdb
import pytest

import recovery._store as recovery_store
from recovery import (
    DEFAULT_KEY_GROUPS,
    DEFAULT_KEY_HASH,
    LEGACY_KEY_HASH,
    RecoveryError,
    RecoveryStore,
    group_owner,
    init_db_dir,
    key_group,
    key_hash_function,
    owned_groups,
)

GROUPS = DEFAULT_KEY_GROUPS


def _max_load(keys: list[str], workers: int, key_hash: str) -> float:
    """The busiest worker's share of ``keys`` times ``workers`` (1.0: perfectly even)."""
    owners = Counter(group_owner(key_group(k, GROUPS, key_hash), GROUPS, workers) for k in keys)
    return max(owners.values()) * workers / len(keys)


def test_similar_keys_spread_evenly_over_workers() -> None:
    # 200 URL paths differing in their digits: CRC-32 alone put 65% of them on one of
    # two workers (its bits are linear in the key's bits); the finaliser mixes them.
    paths = [f"/p{i}" for i in range(200)]
    assert _max_load(paths, 2, LEGACY_KEY_HASH) > 1.25
    for workers in (2, 3, 4):
        assert _max_load(paths, workers, DEFAULT_KEY_HASH) < 1.1


def test_groups_are_uniform_over_many_keys() -> None:
    keys = [f"word{i}" for i in range(40_000)]
    buckets = Counter(key_group(k, GROUPS) * 16 // GROUPS for k in keys)
    assert len(buckets) == 16
    assert all(2_000 <= n <= 3_000 for n in buckets.values()), buckets


def test_key_groups_are_stable_across_processes() -> None:
    # Python's hash() of a str is salted per process; ours must not be.
    keys = ["user-17", "é✓", "", "k" * 300]
    code = f"import sys, recovery\nprint([recovery.key_group(k, {GROUPS}) for k in {keys!r}])\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == str([key_group(k, GROUPS) for k in keys])


def test_unknown_key_hash_says_to_upgrade() -> None:
    with pytest.raises(ValueError, match=r"unknown key hash 'sha9'.*upgrade shmflow"):
        key_hash_function("sha9")


def _set_meta(db_dir: Path, name: bytes, value: bytes | None) -> None:
    """Edit a store's meta record directly (what an older or newer shmflow left)."""
    env = lmdb.open(str(db_dir), subdir=True, max_dbs=16, lock=True)
    try:
        meta = env.open_db(b"meta")
        with env.begin(write=True) as txn:
            if value is None:
                txn.delete(name, db=meta)
            else:
                txn.put(name, value, db=meta)
    finally:
        env.close()


def test_a_new_store_records_the_default_hash_and_places_state_by_it(tmp_path: Path) -> None:
    init_db_dir(tmp_path)
    keys = [f"/p{i}" for i in range(50)]
    with RecoveryStore.open(tmp_path) as store:
        execution = store.begin_execution("flow", "fp", worker_count=1)
        assert execution.key_hash == DEFAULT_KEY_HASH
        report = store.inspect()
        assert (report["key_hash"], report["format"]) == (DEFAULT_KEY_HASH, 4)
        store.epoch_writer(1, 0).commit_epoch(2, [("flow.s", k, 1, k) for k in keys])
        resumed = store.begin_execution("flow", "fp", worker_count=2)
        for worker in range(2):
            groups = owned_groups(worker, GROUPS, 2)
            share = store.load_keyed_states("flow.s", groups, resumed.resume_epoch)
            assert sorted(share) == sorted(
                k for k in keys if group_owner(key_group(k, GROUPS), GROUPS, 2) == worker
            )
            assert share  # both workers hold some of the 50 keys


def test_a_store_without_a_recorded_hash_keeps_crc32(tmp_path: Path) -> None:
    init_db_dir(tmp_path)
    keys = [f"/p{i}" for i in range(50)]
    with RecoveryStore.open(tmp_path) as store:
        store.begin_execution("flow", "fp", worker_count=1)
    _set_meta(tmp_path, b"key_hash", None)  # as a store written before the finaliser
    _set_meta(tmp_path, b"format", b"3")
    with RecoveryStore.open(tmp_path) as store:
        assert store.inspect()["key_hash"] == LEGACY_KEY_HASH
        assert [e.key_hash for e in store.executions()] == [LEGACY_KEY_HASH]
        store.epoch_writer(1, 0).commit_epoch(2, [("flow.s", k, 1, k) for k in keys])
        resumed = store.begin_execution("flow", "fp", worker_count=2)
        assert resumed.key_hash == LEGACY_KEY_HASH
        for worker in range(2):
            groups = owned_groups(worker, GROUPS, 2)
            share = store.load_keyed_states("flow.s", groups, resumed.resume_epoch)
            assert all(key_group(k, GROUPS, LEGACY_KEY_HASH) in groups for k in share)
        report = store.inspect()
        assert (report["key_hash"], report["format"]) == (LEGACY_KEY_HASH, 3)  # kept


def test_a_store_naming_an_unknown_hash_is_refused(tmp_path: Path) -> None:
    init_db_dir(tmp_path)
    with RecoveryStore.open(tmp_path) as store:
        store.begin_execution("flow", "fp", worker_count=1)
    _set_meta(tmp_path, b"key_hash", b"from-the-future")
    refused = pytest.raises((ValueError, RecoveryError), match="unknown key hash 'from-the-fu")
    with RecoveryStore.open(tmp_path) as store, refused:
        store.begin_execution("flow", "fp", worker_count=1)


def test_an_old_format_store_that_never_ran_takes_the_new_hash_and_format(
    tmp_path: Path,
) -> None:
    # Initialised by an older shmflow (format 3), first executed by this one: nothing is
    # placed yet, so it uses the default hash, and becomes format 4 so that an older
    # shmflow (which would route by plain CRC-32) refuses it.
    init_db_dir(tmp_path)
    _set_meta(tmp_path, b"format", b"3")
    with RecoveryStore.open(tmp_path) as store:
        assert store.begin_execution("flow", "fp", worker_count=1).key_hash == DEFAULT_KEY_HASH
        report = store.inspect()
        assert (report["key_hash"], report["format"]) == (DEFAULT_KEY_HASH, 4)


@pytest.mark.parametrize("cache_keys", [1 << 20, 3])
def test_keys_committed_again_stay_in_their_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_keys: int
) -> None:
    # The writer remembers each key's group; a key committed in several epochs (and
    # keys seen after the memory was cleared) must land where the hash puts it.
    monkeypatch.setattr(recovery_store, "GROUP_CACHE_KEYS", cache_keys)
    init_db_dir(tmp_path)
    keys = [f"/p{i}" for i in range(40)]
    with RecoveryStore.open(tmp_path) as store:
        store.begin_execution("flow", "fp", worker_count=1)
        writer = store.epoch_writer(1, 0)
        for epoch in (1, 2, 3):
            writer.commit_epoch(epoch + 1, [("flow.s", k, epoch, (k, epoch)) for k in keys])
        resumed = store.begin_execution("flow", "fp", worker_count=3)
        for worker in range(3):
            groups = owned_groups(worker, GROUPS, 3)
            share = store.load_keyed_states("flow.s", groups, resumed.resume_epoch)
            owned = [k for k in keys if key_group(k, GROUPS) in groups]
            assert share == {k: (k, 3) for k in owned}
