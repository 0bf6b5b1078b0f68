"""The pure resume/GC arithmetic, unit- and property-tested without any store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recovery import backup_epochs, gc_horizon, gc_plan, resume_epoch, snapshot_to_load

epochs = st.integers(min_value=1, max_value=10_000)
epoch_sets = st.sets(epochs, min_size=1, max_size=20)


@given(
    worker_count=st.integers(1, 8),
    frontiers=st.dictionaries(st.integers(0, 10), epochs, max_size=10),
    execution_resume=epochs,
)
def test_resume_epoch_is_min_over_workers_with_missing_ones_at_the_execution_start(
    worker_count: int, frontiers: dict[int, int], execution_resume: int
) -> None:
    expected = min(frontiers.get(w, execution_resume) for w in range(worker_count))
    assert resume_epoch(worker_count, frontiers, execution_resume) == expected


def test_resume_epoch_examples() -> None:
    assert resume_epoch(2, {0: 9, 1: 6}, 3) == 6
    assert resume_epoch(2, {0: 9}, 3) == 3  # worker 1 never committed
    assert resume_epoch(1, {0: 9, 5: 1}, 3) == 9  # worker 5 was not in that execution
    with pytest.raises(ValueError, match="at least one worker"):
        resume_epoch(0, {}, 1)


@given(available=st.sets(epochs, max_size=20), resume=epochs)
def test_snapshot_to_load_is_newest_before_resume(available: set[int], resume: int) -> None:
    chosen = snapshot_to_load(available, resume)
    before = [epoch for epoch in available if epoch < resume]
    if not before:
        assert chosen is None
    else:
        assert chosen == max(before)
        assert chosen in available and chosen < resume


@given(
    epochs_per_key=st.dictionaries(st.text(max_size=3), epoch_sets, max_size=8),
    cluster_frontier=st.integers(1, 10_001),
    backup=st.integers(0, 50),
)
def test_gc_plan_keeps_what_any_resume_within_the_backup_needs(
    epochs_per_key: dict[str, set[int]], cluster_frontier: int, backup: int
) -> None:
    plan = gc_plan(epochs_per_key, cluster_frontier, backup)
    for key, available in epochs_per_key.items():
        doomed = set(plan.get(key, []))
        kept = available - doomed
        assert doomed <= available
        assert max(available) in kept  # the newest state or tombstone of a key survives
        # Every resume from the oldest still allowed one onwards loads the same snapshot.
        for resume in range(max(1, cluster_frontier - backup), cluster_frontier + 2):
            assert snapshot_to_load(kept, resume) == snapshot_to_load(available, resume)
    assert all(plan.values())  # keys with nothing to delete are left out


@given(available=epoch_sets, cluster_frontier=st.integers(1, 10_001), backup=st.integers(0, 50))
def test_gc_plan_deletes_exactly_what_is_older_than_the_newest_at_the_horizon(
    available: set[int], cluster_frontier: int, backup: int
) -> None:
    horizon = gc_horizon(cluster_frontier, backup)
    keep = snapshot_to_load(available, horizon + 1)
    expected = sorted(e for e in available if keep is not None and e < keep)
    assert gc_plan({"k": available}, cluster_frontier, backup).get("k", []) == expected


def test_gc_plan_example() -> None:
    plan = gc_plan({"a": [1, 2, 3, 5], "b": [1], "c": [4, 6]}, cluster_frontier=5, backup_epochs=1)
    assert plan == {"a": [1, 2]}  # horizon 3: "a" keeps 3 (resume at 4) and 5
    with pytest.raises(ValueError, match="backup_epochs"):
        gc_plan({}, 5, -1)


def test_backup_epochs_rounds_up_and_needs_a_positive_epoch_interval() -> None:
    assert backup_epochs(timedelta(seconds=10), timedelta(seconds=10)) == 1
    assert backup_epochs(timedelta(seconds=11), timedelta(seconds=10)) == 2
    assert backup_epochs(timedelta(0), timedelta(0)) == 0
    with pytest.raises(ValueError, match="positive epoch interval"):
        backup_epochs(timedelta(seconds=1), timedelta(0))
