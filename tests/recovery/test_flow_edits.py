"""Editing a flow does not strand its store: which edits resume, which are refused.

The store records the steps that hold state; a new execution names its own. Adding
steps resumes, losing a step that has state is refused (``OrphanedStateError``) unless
its state is dropped, and a store of another flow id is refused (FAULTS.md row 9).
"""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest

from recovery import (
    FlowMismatchError,
    OrphanedStateError,
    RecoveryConfig,
    RecoveryError,
    RecoveryStore,
)
from recovery.cli import main

GROUPS = 16
COUNT, TOTAL, INP = "flow.count", "flow.total", "flow.inp"


def _begin(store: RecoveryStore, steps: set[str], **kwargs: object) -> int:
    execution = store.begin_execution(
        "flow", "fp", worker_count=1, key_groups=GROUPS, state_steps=steps, **kwargs
    )
    return execution.execution_id


def _write(
    store: RecoveryStore, steps: set[str], snapshots: list[tuple[str, str, int, int]]
) -> None:
    """One execution declaring ``steps`` that commits ``snapshots`` (epochs < 3)."""
    execution_id = _begin(store, steps)
    store.epoch_writer(execution_id, 0).commit_epoch(3, snapshots)


def _states(store: RecoveryStore, step_id: str) -> dict[str, object]:
    return store.load_keyed_states(step_id, range(GROUPS), store.next_resume_epoch())


def test_adding_a_step_resumes_and_the_new_step_starts_empty(store: RecoveryStore) -> None:
    _write(store, {COUNT}, [(COUNT, "a", 1, 5)])
    _begin(store, {COUNT, TOTAL})
    assert _states(store, COUNT) == {"a": 5}
    assert _states(store, TOTAL) == {}
    assert store.inspect()["state_steps"] == [COUNT, TOTAL]


def test_a_different_fingerprint_resumes_when_the_steps_are_named(store: RecoveryStore) -> None:
    _write(store, {COUNT}, [(COUNT, "a", 1, 5)])
    store.begin_execution("flow", "fp-2", worker_count=1, state_steps={COUNT})
    assert store.inspect()["fingerprint"] == "fp-2"  # the latest version's label


def test_removing_a_step_with_state_is_refused_naming_it(store: RecoveryStore) -> None:
    _write(store, {COUNT, TOTAL}, [(COUNT, "a", 1, 5), (TOTAL, "a", 2, 7)])
    with pytest.raises(OrphanedStateError) as info:
        _begin(store, {COUNT})
    assert info.value.step_ids == (TOTAL,)
    assert isinstance(info.value, FlowMismatchError)
    message = str(info.value)
    assert f"'{TOTAL}'" in message and f"drop_state={{'{TOTAL}'}}" in message
    assert f"'{COUNT}'" not in message
    assert len(store.executions()) == 1  # refused: nothing recorded, nothing deleted
    assert _states(store, TOTAL) == {"a": 7}


def test_drop_state_deletes_the_missing_steps_state_and_resumes(store: RecoveryStore) -> None:
    _write(store, {COUNT, TOTAL}, [(COUNT, "a", 1, 5), (TOTAL, "a", 1, 7), (TOTAL, "b", 2, 8)])
    _begin(store, {COUNT}, drop_state={TOTAL})
    assert _states(store, TOTAL) == {}
    assert TOTAL not in store.inspect()["steps"]
    assert _states(store, COUNT) == {"a": 5}
    assert store.inspect()["state_steps"] == [COUNT]
    _begin(store, {COUNT, TOTAL})  # the name is free again: a new step, empty
    assert _states(store, TOTAL) == {}


def test_drop_state_never_drops_a_step_the_flow_still_has(store: RecoveryStore) -> None:
    _write(store, {COUNT}, [(COUNT, "a", 1, 5)])
    _begin(store, {COUNT}, drop_state={COUNT})
    assert _states(store, COUNT) == {"a": 5}


def test_a_partial_drop_is_refused_and_deletes_nothing(store: RecoveryStore) -> None:
    _write(store, {COUNT, TOTAL}, [(COUNT, "a", 1, 5), (TOTAL, "a", 1, 7)])
    with pytest.raises(OrphanedStateError) as info:
        _begin(store, set(), drop_state={TOTAL})
    assert info.value.step_ids == (COUNT,)
    assert _states(store, TOTAL) == {"a": 7}


def test_removing_a_step_without_state_resumes(store: RecoveryStore) -> None:
    _write(store, {COUNT, TOTAL}, [(COUNT, "a", 1, 5)])
    _begin(store, {COUNT})
    assert store.inspect()["state_steps"] == [COUNT]


def test_partition_state_counts_as_state(store: RecoveryStore) -> None:
    execution_id = _begin(store, {INP})
    store.epoch_writer(execution_id, 0).commit_epoch(2, partition_snapshots=[(INP, "p0", 1, 4)])
    with pytest.raises(OrphanedStateError, match=INP):
        _begin(store, {COUNT})


def test_a_step_written_without_being_declared_is_recorded(store: RecoveryStore) -> None:
    _write(store, {COUNT}, [(COUNT, "a", 1, 5), (TOTAL, "a", 1, 7)])
    assert store.inspect()["state_steps"] == [COUNT, TOTAL]
    with pytest.raises(OrphanedStateError, match=TOTAL):
        _begin(store, {COUNT})


def test_long_step_ids_are_checked_and_dropped(store: RecoveryStore) -> None:
    long_step = "flow." + "x" * 300  # its key component is a digest
    _write(store, {COUNT, long_step}, [(COUNT, "a", 1, 5), (long_step, "a", 1, 7)])
    with pytest.raises(OrphanedStateError) as info:
        _begin(store, {COUNT})
    assert info.value.step_ids == (long_step,)
    _begin(store, {COUNT}, drop_state={long_step})
    assert _states(store, long_step) == {}
    assert _states(store, COUNT) == {"a": 5}


def test_a_store_of_another_flow_id_is_refused_naming_both(store: RecoveryStore) -> None:
    _write(store, {COUNT}, [(COUNT, "a", 1, 5)])
    with pytest.raises(FlowMismatchError, match=r"'flow'.*'clicks'"):
        store.begin_execution("clicks", "fp", worker_count=1, state_steps={COUNT})


def _as_format_1(store_dir: Path) -> None:
    """Rewrite the (closed) store as one written before ``state_steps`` and the GC index."""
    with lmdb.open(str(store_dir), max_dbs=5) as env:
        meta = env.open_db(b"meta")
        with env.begin(write=True) as txn:
            txn.delete(b"state_steps", db=meta)
            txn.delete(b"key_hash", db=meta)
            txn.put(b"format", b"1", db=meta)
            txn.drop(env.open_db(b"written", txn=txn), delete=True)


def test_a_format_1_store_migrates_treating_every_step_with_state_as_recorded(
    store_dir: Path,
) -> None:
    with RecoveryStore.open(store_dir) as store:
        _write(store, {COUNT, TOTAL, INP}, [(COUNT, "a", 1, 5), ("flow." + "y" * 300, "a", 1, 1)])
    _as_format_1(store_dir)
    with RecoveryStore.open(store_dir) as store:
        report = store.inspect()
        assert report["format"] == 1
        assert report["state_steps"] == [COUNT, "flow." + "y" * 300]
        with pytest.raises(OrphanedStateError) as info:
            _begin(store, {COUNT, TOTAL})
        assert info.value.step_ids == ("flow." + "y" * 300,)
        assert store.inspect()["format"] == 1  # the refused execution changed nothing
        _begin(store, {COUNT, TOTAL}, drop_state={"flow." + "y" * 300})
        report = store.inspect()
        assert (report["format"], report["state_steps"]) == (3, [COUNT, TOTAL])
        assert _states(store, COUNT) == {"a": 5}


def test_a_format_1_store_keeps_its_steps_when_the_caller_names_none(store_dir: Path) -> None:
    with RecoveryStore.open(store_dir) as store:
        _write(store, {COUNT}, [(COUNT, "a", 1, 5)])
    _as_format_1(store_dir)
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("flow", "fp", worker_count=1)  # same fingerprint: resumes
        report = store.inspect()
        assert (report["format"], report["state_steps"]) == (3, [COUNT])


def test_a_store_of_a_newer_format_is_refused(store_dir: Path) -> None:
    with lmdb.open(str(store_dir), max_dbs=5) as env, env.begin(write=True) as txn:
        txn.put(b"format", b"5", db=env.open_db(b"meta", txn=txn))
    with pytest.raises(RecoveryError, match=r"format 5.*reads formats 1, 2, 3 and 4"):
        RecoveryStore.open(store_dir)


def test_inspect_shows_the_recorded_steps(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RecoveryStore.open(store_dir) as store:
        _write(store, {COUNT, INP}, [(COUNT, "a", 1, 5)])
    assert main(["inspect", str(store_dir)]) == 0
    assert f"state steps (2): {COUNT}, {INP}\n" in capsys.readouterr().out


def test_recovery_config_drop_state() -> None:
    config = RecoveryConfig("/tmp/s", None, drop_state=[TOTAL])
    assert config.drop_state == frozenset({TOTAL})
    assert RecoveryConfig("/tmp/s").drop_state == frozenset()
    with pytest.raises(TypeError, match="collection of step ids"):
        RecoveryConfig("/tmp/s", drop_state=TOTAL)
    with pytest.raises(TypeError, match="step ids"):
        RecoveryConfig("/tmp/s", drop_state=[1])  # type: ignore[list-item]
