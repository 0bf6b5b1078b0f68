"""Resume and garbage-collection arithmetic: pure functions, no I/O.

Vocabulary (see DESIGN.md): a worker's *frontier* ``f`` means every epoch ``< f`` is
closed and its snapshots are durable. A *snapshot at epoch e* is the state of one
(step, key) at the close of epoch ``e``. Resuming at epoch ``r`` therefore needs, per
key, the newest snapshot with epoch ``< r``.

GC horizon: with cluster frontier ``F`` and a backup interval of ``b`` epochs, the
oldest frontier anyone may still resume from is ``F - b``, which needs the newest
snapshot with epoch ``<= F - b - 1``. That epoch, ``F - b - 1``, is the *GC horizon*:
per key, the newest snapshot at or before it is kept, older ones are deleted, newer
ones are untouched. The newest snapshot of a key (state or tombstone) is never deleted.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TypeVar

__all__ = [
    "FIRST_EPOCH",
    "backup_epochs",
    "epochs_to_delete",
    "gc_horizon",
    "gc_plan",
    "resume_epoch",
    "snapshot_to_load",
]

#: Epochs start at 1; a fresh store resumes (starts) at this epoch.
FIRST_EPOCH = 1

K = TypeVar("K", bound=Hashable)


def resume_epoch(
    last_execution_worker_count: int,
    frontiers_by_worker: Mapping[int, int],
    execution_resume_epoch: int,
) -> int:
    """Where the next execution resumes: the min over the last execution's workers.

    A worker that never wrote a frontier counts as the last execution's own resume
    epoch (it made no progress). Frontiers of worker indexes outside the execution
    are ignored. The same min is the durable cluster frontier of a running execution.

    >>> resume_epoch(3, {0: 7, 1: 9, 2: 8}, 4)
    7
    >>> resume_epoch(3, {0: 7, 2: 8}, 4)  # worker 1 never committed
    4
    """
    if last_execution_worker_count < 1:
        msg = f"an execution has at least one worker, got {last_execution_worker_count}"
        raise ValueError(msg)
    return min(
        frontiers_by_worker.get(worker, execution_resume_epoch)
        for worker in range(last_execution_worker_count)
    )


def snapshot_to_load(epochs_available: Iterable[int], resume_epoch: int) -> int | None:
    """The epoch of the snapshot to load when resuming at ``resume_epoch``.

    The newest epoch strictly before ``resume_epoch``, or None when there is none
    (the key had no state yet).

    >>> snapshot_to_load([2, 5, 9], 9)
    5
    >>> snapshot_to_load([2, 5, 9], 2) is None
    True
    """
    return max((epoch for epoch in epochs_available if epoch < resume_epoch), default=None)


def gc_horizon(cluster_frontier: int, backup_epochs: int) -> int:
    """The newest epoch whose snapshots GC may compact (see the module docstring).

    >>> gc_horizon(10, 0)
    9
    >>> gc_horizon(10, 3)
    6
    """
    if backup_epochs < 0:
        msg = f"backup_epochs must be >= 0, got {backup_epochs}"
        raise ValueError(msg)
    return cluster_frontier - backup_epochs - 1


def epochs_to_delete(epochs: Sequence[int], horizon: int) -> list[int]:
    """Of one key's snapshot ``epochs``, those older than the newest one ``<= horizon``.

    >>> epochs_to_delete([1, 3, 4, 8], 5)
    [1, 3]
    >>> epochs_to_delete([6, 8], 5)
    []
    """
    keep = snapshot_to_load(epochs, horizon + 1)
    if keep is None:
        return []
    return sorted(epoch for epoch in epochs if epoch < keep)


def gc_plan(
    epochs_per_key: Mapping[K, Iterable[int]], cluster_frontier: int, backup_epochs: int
) -> dict[K, list[int]]:
    """Which snapshot epochs to delete, per key; keys with nothing to delete are left out.

    Keeps, per key, the newest snapshot at or before the GC horizon
    (``cluster_frontier - backup_epochs - 1``) and everything newer; so the newest
    snapshot of a key, state or tombstone, always survives.

    >>> gc_plan({"a": [1, 2, 3, 7], "b": [5]}, cluster_frontier=5, backup_epochs=0)
    {'a': [1, 2]}
    """
    horizon = gc_horizon(cluster_frontier, backup_epochs)
    plan: dict[K, list[int]] = {}
    for key, epochs in epochs_per_key.items():
        doomed = epochs_to_delete(list(epochs), horizon)
        if doomed:
            plan[key] = doomed
    return plan


def backup_epochs(backup_interval: timedelta | None, epoch_interval: timedelta) -> int:
    """How many epochs of snapshots a wall-clock ``backup_interval`` keeps.

    ``None`` or zero keeps none beyond what a resume needs (Bytewax's default).

    >>> backup_epochs(timedelta(seconds=25), timedelta(seconds=10))
    3
    >>> backup_epochs(None, timedelta(seconds=10))
    0
    """
    if backup_interval is None or backup_interval <= timedelta(0):
        return 0
    if epoch_interval <= timedelta(0):
        msg = (
            f"a backup interval ({backup_interval}) needs a positive epoch interval, "
            f"got {epoch_interval}; set epoch_interval or drop backup_interval"
        )
        raise ValueError(msg)
    return math.ceil(backup_interval / epoch_interval)
