"""Recovery for shmflow: the LMDB snapshot store, resume calculation and GC.

This package knows nothing of ``shm`` or ``engine`` and never imports them (a test
checks it): the engine calls it, never the other way round.

- :class:`RecoveryConfig` and :func:`init_db_dir` match Bytewax's ``bytewax.recovery``.
- :class:`RecoveryStore` is one LMDB environment per store directory, opened in each
  process that uses it: the supervisor locks it for an execution and begins the
  execution; workers load their share of state and commit one transaction per epoch
  through an :class:`EpochWriter`.
- :func:`resume_epoch`, :func:`snapshot_to_load` and :func:`gc_plan` are the pure
  arithmetic behind resume and GC. GC is incremental (a GC index written with every
  commit); :class:`BackgroundGc` runs it in a thread so a supervisor never waits on it.
- Keys map to a fixed number of key groups by a stable hash (:func:`key_group`); a store
  records its group count and hash at its first execution (``Execution.key_groups``,
  ``Execution.key_hash``), and the engine routes keys by them so they meet their state.
- A store records which steps hold state: an edited flow resumes it unless it lost a
  step that has state (:class:`OrphanedStateError`; ``RecoveryConfig(drop_state=...)``
  deletes that state instead).
- ``python -m recovery init|inspect|gc|verify DIR`` (:mod:`recovery.cli`);
  :func:`verify_store` checks every page without handing the file to LMDB first.
- A store is private to its owner: directories it creates are 0700, its files 0600
  (``recovery._access``).
- Errors derive from :class:`RecoveryError` (:mod:`recovery.errors`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from recovery._codec import TOMBSTONE
from recovery._config import RecoveryConfig
from recovery._keys import (
    DEFAULT_KEY_GROUPS,
    DEFAULT_KEY_HASH,
    LEGACY_KEY_HASH,
    group_owner,
    key_group,
    key_hash_function,
    owned_groups,
)
from recovery._lock import ExecutionLock
from recovery._resume import (
    FIRST_EPOCH,
    backup_epochs,
    gc_horizon,
    gc_plan,
    resume_epoch,
    snapshot_to_load,
)
from recovery.errors import (
    CorruptStoreError,
    FlowMismatchError,
    InconsistentPartitionsError,
    MissingPartitionsError,
    NoPartitionsError,
    OrphanedStateError,
    RecoveryError,
    StaleExecutionError,
    StoreFullError,
    StoreInUseError,
    UnpicklableStateError,
)

if TYPE_CHECKING:
    from recovery._background import BackgroundGc
    from recovery._env import DEFAULT_MAP_SIZE
    from recovery._store import (
        EpochWriter,
        Execution,
        GcResult,
        RecoveryStore,
        Snapshot,
        init_db_dir,
    )
    from recovery._verify import VerifyReport, verify_store

#: What needs LMDB, imported on first use: a worker of a run without recovery (most
#: runs) never loads ``lmdb`` and starts sooner.
_LAZY = {
    "BackgroundGc": "recovery._background",
    "DEFAULT_MAP_SIZE": "recovery._env",
    "EpochWriter": "recovery._store",
    "Execution": "recovery._store",
    "GcResult": "recovery._store",
    "RecoveryStore": "recovery._store",
    "Snapshot": "recovery._store",
    "init_db_dir": "recovery._store",
    "VerifyReport": "recovery._verify",
    "verify_store": "recovery._verify",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'recovery' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DEFAULT_KEY_GROUPS",
    "DEFAULT_KEY_HASH",
    "DEFAULT_MAP_SIZE",
    "FIRST_EPOCH",
    "LEGACY_KEY_HASH",
    "TOMBSTONE",
    "BackgroundGc",
    "CorruptStoreError",
    "EpochWriter",
    "Execution",
    "ExecutionLock",
    "FlowMismatchError",
    "GcResult",
    "InconsistentPartitionsError",
    "MissingPartitionsError",
    "NoPartitionsError",
    "OrphanedStateError",
    "RecoveryConfig",
    "RecoveryError",
    "RecoveryStore",
    "Snapshot",
    "StaleExecutionError",
    "StoreFullError",
    "StoreInUseError",
    "UnpicklableStateError",
    "VerifyReport",
    "backup_epochs",
    "gc_horizon",
    "gc_plan",
    "group_owner",
    "init_db_dir",
    "key_group",
    "key_hash_function",
    "owned_groups",
    "resume_epoch",
    "snapshot_to_load",
    "verify_store",
]
