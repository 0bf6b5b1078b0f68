"""``RecoveryConfig``: where a flow's recovery store is and how long snapshots are kept."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from recovery._resume import backup_epochs

__all__ = ["RecoveryConfig"]


@dataclass(frozen=True)
class RecoveryConfig:
    """Turns recovery on for an execution (same shape as Bytewax's ``RecoveryConfig``).

    ``db_dir`` is the store directory (initialise it first with
    ``python -m recovery init DIR``). ``backup_interval`` is how long snapshots stay
    after no resume needs them any more (so an off-machine backup of the store taken
    within that time is still consistent); ``None`` means zero, as in Bytewax. The
    config is small and picklable: hand it to worker processes, which open the store
    themselves.

    >>> RecoveryConfig("/tmp/store", timedelta(minutes=1)).backup_epochs(timedelta(seconds=10))
    6
    """

    db_dir: Path
    backup_interval: timedelta | None = None

    def __init__(
        self, db_dir: str | os.PathLike[str], backup_interval: timedelta | None = None
    ) -> None:
        if backup_interval is not None and not isinstance(backup_interval, timedelta):
            msg = f"backup_interval must be a timedelta or None, got {backup_interval!r}"
            raise TypeError(msg)
        if backup_interval is not None and backup_interval < timedelta(0):
            raise ValueError(f"backup_interval must not be negative, got {backup_interval}")
        object.__setattr__(self, "db_dir", Path(db_dir))
        object.__setattr__(self, "backup_interval", backup_interval)

    def backup_epochs(self, epoch_interval: timedelta) -> int:
        """The backup interval in whole epochs of ``epoch_interval`` (rounded up)."""
        return backup_epochs(self.backup_interval, epoch_interval)
