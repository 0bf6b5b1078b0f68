"""``RecoveryConfig``: where a flow's recovery store is and how long snapshots are kept."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from recovery._resume import backup_epochs

__all__ = ["RecoveryConfig", "step_id_set"]


@dataclass(frozen=True)
class RecoveryConfig:
    """Turns recovery on for an execution (same shape as Bytewax's ``RecoveryConfig``).

    ``db_dir`` is the store directory (initialise it first with
    ``python -m recovery init DIR``). ``backup_interval`` is how long snapshots stay
    after no resume needs them any more (so an off-machine backup of the store taken
    within that time is still consistent); ``None`` means zero, as in Bytewax. The
    config is small and picklable: hand it to worker processes, which open the store
    themselves.

    An edited flow resumes its store as long as every step that has state in the store
    is still in the flow. ``drop_state`` names steps whose stored state to delete for
    good when the flow no longer has them (a stateful step removed or renamed), which
    the execution otherwise refuses (:class:`~recovery.errors.OrphanedStateError`
    names them). Steps the flow still has are never dropped.

    >>> RecoveryConfig("/tmp/store", timedelta(minutes=1)).backup_epochs(timedelta(seconds=10))
    6
    >>> sorted(RecoveryConfig("/tmp/store", drop_state=["flow.old_count"]).drop_state)
    ['flow.old_count']
    """

    db_dir: Path
    backup_interval: timedelta | None = None
    drop_state: frozenset[str] = frozenset()

    def __init__(
        self,
        db_dir: str | os.PathLike[str],
        backup_interval: timedelta | None = None,
        *,
        drop_state: Iterable[str] = (),
    ) -> None:
        if backup_interval is not None and not isinstance(backup_interval, timedelta):
            msg = f"backup_interval must be a timedelta or None, got {backup_interval!r}"
            raise TypeError(msg)
        if backup_interval is not None and backup_interval < timedelta(0):
            raise ValueError(f"backup_interval must not be negative, got {backup_interval}")
        object.__setattr__(self, "db_dir", Path(db_dir))
        object.__setattr__(self, "backup_interval", backup_interval)
        object.__setattr__(self, "drop_state", step_id_set(drop_state, "drop_state"))

    def backup_epochs(self, epoch_interval: timedelta) -> int:
        """The backup interval in whole epochs of ``epoch_interval`` (rounded up)."""
        return backup_epochs(self.backup_interval, epoch_interval)


def step_id_set(step_ids: Iterable[str], what: str) -> frozenset[str]:
    """``step_ids`` as a frozenset; a bare str or a non-str member is a TypeError.

    >>> sorted(step_id_set(["flow.total", "flow.count"], "drop_state"))
    ['flow.count', 'flow.total']
    """
    if isinstance(step_ids, str):
        msg = (
            f"{what} must be a collection of step ids such as {{{step_ids!r}}}, "
            f"not the str {step_ids!r}"
        )
        raise TypeError(msg)
    result = frozenset(step_ids)
    wrong = sorted(repr(s) for s in result if not isinstance(s, str))
    if wrong:
        raise TypeError(f"{what} must hold step ids (str), got {', '.join(wrong)}")
    return result
