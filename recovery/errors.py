"""The errors of the recovery store: one small tree under :class:`RecoveryError`.

Every message names what failed (the store path, step id, key, epoch, pid...) and says
what to do next. The first three names match Bytewax's ``bytewax.recovery`` errors so a
ported ``except`` clause keeps working.
"""

from __future__ import annotations

__all__ = [
    "CorruptStoreError",
    "FlowMismatchError",
    "InconsistentPartitionsError",
    "MissingPartitionsError",
    "NoPartitionsError",
    "OrphanedStateError",
    "RecoveryError",
    "StaleExecutionError",
    "StoreFullError",
    "StoreInUseError",
    "UnpicklableStateError",
]


class RecoveryError(Exception):
    """Base class of every error the recovery store raises."""


class NoPartitionsError(RecoveryError):
    """There is no initialised recovery store at the path.

    Create one with ``python -m recovery init DIR`` (or :func:`recovery.init_db_dir`).
    """


class MissingPartitionsError(RecoveryError):
    """The store is initialised but some of its sub-databases are missing.

    The store was damaged or written by another tool; start with a fresh store.
    """


class InconsistentPartitionsError(RecoveryError):
    """The snapshots a resume needs were garbage-collected.

    Raised when the resume epoch is at or before the store's GC horizon: the state as of
    the epoch before the resume epoch can no longer be rebuilt.
    """


class FlowMismatchError(RecoveryError):
    """The store was written by a different flow (another flow id or fingerprint)."""


class OrphanedStateError(FlowMismatchError):
    """The store holds state of steps the flow no longer has (removed or renamed).

    Resuming would silently lose that state, so it is refused. Attribute ``step_ids``
    names the steps. Give them their old ids back to keep the state, or drop it for
    good with ``RecoveryConfig(DIR, drop_state={...those step ids...})``.
    """

    def __init__(self, message: str, step_ids: tuple[str, ...]) -> None:
        super().__init__(message)
        self.step_ids = step_ids


class StoreInUseError(RecoveryError):
    """Another execution holds the store's lock ("store in use by pid N since T").

    Attributes ``pid`` and ``since`` name the holder when it could be read.
    """

    def __init__(self, message: str, pid: int | None = None, since: str | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.since = since


class CorruptStoreError(RecoveryError):
    """The store's files are truncated or are not a valid recovery store."""


class StoreFullError(RecoveryError):
    """A commit failed because the LMDB map or the disk is full.

    The failed commit wrote nothing; the last committed epoch is intact.
    """


class UnpicklableStateError(RecoveryError):
    """A state could not be pickled at snapshot; nothing of that commit was written.

    Attributes ``step_id``, ``state_key`` and ``epoch`` name the snapshot; the pickling
    error is the ``__cause__``.
    """

    def __init__(self, message: str, step_id: str, state_key: str, epoch: int) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.state_key = state_key
        self.epoch = epoch


class StaleExecutionError(RecoveryError):
    """A worker of an old execution tried to commit after a newer execution began.

    Its commit is refused so a leftover worker cannot overwrite the newer run's state.
    """
