"""Store round trips: executions, resume epochs, commits, loads (with rescaling), GC."""

from __future__ import annotations

import errno
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Any

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recovery import (
    TOMBSTONE,
    Execution,
    FlowMismatchError,
    InconsistentPartitionsError,
    MissingPartitionsError,
    NoPartitionsError,
    RecoveryConfig,
    RecoveryError,
    RecoveryStore,
    StaleExecutionError,
    StoreFullError,
    UnpicklableStateError,
    gc_plan,
    group_owner,
    init_db_dir,
    key_group,
    owned_groups,
)
from recovery._env import translate_errors

STEP = "flow.count"
SOURCE = "flow.inp"
GROUPS = 16


def all_groups(store: RecoveryStore, step: str, resume: int) -> dict[str, Any]:
    return store.load_keyed_states(step, range(GROUPS), resume)


def test_init_is_idempotent_and_count_is_ignored(tmp_path: Path) -> None:
    init_db_dir(tmp_path / "a" / "b", count=5)
    init_db_dir(tmp_path / "a" / "b")
    with RecoveryStore.open(tmp_path / "a" / "b") as store:
        assert store.executions() == []
        assert store.next_resume_epoch() == 1
    with pytest.raises(ValueError, match="count"):
        init_db_dir(tmp_path / "c", count=0)


def test_open_without_a_store_raises_no_partitions(tmp_path: Path) -> None:
    with pytest.raises(NoPartitionsError, match="python -m recovery init"):
        RecoveryStore.open(tmp_path / "missing")
    with pytest.raises(NoPartitionsError):
        RecoveryStore.open(tmp_path)


def test_store_missing_a_sub_database_raises_missing_partitions(tmp_path: Path) -> None:
    with lmdb.open(str(tmp_path), max_dbs=4) as env:
        meta = env.open_db(b"meta")
        with env.begin(write=True) as txn:
            txn.put(b"format", b"1", db=meta)
    with pytest.raises(MissingPartitionsError, match="executions, frontiers, snapshots"):
        RecoveryStore.open(tmp_path)


def test_begin_execution_numbers_executions_and_records_the_flow(store: RecoveryStore) -> None:
    first = store.begin_execution("flow", "fp", worker_count=2, key_groups=GROUPS)
    assert first == Execution(1, 1, None, 2, GROUPS)
    second = store.begin_execution("flow", "fp", worker_count=3, key_groups=999)
    assert second == Execution(2, 1, 2, 3, GROUPS)  # the store's key-group count wins
    assert [e.execution_id for e in store.executions()] == [1, 2]
    report = store.inspect()
    assert (report["flow_id"], report["fingerprint"], report["key_groups"]) == ("flow", "fp", 16)


def test_flow_mismatch_names_both_flows(store: RecoveryStore) -> None:
    store.begin_execution("orders", "fp-1", worker_count=1)
    with pytest.raises(FlowMismatchError, match=r"'orders'.*'clicks'"):
        store.begin_execution("clicks", "fp-1", worker_count=1)
    with pytest.raises(FlowMismatchError, match=r"fp-1.*fp-2"):
        store.begin_execution("orders", "fp-2", worker_count=1)
    assert len(store.executions()) == 1  # refused executions record nothing


def test_resume_epoch_is_min_frontier_and_a_silent_worker_counts_as_the_start(
    store: RecoveryStore,
) -> None:
    first = store.begin_execution("flow", "fp", worker_count=3, key_groups=GROUPS)
    store.epoch_writer(1, 0).commit_epoch(5)
    store.epoch_writer(1, 1).commit_epoch(4)
    assert store.cluster_frontier(1) == 1  # worker 2 never committed
    second = store.begin_execution("flow", "fp", worker_count=2)
    assert (second.resume_epoch, second.previous_worker_count) == (first.resume_epoch, 3)
    store.epoch_writer(2, 0).commit_epoch(7)
    store.epoch_writer(2, 1).commit_epoch(6)
    assert store.cluster_frontier(2) == store.next_resume_epoch() == 6
    assert store.begin_execution("flow", "fp", worker_count=1).resume_epoch == 6


def _frontiers(store: RecoveryStore, execution_id: int) -> dict[int, int]:
    return store.inspect()["executions"][execution_id - 1]["frontiers"]


def test_finished_workers_are_raised_to_the_lowest_frontier_of_the_others(
    store: RecoveryStore,
) -> None:
    store.begin_execution("flow", "fp", worker_count=4, key_groups=GROUPS)
    for worker, frontier in [(0, 2), (1, 9), (2, 7), (3, 12)]:
        store.epoch_writer(1, worker).commit_epoch(frontier)
    assert store.cluster_frontier(1) == 2
    # Worker 0 finished at epoch 1 (no input); worker 3 finished after the others.
    assert store.raise_finished_frontiers(1, [0, 3]) == 7
    assert _frontiers(store, 1) == {0: 7, 1: 9, 2: 7, 3: 12}  # 3 is not lowered
    assert store.begin_execution("flow", "fp", worker_count=2).resume_epoch == 7


def test_a_worker_that_never_committed_keeps_the_resume_at_the_execution_start(
    store: RecoveryStore,
) -> None:
    store.begin_execution("flow", "fp", worker_count=3, key_groups=GROUPS)
    store.epoch_writer(1, 0).commit_epoch(5)
    store.epoch_writer(1, 1).commit_epoch(8)
    assert store.raise_finished_frontiers(1, [0]) == 1  # worker 2 never committed
    assert _frontiers(store, 1) == {0: 5, 1: 8}


def test_all_finished_raises_every_frontier_to_the_highest(store: RecoveryStore) -> None:
    store.begin_execution("flow", "fp", worker_count=3, key_groups=GROUPS)
    for worker, frontier in [(0, 2), (1, 9), (2, 7)]:
        store.epoch_writer(1, worker).commit_epoch(frontier)
    assert store.raise_finished_frontiers(1, [2, 0, 1]) == 9
    assert store.complete_execution(1) == 9
    assert _frontiers(store, 1) == {0: 9, 1: 9, 2: 9}


def test_raising_ignores_unknown_workers_and_older_executions(store: RecoveryStore) -> None:
    store.begin_execution("flow", "fp", worker_count=2, key_groups=GROUPS)
    store.epoch_writer(1, 0).commit_epoch(3)
    store.epoch_writer(1, 1).commit_epoch(6)
    assert store.raise_finished_frontiers(1, [5]) == 3  # no worker 5 in execution 1
    store.begin_execution("flow", "fp", worker_count=2)
    assert store.raise_finished_frontiers(1, [0]) == 3  # execution 1's future is abandoned
    assert _frontiers(store, 1) == {0: 3, 1: 6}
    assert store.raise_finished_frontiers(2, []) == 3  # nothing committed in execution 2 yet


def test_commit_and_load_newest_before_resume_with_tombstones(store: RecoveryStore) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    writer.commit_epoch(2, [(STEP, "a", 1, 1), (STEP, "b", 1, [1, 2])])
    writer.commit_epoch(3, [(STEP, "a", 2, 2), (STEP, "b", 2, TOMBSTONE)])
    writer.commit_epoch(4, [(STEP, "c", 3, {"x": 3})])
    assert all_groups(store, STEP, 1) == {}
    assert all_groups(store, STEP, 2) == {"a": 1, "b": [1, 2]}
    assert all_groups(store, STEP, 3) == {"a": 2}  # "b" was discarded at epoch 2
    assert all_groups(store, STEP, 4) == {"a": 2, "c": {"x": 3}}
    assert all_groups(store, "flow.other", 4) == {}


def test_partition_states_are_kept_apart_from_keyed_states(store: RecoveryStore) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    writer.commit_epoch(
        2, [(SOURCE, "part-0", 1, "keyed")], partition_snapshots=[(SOURCE, "part-0", 1, 10)]
    )
    writer.commit_epoch(3, partition_snapshots=[(SOURCE, "part-0", 2, 20), (SOURCE, "p1", 2, 5)])
    assert store.load_partition_states(SOURCE, 2) == {"part-0": 10}
    assert store.load_partition_states(SOURCE, 3) == {"part-0": 20, "p1": 5}
    assert all_groups(store, SOURCE, 3) == {"part-0": "keyed"}
    assert store.inspect()["steps"][SOURCE]["partitions"] == 2


@pytest.mark.parametrize("new_worker_count", [1, 2, 3, 5])
def test_rescaling_loads_each_key_exactly_once(store: RecoveryStore, new_worker_count: int) -> None:
    keys = [f"user-{i}" for i in range(500)]
    store.begin_execution("flow", "fp", worker_count=3, key_groups=GROUPS)
    for worker in range(3):
        mine = [k for k in keys if group_owner(key_group(k, GROUPS), GROUPS, 3) == worker]
        store.epoch_writer(1, worker).commit_epoch(2, [(STEP, k, 1, len(k)) for k in mine])
    execution = store.begin_execution("flow", "fp", worker_count=new_worker_count)
    assert execution.resume_epoch == 2
    loaded: dict[str, Any] = {}
    for worker in range(new_worker_count):
        groups = owned_groups(worker, GROUPS, new_worker_count)
        share = store.load_keyed_states(STEP, groups, execution.resume_epoch)
        assert all(key_group(k, GROUPS) in groups for k in share)
        assert not share.keys() & loaded.keys()
        loaded |= share
    assert loaded == {k: len(k) for k in keys}


LONG_KEYS = [
    "",
    "é✓\udcff",  # non-ASCII and a lone surrogate
    "k" * 200,  # longest key stored verbatim
    "k" * 201,  # shortest digested key
    "x" * 10_000 + "a",  # 10 KB keys sharing a 10 KB prefix
    "x" * 10_000 + "b",
]


@pytest.mark.parametrize("step", [STEP, "flow." + "s" * 300])
def test_keys_and_step_ids_longer_than_lmdb_allows_round_trip(
    store: RecoveryStore, step: str
) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    writer.commit_epoch(2, [(step, k, 1, k[-5:]) for k in LONG_KEYS])
    writer.commit_epoch(3, [(step, LONG_KEYS[-1], 2, TOMBSTONE), (step, LONG_KEYS[-2], 2, "new")])
    assert all_groups(store, step, 2) == {k: k[-5:] for k in LONG_KEYS}
    expected = {k: k[-5:] for k in LONG_KEYS[:-1]} | {LONG_KEYS[-2]: "new"}
    assert all_groups(store, step, 3) == expected
    writer.commit_epoch(4, partition_snapshots=[(step, LONG_KEYS[-1], 3, 7)])
    assert store.load_partition_states(step, 4) == {LONG_KEYS[-1]: 7}
    stats = store.inspect()["steps"][step]
    assert (stats["keys"], stats["partitions"], stats["tombstones"]) == (6, 1, 1)
    store.gc()
    assert all_groups(store, step, 4) == expected


def test_unpicklable_state_names_step_key_epoch_and_commits_nothing(
    store: RecoveryStore,
) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    writer.commit_epoch(2, [(STEP, "a", 1, 1)])
    bad = [(STEP, "a", 2, 2), (STEP, "bad-key", 2, threading.Lock()), (STEP, "c", 2, 3)]
    with pytest.raises(
        UnpicklableStateError, match=r"'flow.count', key 'bad-key', epoch 2"
    ) as info:
        writer.commit_epoch(3, bad, partition_snapshots=[(SOURCE, "p", 2, 1)])
    assert (info.value.step_id, info.value.state_key, info.value.epoch) == (STEP, "bad-key", 2)
    assert isinstance(info.value.__cause__, TypeError)
    assert store.cluster_frontier(1) == 2  # frontier not advanced
    assert all_groups(store, STEP, 10) == {"a": 1}
    assert store.load_partition_states(SOURCE, 10) == {}


def test_map_full_raises_store_full_and_keeps_the_last_commit(store_dir: Path) -> None:
    with RecoveryStore.open(store_dir, map_size=1 << 20) as store:
        store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
        writer = store.epoch_writer(1, 0)
        writer.commit_epoch(2, [(STEP, "small", 1, "ok")])
        big = [(STEP, f"k{i}", 2, b"x" * 1000) for i in range(2000)]
        with pytest.raises(StoreFullError, match="raise map size"):
            writer.commit_epoch(3, big)
        assert store.cluster_frontier(1) == 2
        assert all_groups(store, STEP, 3) == {"small": "ok"}
    with RecoveryStore.open(store_dir) as store:  # a larger map takes the same commit
        store.epoch_writer(1, 0).commit_epoch(3, big)
        assert len(all_groups(store, STEP, 3)) == 2001


def test_a_worker_of_an_old_execution_cannot_commit(store: RecoveryStore) -> None:
    store.begin_execution("flow", "fp", worker_count=1)
    old_writer = store.epoch_writer(1, 0)
    store.begin_execution("flow", "fp", worker_count=1)
    with pytest.raises(StaleExecutionError, match="execution 2 has begun"):
        old_writer.commit_epoch(2, [(STEP, "a", 1, 1)])


def test_commit_checks_epochs_and_frontier_order(store: RecoveryStore) -> None:
    store.begin_execution("flow", "fp", worker_count=2)
    with pytest.raises(ValueError, match="not one of the 2 workers"):
        store.epoch_writer(1, 2)
    writer = store.epoch_writer(1, 0)
    with pytest.raises(ValueError, match="before the frontier 2"):
        writer.commit_epoch(2, [(STEP, "a", 2, 1)])
    writer.commit_epoch(5)
    with pytest.raises(ValueError, match="went backwards"):
        writer.commit_epoch(4)


def test_new_execution_discards_the_abandoned_future_of_workers_that_ran_ahead(
    store: RecoveryStore,
) -> None:
    store.begin_execution("flow", "fp", worker_count=2, key_groups=GROUPS)
    ahead, behind = store.epoch_writer(1, 0), store.epoch_writer(1, 1)
    for epoch in range(1, 5):
        ahead.commit_epoch(epoch + 1, [(STEP, "a", epoch, epoch)])
    behind.commit_epoch(2, [(STEP, "b", 1, "b1")])
    second = store.begin_execution("flow", "fp", worker_count=1)
    assert second.resume_epoch == 2
    assert store.inspect()["steps"][STEP]["newest_epoch"] == 1
    # The new execution's timeline differs: "a" is not touched again before it fails.
    store.epoch_writer(2, 0).commit_epoch(4, [(STEP, "b", 3, "b3")])
    assert all_groups(store, STEP, 4) == {"a": 1, "b": "b3"}  # not the abandoned a=3


def test_gc_keeps_newest_at_horizon_and_the_last_state_or_tombstone(
    store: RecoveryStore,
) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    writer.commit_epoch(2, [(STEP, "a", 1, 1), (STEP, "b", 1, 1), (STEP, "t", 1, 1)])
    writer.commit_epoch(3, [(STEP, "a", 2, 2), (STEP, "t", 2, TOMBSTONE)])
    writer.commit_epoch(4, [(STEP, "a", 3, 3)])
    writer.commit_epoch(6, [(STEP, "a", 5, 5)])
    with pytest.raises(ValueError, match="beyond its durable frontier 6"):
        store.gc(cluster_frontier=7)
    result = store.gc(cluster_frontier=5, backup_epochs=1)  # horizon 3
    assert (result.horizon, result.deleted_snapshots, result.remaining_snapshots) == (3, 3, 4)
    stats = store.inspect()["steps"][STEP]
    assert (stats["snapshots"], stats["tombstones"], stats["oldest_epoch"]) == (4, 1, 1)
    assert all_groups(store, STEP, 4) == {"a": 3, "b": 1}
    assert all_groups(store, STEP, 6) == {"a": 5, "b": 1}
    assert store.gc().deleted_snapshots == 1  # default: durable frontier 6, horizon 5
    assert all_groups(store, STEP, 6) == {"a": 5, "b": 1}


@settings(max_examples=25, deadline=None)
@given(
    epochs_per_key=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d" * 300]),
        st.sets(st.integers(1, 12), min_size=1, max_size=6),
        min_size=1,
    ),
    backup=st.integers(0, 4),
)
def test_store_gc_follows_gc_plan(epochs_per_key: dict[str, set[int]], backup: int) -> None:
    frontier = 13
    with tempfile.TemporaryDirectory() as tmp:
        init_db_dir(tmp)
        with RecoveryStore.open(tmp) as store:
            store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
            snapshots = [(STEP, k, e, (k, e)) for k, es in epochs_per_key.items() for e in es]
            store.epoch_writer(1, 0).commit_epoch(frontier, snapshots)
            plan = gc_plan(epochs_per_key, frontier, backup)
            result = store.gc(frontier, backup)
            assert result.deleted_snapshots == sum(len(v) for v in plan.values())
            for resume in range(frontier - backup, frontier + 1):
                expected = {
                    k: (k, max(e for e in es if e < resume))
                    for k, es in epochs_per_key.items()
                    if min(es) < resume
                }
                assert all_groups(store, STEP, resume) == expected


def test_resume_before_the_gc_horizon_raises_inconsistent_partitions(
    store: RecoveryStore,
) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    for epoch in range(1, 7):
        writer.commit_epoch(epoch + 1, [(STEP, "a", epoch, epoch)])
    store.gc()  # frontier 7: only epoch 6 is left
    with pytest.raises(InconsistentPartitionsError, match=r"epoch 3 .* up to epoch 6"):
        all_groups(store, STEP, 3)
    with pytest.raises(InconsistentPartitionsError):
        store.load_partition_states(SOURCE, 6)
    assert all_groups(store, STEP, 7) == {"a": 6}


def test_one_environment_per_process_shared_by_every_open(store_dir: Path) -> None:
    first = RecoveryStore.open(store_dir)
    second = RecoveryStore.open(store_dir)
    first.begin_execution("flow", "fp", worker_count=1)
    first.close()
    first.close()
    assert len(second.executions()) == 1  # still open after the other closed
    second.close()
    with pytest.raises(RecoveryError, match="closed"):
        second.executions()


def test_store_is_never_pickled_nor_used_in_another_process(
    store: RecoveryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TypeError, match=r"RecoveryStore\.open in the other process"):
        pickle.dumps(store)
    import os

    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)
    with pytest.raises(RecoveryError, match="open it in each process"):
        store.executions()


def test_recovery_config_is_a_picklable_frozen_spec() -> None:
    from datetime import timedelta

    config = RecoveryConfig("/tmp/x", timedelta(seconds=30))
    assert config.db_dir == Path("/tmp/x")
    assert pickle.loads(pickle.dumps(config)) == config
    assert config.backup_epochs(timedelta(seconds=10)) == 3
    assert RecoveryConfig("/tmp/x").backup_epochs(timedelta(0)) == 0
    with pytest.raises(AttributeError):
        config.db_dir = Path("/")  # type: ignore[misc]
    with pytest.raises(TypeError):
        RecoveryConfig("/tmp/x", 30)  # type: ignore[arg-type]


def test_tombstone_is_a_singleton_through_pickle() -> None:
    assert pickle.loads(pickle.dumps(TOMBSTONE)) is TOMBSTONE
    assert repr(TOMBSTONE) == "TOMBSTONE"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_becomes_store_full_naming_the_path(code: int) -> None:
    error = (
        lmdb.DiskError("mdb_txn_commit", code) if code == errno.ENOSPC else lmdb.Error("x", code)
    )
    with pytest.raises(StoreFullError, match="disk full on /stores/a"):  # noqa: SIM117
        with translate_errors(Path("/stores/a"), map_size=1 << 30):
            raise error
