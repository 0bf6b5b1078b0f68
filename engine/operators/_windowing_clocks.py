"""Clocks for the windowing operators: where an item's timestamp and the watermark come from.

A :class:`Clock` is configuration; :meth:`Clock.build` makes one :class:`ClockLogic` per
key. Besides the public per-item interface, the built-in clock logics stamp a whole batch
at once (``_stamp_batch``), which is what the window step uses on its hot path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from engine._checks import require_callable
from engine.errors import item_repr

__all__ = [
    "UTC_MAX",
    "UTC_MIN",
    "ZERO_TD",
    "Clock",
    "ClockLogic",
    "EventClock",
    "SystemClock",
]

V = TypeVar("V")
S = TypeVar("S")

ZERO_TD: timedelta = timedelta(0)
"""A zero length of time."""

UTC_MAX: datetime = datetime.max.replace(tzinfo=UTC)
"""The latest representable UTC datetime (the watermark at EOF)."""

UTC_MIN: datetime = datetime.min.replace(tzinfo=UTC)
"""The earliest representable UTC datetime."""


def _system_utc_now() -> datetime:
    return datetime.now(UTC)


system_utc_now = _system_utc_now
"""The default ``now_getter`` of the clocks (the window kernel recognises it)."""


def _same_time(timestamp: datetime) -> datetime | None:
    return timestamp


class ClockLogic(ABC, Generic[V, S]):
    """The per-key sense of time of a windowing step: item timestamps and the watermark.

    Built by :meth:`Clock.build` for every key. Items with a timestamp before the
    watermark are late.
    """

    @abstractmethod
    def before_batch(self) -> None:
        """Called once before the :meth:`on_item` calls for a batch of items."""

    @abstractmethod
    def on_item(self, value: V) -> tuple[datetime, datetime]:
        """Return ``(timestamp of value, watermark after it)``."""

    @abstractmethod
    def on_notify(self) -> datetime:
        """Return the current watermark when no item arrived."""

    @abstractmethod
    def on_eof(self) -> datetime:
        """Return the watermark at the end of input (usually :data:`UTC_MAX`).

        Must not change the state that :meth:`snapshot` returns.
        """

    @abstractmethod
    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        """The UTC system time at which ``timestamp`` is reached, or ``None`` for never."""

    @abstractmethod
    def snapshot(self) -> S:
        """An immutable, picklable copy of the state; given back to :meth:`Clock.build`."""


class Clock(ABC, Generic[V, S]):
    """Configuration of a sense of time; builds a :class:`ClockLogic` per key."""

    @abstractmethod
    def build(self, resume_state: S | None) -> ClockLogic[V, S]:
        """Make the logic for one key, from a previous :meth:`ClockLogic.snapshot` or None."""


@dataclass(frozen=True)
class _Stamped(Generic[V]):
    """A batch after the clock looked at it: timestamps of the on-time values, late ones."""

    values: list[V]
    timestamps: list[datetime]
    late: list[tuple[V, datetime]]
    watermark: datetime
    #: Whether ``timestamps`` are known to be in ascending order.
    in_order: bool = False


def _naive_timestamp_error(timestamps: list[Any]) -> TypeError | None:
    """A clear error if some timestamp is not an aware datetime; None if all are fine."""
    for ts in timestamps:
        if not isinstance(ts, datetime):
            return TypeError(
                f"the clock's ts_getter must return datetime objects; it returned "
                f"{type(ts).__name__} {item_repr(ts)}"
            )
        if ts.tzinfo is None or ts.utcoffset() is None:
            return TypeError(
                f"the clock's ts_getter returned the naive datetime {ts!r}; return "
                "timezone-aware datetimes, e.g. ts.replace(tzinfo=timezone.utc)"
            )
    return None


class _SystemClockLogic(ClockLogic[Any, None]):
    """Every item is stamped with the system time of its batch; watermark = that time."""

    __slots__ = ("_now", "_now_getter")

    def __init__(self, now_getter: Callable[[], datetime]) -> None:
        self._now_getter = now_getter
        self._now = now_getter()

    def _refresh(self) -> None:
        # The system clock can step backwards (NTP); the watermark must not.
        now = self._now_getter()
        if now > self._now:
            self._now = now

    def before_batch(self) -> None:
        self._refresh()

    def on_item(self, value: Any) -> tuple[datetime, datetime]:
        return (self._now, self._now)

    def on_notify(self) -> datetime:
        self._refresh()
        return self._now

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        return timestamp

    def snapshot(self) -> None:
        return None

    def _stamp_batch(self, values: list[Any]) -> _Stamped[Any]:
        self._refresh()
        now = self._now
        return _Stamped(values, [now] * len(values), [], now)


@dataclass
class SystemClock(Clock[Any, None]):
    """Stamp each item with the current system time (UTC); the watermark is that time.

    Nothing is ever late. At EOF every window closes.
    """

    def build(self, resume_state: None) -> ClockLogic[Any, None]:
        return _SystemClockLogic(_system_utc_now)


@dataclass(frozen=True)
class _EventClockState:
    """Snapshot of an event clock: the watermark base and the system time it was set."""

    system_time_of_max_event: datetime
    watermark_base: datetime


class _EventClockLogic(ClockLogic[V, _EventClockState]):
    """Watermark = (largest timestamp - wait) + system time elapsed since it was seen."""

    __slots__ = (
        "_now",
        "_system_time_of_max_event",
        "_to_system",
        "_ts_getter",
        "_wait",
        "_watermark_base",
        "now_getter",
    )

    def __init__(
        self,
        ts_getter: Callable[[V], datetime],
        wait: timedelta,
        now_getter: Callable[[], datetime],
        to_system: Callable[[datetime], datetime | None],
        state: _EventClockState | None,
    ) -> None:
        self._ts_getter = ts_getter
        self._wait = wait
        self.now_getter = now_getter
        self._to_system = to_system
        self._now = now_getter()
        if state is None:
            self._watermark_base = UTC_MIN
            self._system_time_of_max_event = self._now
        else:
            self._watermark_base = state.watermark_base
            self._system_time_of_max_event = state.system_time_of_max_event

    def before_batch(self) -> None:
        # The system clock can step backwards (NTP, leap seconds); hold the watermark
        # steady until it catches up instead of letting it regress.
        now = self.now_getter()
        if now > self._now:
            self._now = now

    def _watermark(self) -> datetime:
        return self._watermark_base + (self._now - self._system_time_of_max_event)

    def on_item(self, value: V) -> tuple[datetime, datetime]:
        timestamp = self._ts_getter(value)
        try:
            return timestamp, self._advance(timestamp)
        except TypeError:
            error = _naive_timestamp_error([timestamp])
            if error is not None:
                raise error from None
            raise

    def _advance(self, timestamp: datetime) -> datetime:
        """Account for an item stamped ``timestamp``; return the watermark after it."""
        watermark = self._watermark()
        try:
            candidate = timestamp - self._wait
        except OverflowError:
            # Unrepresentable: keep advancing with system time instead.
            return watermark
        if candidate > watermark:
            self._watermark_base = candidate
            self._system_time_of_max_event = self._now
            return candidate
        return watermark

    def on_notify(self) -> datetime:
        self.before_batch()
        return self._watermark()

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        return self._to_system(timestamp)

    def snapshot(self) -> _EventClockState:
        return _EventClockState(self._system_time_of_max_event, self._watermark_base)

    def _stamp_batch(self, values: list[V]) -> _Stamped[V]:
        """Stamp a batch in one pass; same results as :meth:`on_item` per value."""
        self.before_batch()
        timestamps = list(map(self._ts_getter, values))
        try:
            if self._wait >= ZERO_TD and sorted(timestamps) == timestamps:
                stamped = self._stamp_in_order(values, timestamps)
                if stamped is not None:
                    return stamped
            late_at, watermark = self._scan(timestamps)
        except TypeError:
            error = _naive_timestamp_error(timestamps)
            if error is not None:
                raise error from None
            raise
        if not late_at:
            return _Stamped(values, timestamps, [], watermark)
        late_set = set(late_at)
        keep = [i for i in range(len(values)) if i not in late_set]
        return _Stamped(
            [values[i] for i in keep],
            [timestamps[i] for i in keep],
            [(values[i], timestamps[i]) for i in late_at],
            watermark,
        )

    def _stamp_in_order(self, values: list[V], timestamps: list[datetime]) -> _Stamped[V] | None:
        """:meth:`_stamp_batch` for ascending timestamps and a non-negative wait, in C.

        Then an item is late exactly when it is before the watermark at the start of
        the batch (the items ahead of it move the watermark to at most its own
        timestamp), so the late ones are a prefix. ``None`` if a datetime overflows.
        """
        current = self._watermark()
        late = bisect_left(timestamps, current)
        if late < len(timestamps):
            try:
                reached = timestamps[-1] - self._wait
            except OverflowError:
                return None
            if reached > current:
                current = reached
                self._watermark_base = current
                self._system_time_of_max_event = self._now
        if not late:
            return _Stamped(values, timestamps, [], current, in_order=True)
        late_items = list(zip(values[:late], timestamps[:late], strict=True))
        return _Stamped(values[late:], timestamps[late:], late_items, current, in_order=True)

    def _scan(self, timestamps: list[datetime]) -> tuple[list[int], datetime]:
        """Indexes of the late timestamps and the watermark after all of them."""
        wait = self._wait
        current = self._watermark()
        late_at: list[int] = []
        if wait < ZERO_TD:
            return self._scan_slowly(timestamps)
        # With a non-negative wait an item is late exactly when it is before the
        # watermark left by the items ahead of it (an item that advances the watermark
        # to its timestamp - wait is never before it).
        try:
            if wait == ZERO_TD:
                highest = current
                for index, ts in enumerate(timestamps):
                    if ts < current:
                        late_at.append(index)
                    elif ts > current:
                        current = highest = ts
            else:
                highest = current + wait
                for index, ts in enumerate(timestamps):
                    if ts < current:
                        late_at.append(index)
                    elif ts > highest:
                        highest = ts
                        current = ts - wait
        except OverflowError:
            return self._scan_slowly(timestamps)
        if current > self._watermark():
            self._watermark_base = current
            self._system_time_of_max_event = self._now
        return late_at, current

    def _scan_slowly(self, timestamps: list[datetime]) -> tuple[list[int], datetime]:
        """Per-item scan for the edge cases (negative wait, datetime overflow)."""
        late_at: list[int] = []
        watermark = self._watermark()
        for index, ts in enumerate(timestamps):
            watermark = self._advance(ts)
            if ts < watermark:
                late_at.append(index)
        return late_at, watermark


def _stamp_with(clock: ClockLogic[V, Any], values: list[V], watermark: datetime) -> _Stamped[V]:
    """Stamp a batch through the per-item interface of any clock logic."""
    on_time: list[V] = []
    timestamps: list[datetime] = []
    late: list[tuple[V, datetime]] = []
    for value in values:
        ts, item_watermark = clock.on_item(value)
        if item_watermark < watermark:
            msg = (
                f"clock {type(clock).__name__} moved the watermark backwards from "
                f"{watermark} to {item_watermark}; a watermark must never regress"
            )
            raise ValueError(msg)
        watermark = item_watermark
        if ts < watermark:
            late.append((value, ts))
        else:
            on_time.append(value)
            timestamps.append(ts)
    return _Stamped(on_time, timestamps, late, watermark)


def stamp_batch(clock: ClockLogic[V, Any], values: list[V], watermark: datetime) -> _Stamped[V]:
    """Timestamps, late items and the new watermark for a batch of one key's values.

    ``watermark`` is the last watermark the clock reported (it may not go backwards).
    """
    fast = getattr(clock, "_stamp_batch", None)
    if fast is not None:
        return fast(values)
    clock.before_batch()
    return _stamp_with(clock, values, watermark)


@dataclass
class EventClock(Clock[V, _EventClockState]):
    """Use a timestamp carried by each item; the watermark follows the largest one seen.

    The watermark is the largest timestamp so far minus ``wait_for_system_duration``,
    plus the system time elapsed since that timestamp was seen. Items before the
    watermark are late. ``ts_getter`` must return timezone-aware datetimes (UTC);
    ``now_getter`` gives the system time (default: now in UTC) and ``to_system_utc``
    turns a window close time into the system time to wake up at (default: unchanged;
    ``None`` means do not wake up, wait for items or EOF).
    """

    ts_getter: Callable[[V], datetime]
    wait_for_system_duration: timedelta
    now_getter: Callable[[], datetime] = _system_utc_now
    to_system_utc: Callable[[datetime], datetime | None] = _same_time

    def __post_init__(self) -> None:
        require_callable(self.ts_getter, "ts_getter", where="EventClock")
        if not isinstance(self.wait_for_system_duration, timedelta):
            msg = (
                "EventClock wait_for_system_duration must be a datetime.timedelta; got "
                f"{type(self.wait_for_system_duration).__name__}"
            )
            raise TypeError(msg)

    def build(self, resume_state: _EventClockState | None) -> ClockLogic[V, _EventClockState]:
        return _EventClockLogic(
            self.ts_getter,
            self.wait_for_system_duration,
            self.now_getter,
            self.to_system_utc,
            resume_state,
        )
