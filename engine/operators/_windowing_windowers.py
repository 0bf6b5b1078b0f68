"""Windowers for the windowing operators: which windows an item falls in, and when they close.

A :class:`Windower` is configuration; :meth:`Windower.build` makes one
:class:`WindowerLogic` per key. Window ids are ints: for sliding and tumbling windows
window ``i`` starts at ``align_to + i * offset`` (negative before ``align_to``); session
ids count up from 0 per key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from engine.operators._windowing_clocks import UTC_MIN, ZERO_TD

__all__ = [
    "LATE_SESSION_ID",
    "SessionWindower",
    "SlidingState",
    "SlidingWindower",
    "TumblingWindower",
    "WindowMetadata",
    "Windower",
    "WindowerLogic",
]

S = TypeVar("S")

_EMPTY: tuple[()] = ()

LATE_SESSION_ID: int = -1
"""The window id that late items of session windows are reported with."""


@dataclass
class WindowMetadata:
    """Where a window starts and ends, and which windows were merged into it.

    For sliding and tumbling windows ``close_time`` is exclusive; for session windows
    it is the timestamp of the last item (inclusive).
    """

    open_time: datetime
    """When the window opened."""
    close_time: datetime
    """When the window closed."""
    merged_ids: set[int] = field(default_factory=set)
    """Ids of the windows merged into this one before it closed."""

    def _copy(self) -> WindowMetadata:
        return WindowMetadata(self.open_time, self.close_time, set(self.merged_ids))


class WindowerLogic(ABC, Generic[S]):
    """The per-key window bookkeeping of a windowing step. Built by :meth:`Windower.build`."""

    @abstractmethod
    def open_for(self, timestamp: datetime) -> Iterable[int]:
        """Open (if needed) and return the ids of the windows an on-time item belongs to."""

    @abstractmethod
    def late_for(self, timestamp: datetime) -> Iterable[int]:
        """The ids of the windows a late item would have belonged to (keep no state)."""

    @abstractmethod
    def merged(self) -> Iterable[tuple[int, int]]:
        """``(original_id, target_id)`` pairs merged since the last call (once each)."""

    @abstractmethod
    def close_for(self, watermark: datetime) -> Iterable[tuple[int, WindowMetadata]]:
        """Close and return the windows the ``watermark`` has passed, with their metadata."""

    @abstractmethod
    def notify_at(self) -> datetime | None:
        """When (in the clock's time) the next window may close, or ``None``."""

    @abstractmethod
    def is_empty(self) -> bool:
        """Whether no state needs to be kept (the key's state is dropped if so)."""

    @abstractmethod
    def snapshot(self) -> S:
        """An immutable, picklable copy of the state; given back to :meth:`Windower.build`."""


class Windower(ABC, Generic[S]):
    """Configuration of a kind of window; builds a :class:`WindowerLogic` per key."""

    @abstractmethod
    def build(self, resume_state: S | None) -> WindowerLogic[S]:
        """Make the logic for one key, from a previous snapshot or None."""


def _check_length(owner: str, name: str, value: object) -> None:
    if not isinstance(value, timedelta):
        msg = f"{owner} {name} must be a datetime.timedelta; got {type(value).__name__}"
        raise TypeError(msg)
    if value <= ZERO_TD:
        msg = f"{owner} {name} must be positive; got {value}"
        raise ValueError(msg)


def _check_align_to(owner: str, align_to: object) -> None:
    if not isinstance(align_to, datetime):
        msg = f"{owner} align_to must be a datetime; got {type(align_to).__name__}"
        raise TypeError(msg)
    if align_to.tzinfo is None or align_to.utcoffset() is None:
        msg = (
            f"{owner} align_to must be a timezone-aware datetime (clocks produce aware UTC "
            f"datetimes); got naive {align_to!r}. Use e.g. datetime(..., tzinfo=timezone.utc)"
        )
        raise ValueError(msg)


@dataclass(frozen=True)
class _SlidingState:
    """Snapshot of sliding/tumbling window bookkeeping: the open windows."""

    opened: dict[int, WindowMetadata]


SlidingState = _SlidingState
"""The snapshot type of sliding/tumbling windowers (for the window kernel, which writes
the same snapshots; the class keeps its private name so stored pickles stay valid)."""


class _SlidingWindowerLogic(WindowerLogic[_SlidingState]):
    """Fixed-length windows starting every ``offset``; tumbling when offset == length."""

    __slots__ = ("align_to", "length", "offset", "opened", "tumbling")

    def __init__(
        self,
        length: timedelta,
        offset: timedelta,
        align_to: datetime,
        state: _SlidingState | None,
    ) -> None:
        self.length = length
        self.offset = offset
        self.align_to = align_to
        self.tumbling = offset == length
        self.opened: dict[int, WindowMetadata] = (
            {} if state is None else {i: m._copy() for i, m in state.opened.items()}
        )

    def _ids_for(self, timestamp: datetime) -> range:
        since_align = timestamp - self.align_to
        first = (since_align - self.length) // self.offset + 1
        return range(first, since_align // self.offset + 1)

    def _metadata(self, window_id: int) -> WindowMetadata:
        open_time = self.align_to + self.offset * window_id
        return WindowMetadata(open_time, open_time + self.length)

    def open_for(self, timestamp: datetime) -> Iterable[int]:
        ids = self._ids_for(timestamp)
        opened = self.opened
        for window_id in ids:
            if window_id not in opened:
                opened[window_id] = self._metadata(window_id)
        return ids

    def open_tumbling(self, timestamps: list[datetime]) -> list[int]:
        """Batch :meth:`open_for` for tumbling windows: one window id per timestamp."""
        align_to, length = self.align_to, self.length
        ids = [(ts - align_to) // length for ts in timestamps]
        opened = self.opened
        for window_id in dict.fromkeys(ids):
            if window_id not in opened:
                opened[window_id] = self._metadata(window_id)
        return ids

    def late_for(self, timestamp: datetime) -> Iterable[int]:
        return self._ids_for(timestamp)

    def merged(self) -> Iterable[tuple[int, int]]:
        return _EMPTY

    def close_for(self, watermark: datetime) -> Iterable[tuple[int, WindowMetadata]]:
        opened = self.opened
        closed = [(i, m) for i, m in opened.items() if m.close_time <= watermark]
        for window_id, _meta in closed:
            del opened[window_id]
        # In order of close time: a key's windows then come out in the same order however
        # its items were batched (a watermark passing them one batch at a time closes
        # them in that order too). Opening order would depend on the batching.
        closed.sort(key=_close_time_of)
        return closed

    def notify_at(self) -> datetime | None:
        return min((m.close_time for m in self.opened.values()), default=None)

    def is_empty(self) -> bool:
        return not self.opened

    def snapshot(self) -> _SlidingState:
        return _SlidingState({i: m._copy() for i, m in self.opened.items()})


def _close_time_of(window: tuple[int, WindowMetadata]) -> datetime:
    return window[1].close_time


@dataclass
class SlidingWindower(Windower[_SlidingState]):
    """Windows of ``length`` starting every ``offset``, aligned so one starts at ``align_to``.

    Window ``i`` covers ``[align_to + i * offset, align_to + i * offset + length)``;
    ids before ``align_to`` are negative. With ``offset < length`` windows overlap and an
    item can be in several; ``offset > length`` would leave gaps and is a ValueError.
    """

    length: timedelta
    offset: timedelta
    align_to: datetime

    def __post_init__(self) -> None:
        _check_length("SlidingWindower", "length", self.length)
        _check_length("SlidingWindower", "offset", self.offset)
        _check_align_to("SlidingWindower", self.align_to)
        if self.offset > self.length:
            msg = (
                f"SlidingWindower offset ({self.offset}) can't be longer than length "
                f"({self.length}): items in the gaps between windows would be lost"
            )
            raise ValueError(msg)

    def build(self, resume_state: _SlidingState | None) -> WindowerLogic[_SlidingState]:
        return _SlidingWindowerLogic(self.length, self.offset, self.align_to, resume_state)


@dataclass
class TumblingWindower(Windower[_SlidingState]):
    """Back-to-back windows of ``length``, aligned so one starts at ``align_to``.

    Each item is in exactly one window; window ``i`` covers
    ``[align_to + i * length, align_to + (i + 1) * length)``.
    """

    length: timedelta
    align_to: datetime

    def __post_init__(self) -> None:
        _check_length("TumblingWindower", "length", self.length)
        _check_align_to("TumblingWindower", self.align_to)

    def build(self, resume_state: _SlidingState | None) -> WindowerLogic[_SlidingState]:
        return _SlidingWindowerLogic(self.length, self.length, self.align_to, resume_state)


@dataclass(frozen=True)
class _SessionState:
    """Snapshot of session bookkeeping."""

    last_id: int
    sessions: dict[int, WindowMetadata]
    merge_queue: tuple[tuple[int, int], ...]


class _SessionWindowerLogic(WindowerLogic[_SessionState]):
    """Sessions: items within ``gap`` of each other share a window; sessions may merge."""

    __slots__ = ("gap", "last_id", "merge_queue", "sessions")

    def __init__(self, gap: timedelta, state: _SessionState | None) -> None:
        self.gap = gap
        if state is None:
            self.last_id = LATE_SESSION_ID
            self.sessions: dict[int, WindowMetadata] = {}
            self.merge_queue: list[tuple[int, int]] = []
        else:
            self.last_id = state.last_id
            self.sessions = {i: m._copy() for i, m in state.sessions.items()}
            self.merge_queue = list(state.merge_queue)

    def open_for(self, timestamp: datetime) -> Iterable[int]:
        gap = self.gap
        # The first session (in creation order) the item is in or within the gap of wins.
        for window_id, meta in self.sessions.items():
            before_open = meta.open_time - timestamp
            after_close = timestamp - meta.close_time
            if before_open <= ZERO_TD and after_close <= ZERO_TD:
                return (window_id,)
            if ZERO_TD < before_open <= gap:
                meta.open_time = timestamp
                self._find_merges()
                return (window_id,)
            if ZERO_TD < after_close <= gap:
                meta.close_time = timestamp
                self._find_merges()
                return (window_id,)
        self.last_id += 1
        self.sessions[self.last_id] = WindowMetadata(timestamp, timestamp)
        return (self.last_id,)

    def _find_merges(self) -> None:
        """Merge sessions that a grown session now reaches, into the earlier-opened one."""
        sessions = self.sessions
        if len(sessions) < 2:
            return
        ordered = sorted(sessions.items(), key=lambda id_meta: id_meta[1].open_time)
        target_id, target = ordered[0]
        for window_id, meta in ordered[1:]:
            if meta.open_time - target.close_time <= self.gap:
                if meta.close_time > target.close_time:
                    target.close_time = meta.close_time
                target.merged_ids.add(window_id)
                target.merged_ids |= meta.merged_ids
                self.merge_queue.append((window_id, target_id))
                del sessions[window_id]
            else:
                target_id, target = window_id, meta

    def late_for(self, timestamp: datetime) -> Iterable[int]:
        return (LATE_SESSION_ID,)

    def merged(self) -> Iterable[tuple[int, int]]:
        merged, self.merge_queue = self.merge_queue, []
        return merged

    def close_for(self, watermark: datetime) -> Iterable[tuple[int, WindowMetadata]]:
        try:
            close_before = watermark - self.gap
        except OverflowError:
            close_before = UTC_MIN
        sessions = self.sessions
        closed = [(i, m) for i, m in sessions.items() if m.close_time < close_before]
        for window_id, _meta in closed:
            del sessions[window_id]
        # In time order, not creation order (with ``ordered=False`` a later session can
        # be created first): as item-by-item processing would close them, one by one.
        closed.sort(key=_close_time_of)
        return closed

    def notify_at(self) -> datetime | None:
        earliest = min((m.close_time for m in self.sessions.values()), default=None)
        return None if earliest is None else earliest + self.gap

    def is_empty(self) -> bool:
        # Never forget a key: reusing session ids would confuse downstream joins on ids.
        return False

    def snapshot(self) -> _SessionState:
        return _SessionState(
            self.last_id,
            {i: m._copy() for i, m in self.sessions.items()},
            tuple(self.merge_queue),
        )


@dataclass
class SessionWindower(Windower[_SessionState]):
    """Per key, a window lasts while items keep arriving within ``gap`` of each other.

    An item within ``gap`` of two sessions merges them; the merged window keeps the id
    of the earlier one and lists the others in :attr:`WindowMetadata.merged_ids`. Late
    items are reported with window id :data:`LATE_SESSION_ID`.
    """

    gap: timedelta

    def __post_init__(self) -> None:
        if not isinstance(self.gap, timedelta):
            msg = f"SessionWindower gap must be a datetime.timedelta; got {type(self.gap).__name__}"
            raise TypeError(msg)
        if self.gap < ZERO_TD:
            msg = f"SessionWindower gap must not be negative; got {self.gap}"
            raise ValueError(msg)

    def build(self, resume_state: _SessionState | None) -> WindowerLogic[_SessionState]:
        return _SessionWindowerLogic(self.gap, resume_state)
