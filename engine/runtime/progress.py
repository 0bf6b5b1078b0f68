"""Progress tracking: epochs and frontiers. Pure code, no I/O, no processes.

Words (see DESIGN.md): an *epoch* is an integer ordering the data, starting at 1. A
*frontier* is the oldest epoch a point may still see; :data:`EOF_FRONTIER` stands for
the empty frontier (end of stream). Epochs before a frontier are *closed*.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

# The first epoch of a fresh run is the recovery store's, re-exported here for the runtime.
from recovery import FIRST_EPOCH

__all__ = [
    "DEFAULT_EPOCH_INTERVAL",
    "EOF_FRONTIER",
    "FIRST_EPOCH",
    "EpochClock",
    "SenderMarks",
    "epoch_interval_seconds",
    "fold_frontiers",
]

#: Frontier value meaning "no more data will ever come" (EOF). Fits an int64 slot.
EOF_FRONTIER = 2**62

#: Epoch length when none is given, as in API.md.
DEFAULT_EPOCH_INTERVAL = timedelta(seconds=10)


def epoch_interval_seconds(epoch_interval: timedelta | None) -> float:
    """Validate an ``epoch_interval`` argument and return it in seconds.

    ``None`` means :data:`DEFAULT_EPOCH_INTERVAL`; ``timedelta(0)`` means untimed epochs
    (see :class:`EpochClock`).

    >>> epoch_interval_seconds(None), epoch_interval_seconds(timedelta(milliseconds=250))
    (10.0, 0.25)
    """
    if epoch_interval is None:
        epoch_interval = DEFAULT_EPOCH_INTERVAL
    if not isinstance(epoch_interval, timedelta):
        msg = (
            f"epoch_interval must be a datetime.timedelta; got "
            f"{type(epoch_interval).__name__} {epoch_interval!r}"
        )
        raise TypeError(msg)
    if epoch_interval < timedelta(0):
        msg = f"epoch_interval must not be negative; got {epoch_interval}"
        raise ValueError(msg)
    return epoch_interval.total_seconds()


def fold_frontiers(frontiers: Iterable[int]) -> int:
    """The combined frontier of several points: the minimum (EOF if there are none).

    >>> fold_frontiers([3, 5, 4])
    3
    >>> fold_frontiers([]) == EOF_FRONTIER
    True
    """
    return min(frontiers, default=EOF_FRONTIER)


@dataclass(frozen=True)
class EpochClock:
    """Maps a monotonic time to an epoch: epochs last ``interval_s`` seconds from ``start``.

    Every worker of a run builds it from the same ``start`` (``time.monotonic()`` is one
    clock for all processes of a machine), so epochs mean the same on every worker.
    ``interval_s == 0`` means epochs are not timed: the executor advances one epoch per
    input batch instead.

    >>> clock = EpochClock(start=100.0, interval_s=10.0, first_epoch=1)
    >>> clock.epoch_at(100.0), clock.epoch_at(109.9), clock.epoch_at(110.0)
    (1, 1, 2)
    >>> clock.epoch_end(2)
    120.0
    """

    start: float
    interval_s: float
    first_epoch: int = FIRST_EPOCH

    @property
    def timed(self) -> bool:
        """Whether epochs advance with time (``interval_s > 0``)."""
        return self.interval_s > 0

    def epoch_at(self, now: float) -> int:
        """The epoch that is open at monotonic time ``now``."""
        if not self.timed or now <= self.start:
            return self.first_epoch
        return self.first_epoch + math.floor((now - self.start) / self.interval_s)

    def epoch_end(self, epoch: int) -> float:
        """The monotonic time at which ``epoch`` closes (infinity if untimed)."""
        if not self.timed:
            return math.inf
        return self.start + (epoch - self.first_epoch + 1) * self.interval_s


@dataclass
class SenderMarks:
    """End-of-epoch marks received on one exchange from each sending worker.

    ``frontier`` is the exchange's input frontier: the minimum over senders of the
    oldest epoch each may still send.

    >>> marks = SenderMarks.starting_at(1, senders=[0, 2])
    >>> marks.close(0, 1); marks.frontier
    1
    >>> marks.close(2, 3); marks.frontier
    2
    """

    next_epoch: dict[int, int] = field(default_factory=dict)

    @classmethod
    def starting_at(cls, epoch: int, senders: Iterable[int]) -> SenderMarks:
        """Marks for ``senders`` that may all still send ``epoch``."""
        return cls({s: epoch for s in senders})

    def close(self, sender: int, epoch: int) -> None:
        """``sender`` will send nothing more of epochs up to ``epoch`` (inclusive)."""
        if epoch + 1 > self.next_epoch[sender]:
            self.next_epoch[sender] = epoch + 1

    def eof(self, sender: int) -> None:
        """``sender`` will send nothing more at all."""
        self.next_epoch[sender] = EOF_FRONTIER

    @property
    def frontier(self) -> int:
        """Oldest epoch any sender may still send (EOF when all are done)."""
        return fold_frontiers(self.next_epoch.values())
