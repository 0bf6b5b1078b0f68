"""The per-key logic behind :func:`engine.operators.windowing.window`.

One :class:`_WindowStepLogic` per key runs inside a ``stateful_batch`` step. It holds
the key's clock logic, windower logic and one :class:`WindowLogic` per open window.
Per batch it: stamps every value (late ones are reported, never dropped), queues the
on-time ones, inserts the due ones into their windows (in timestamp order when
``ordered``), applies merges and closes the windows the watermark has passed.

What it emits are events ``(kind, window_id, payload)`` with ``kind`` one of
:data:`DOWN`, :data:`LATE`, :data:`META`; the ``window`` operator splits them into its
three output streams.

Fold windows over the built-in clocks and sliding/tumbling windowers also declare a
batch kernel (:func:`window_kernel`, run by ``engine.runtime.nodes.window``) with the
same outputs and snapshots; :func:`general_path` turns that off while building a flow.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from operator import itemgetter
from typing import Any, Generic, TypeVar

from engine.operators._core import (
    StatefulBatchLogic,
    StatefulKernel,
    general_path,
    kernels_enabled,
)
from engine.operators._windowing_clocks import (
    UTC_MIN,
    Clock,
    ClockLogic,
    EventClock,
    SystemClock,
    stamp_batch,
)
from engine.operators._windowing_windowers import (
    SlidingWindower,
    TumblingWindower,
    Windower,
    WindowerLogic,
    _SlidingWindowerLogic,
)

__all__ = ["DOWN", "LATE", "META", "Unwrap", "WindowLogic", "group_by_window"]

V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")

DOWN = 0
"""Event kind: a value the window logic emitted."""
LATE = 1
"""Event kind: an upstream value that was late."""
META = 2
"""Event kind: the metadata of a window that closed."""

_EMPTY: tuple[()] = ()
_by_timestamp = itemgetter(1)


class Unwrap:
    """The mapper of a window step's ``unwrap_down``/``unwrap_late``/``unwrap_meta``
    steps: the events of one ``kind``, as ``(key, (window_id, payload))``.

    The window kernel recognizes these steps and hands each stream its items directly,
    without tagged events (see ``engine.runtime.nodes.window``).

    >>> Unwrap(LATE)([("k", (DOWN, 3, "x")), ("k", (LATE, 4, "y"))])
    [('k', (4, 'y'))]
    """

    __slots__ = ("kind",)

    def __init__(self, kind: int) -> None:
        self.kind = kind

    def __call__(self, batch: list[tuple[str, Event]]) -> list[tuple[str, tuple[int, Any]]]:
        kind = self.kind
        return [(key, (window_id, obj)) for key, (k, window_id, obj) in batch if k == kind]

    def __repr__(self) -> str:
        return f"Unwrap({self.kind})"


Event = tuple[int, int, Any]


def group_by_window(window_ids: list[int], values: list[Any]) -> dict[int, list[Any]]:
    """The values of each window id, in arrival order (``window_ids[i]`` is the window
    of ``values[i]``); one dict entry without a loop when they share one window.

    >>> group_by_window([0, 1, 0], ["a", "b", "c"])
    {0: ['a', 'c'], 1: ['b']}
    """
    first = window_ids[0]
    if window_ids.count(first) == len(window_ids):
        return {first: values}
    groups: dict[int, list[Any]] = {}
    for window_id, value in zip(window_ids, values, strict=True):
        group = groups.get(window_id)
        if group is None:
            groups[window_id] = [value]
        else:
            group.append(value)
    return groups


class WindowLogic(ABC, Generic[V, W, S]):
    """What a :func:`~engine.operators.windowing.window` step does inside one window.

    One instance per open window per key, built by the operator's ``builder``. Values
    returned from the methods are emitted downstream as ``(key, (window_id, value))``.
    """

    @abstractmethod
    def on_value(self, value: V) -> Iterable[W]:
        """Take a value that belongs to this window (in timestamp order if ordered)."""

    @abstractmethod
    def on_merge(self, original: Any) -> Iterable[W]:
        """Absorb the state of ``original`` (another window merged into this one)."""

    @abstractmethod
    def on_close(self) -> Iterable[W]:
        """The window closed; return the final values."""

    @abstractmethod
    def snapshot(self) -> S:
        """An immutable, picklable copy of the state; given back to the builder on resume."""


class _FoldWindowLogic(WindowLogic[V, S, S]):
    """Folds the values of one window; emits the accumulator when the window closes."""

    __slots__ = ("folder", "merger", "state")

    def __init__(self, folder: Callable[[S, V], S], merger: Callable[[S, S], S], state: S):
        self.folder = folder
        self.merger = merger
        self.state = state

    def on_value(self, value: V) -> Iterable[S]:
        self.state = self.folder(self.state, value)
        return _EMPTY

    def on_merge(self, original: Any) -> Iterable[S]:
        self.state = self.merger(self.state, original.state)
        return _EMPTY

    def on_close(self) -> Iterable[S]:
        return (self.state,)

    def snapshot(self) -> S:
        return copy.deepcopy(self.state)


@dataclass(frozen=True)
class FoldBuilder(Generic[V, S]):
    """Builds :class:`_FoldWindowLogic`; the window step recognises it to fold in bulk."""

    builder: Callable[[], S]
    folder: Callable[[S, V], S]
    merger: Callable[[S, S], S]

    def __call__(self, resume_state: S | None) -> _FoldWindowLogic[V, S]:
        state = self.builder() if resume_state is None else resume_state
        return _FoldWindowLogic(self.folder, self.merger, state)


@dataclass(frozen=True)
class WindowSnapshot:
    """Snapshot of one key of a window step; rebuilt by :func:`build_window_step`."""

    clock_state: Any
    windower_state: Any
    logic_states: dict[int, Any]
    queue: list[tuple[Any, datetime]]


class _WindowStepLogic(StatefulBatchLogic[Any, Event, WindowSnapshot]):
    """The stateful_batch logic of one key of a window step (see the module docstring)."""

    __slots__ = (
        "builder",
        "clock",
        "fold",
        "last_watermark",
        "logics",
        "ordered",
        "queue",
        "windower",
    )

    def __init__(
        self,
        clock: ClockLogic[Any, Any],
        windower: WindowerLogic[Any],
        builder: Callable[[Any], WindowLogic[Any, Any, Any]],
        ordered: bool,
        logics: dict[int, WindowLogic[Any, Any, Any]],
        queue: list[tuple[Any, datetime]],
    ) -> None:
        self.clock = clock
        self.windower = windower
        self.builder = builder
        self.ordered = ordered
        self.logics = logics
        self.queue = queue
        self.last_watermark = UTC_MIN
        #: Fold windows are updated in bulk (their on_value emits nothing).
        self.fold = builder if isinstance(builder, FoldBuilder) else None

    # -- StatefulBatchLogic ------------------------------------------------------------
    def on_batch(self, values: list[Any]) -> tuple[Iterable[Event], bool]:
        stamped = stamp_batch(self.clock, values, self.last_watermark)
        self._watermark_is(stamped.watermark)
        events: list[Event] = []
        if stamped.late:
            late_for = self.windower.late_for
            for value, ts in stamped.late:
                events.extend((LATE, window_id, value) for window_id in late_for(ts))
        self._flush(stamped.values, stamped.timestamps, stamped.watermark, events)
        return events, self._is_empty()

    def on_notify(self) -> tuple[Iterable[Event], bool]:
        return self._flush_at(self.clock.on_notify())

    def on_eof(self) -> tuple[Iterable[Event], bool]:
        return self._flush_at(self.clock.on_eof())

    def notify_at(self) -> datetime | None:
        when = self.windower.notify_at()
        if self.ordered and self.queue:
            # Queued items must be inserted once they become due, even without new items.
            queued = self.queue[0][1]
            when = queued if when is None else min(when, queued)
        return None if when is None else self.clock.to_system_utc(when)

    def snapshot(self) -> WindowSnapshot:
        return WindowSnapshot(
            self.clock.snapshot(),
            self.windower.snapshot(),
            {window_id: logic.snapshot() for window_id, logic in self.logics.items()},
            list(self.queue),
        )

    # -- internals ---------------------------------------------------------------------
    def _watermark_is(self, watermark: datetime) -> None:
        if watermark < self.last_watermark:
            msg = (
                f"clock {type(self.clock).__name__} moved the watermark backwards from "
                f"{self.last_watermark} to {watermark}; a watermark must never regress"
            )
            raise ValueError(msg)
        self.last_watermark = watermark

    def _flush_at(self, watermark: datetime) -> tuple[Iterable[Event], bool]:
        self._watermark_is(watermark)
        events: list[Event] = []
        self._flush([], [], watermark, events)
        return events, self._is_empty()

    def _is_empty(self) -> bool:
        return not self.logics and not self.queue and self.windower.is_empty()

    def _flush(
        self,
        values: list[Any],
        timestamps: list[datetime],
        watermark: datetime,
        events: list[Event],
    ) -> None:
        """Insert the due values, apply merges, close what the watermark passed."""
        if self.ordered:
            values, timestamps = self._due(values, timestamps, watermark)
        elif self.queue:  # left over from an ordered execution
            values = [v for v, _ in self.queue] + values
            timestamps = [ts for _, ts in self.queue] + timestamps
            self.queue = []
        if values:
            self._insert(values, timestamps, events)
        self._merge(events)
        self._close(watermark, events)

    def _due(
        self, values: list[Any], timestamps: list[datetime], watermark: datetime
    ) -> tuple[list[Any], list[datetime]]:
        """The queued and new values due at ``watermark``, sorted by timestamp."""
        queue = self.queue
        if not queue and (not timestamps or max(timestamps) <= watermark):
            # Everything is due at once (the common case): skip the queue.
            if any(a > b for a, b in pairwise(timestamps)):
                order = sorted(range(len(values)), key=timestamps.__getitem__)
                return [values[i] for i in order], [timestamps[i] for i in order]
            return values, timestamps
        # The queue stays sorted by timestamp (stable: ties keep arrival order), so the
        # due values are a prefix found by bisection, not a scan of the whole queue.
        arrived = list(zip(values, timestamps, strict=True))
        if any(a > b for a, b in pairwise(timestamps)):
            arrived.sort(key=_by_timestamp)
        in_order = not queue or not arrived or queue[-1][1] <= arrived[0][1]
        queue.extend(arrived)
        if not in_order:
            queue.sort(key=_by_timestamp)  # merges two sorted runs in linear time
        cut = bisect_right(queue, watermark, key=_by_timestamp)
        if cut == 0:
            return [], []
        due, self.queue = queue[:cut], queue[cut:]
        return [v for v, _ in due], [ts for _, ts in due]

    def _insert(self, values: list[Any], timestamps: list[datetime], events: list[Event]) -> None:
        windower = self.windower
        if isinstance(windower, _SlidingWindowerLogic) and windower.tumbling:
            window_ids = windower.open_tumbling(timestamps)
        else:
            open_for = windower.open_for
            pairs = [
                (window_id, v)
                for v, ts in zip(values, timestamps, strict=True)
                for window_id in open_for(ts)
            ]
            window_ids = [window_id for window_id, _ in pairs]
            values = [v for _, v in pairs]
        if self.fold is not None:
            self._fold(window_ids, values)
            return
        logics, builder = self.logics, self.builder
        for window_id, value in zip(window_ids, values, strict=True):
            logic = logics.get(window_id)
            if logic is None:
                logic = logics[window_id] = builder(None)
            for w in logic.on_value(value):
                events.append((DOWN, window_id, w))

    def _fold(self, window_ids: list[int], values: list[Any]) -> None:
        """Fold values into their windows' accumulators, one window at a time."""
        fold = self.fold
        assert fold is not None
        groups = group_by_window(window_ids, values)
        logics, folder = self.logics, fold.folder
        for window_id, group in groups.items():
            logic: Any = logics.get(window_id)
            if logic is None:
                logic = logics[window_id] = fold(None)
            state = logic.state
            for value in group:
                state = folder(state, value)
            logic.state = state

    def _merge(self, events: list[Event]) -> None:
        logics = self.logics
        for original_id, target_id in self.windower.merged():
            if original_id == target_id:
                continue
            original = logics.pop(original_id)
            for w in logics[target_id].on_merge(original):
                events.append((DOWN, target_id, w))

    def _close(self, watermark: datetime, events: list[Event]) -> None:
        logics = self.logics
        for window_id, meta in self.windower.close_for(watermark):
            logic = logics.pop(window_id, None)
            if logic is not None:
                for w in logic.on_close():
                    events.append((DOWN, window_id, w))
            events.append((META, window_id, meta))


def window_step_builder(
    clock: Any,
    windower: Any,
    builder: Callable[[Any], WindowLogic[Any, Any, Any]],
    ordered: bool,
) -> Callable[[WindowSnapshot | None], _WindowStepLogic]:
    """The ``stateful_batch`` builder of a window step."""

    def build(resume_state: WindowSnapshot | None) -> _WindowStepLogic:
        if resume_state is None:
            return _WindowStepLogic(
                clock.build(None), windower.build(None), builder, ordered, {}, []
            )
        logics = {i: builder(state) for i, state in resume_state.logic_states.items()}
        return _WindowStepLogic(
            clock.build(resume_state.clock_state),
            windower.build(resume_state.windower_state),
            builder,
            ordered,
            logics,
            list(resume_state.queue),
        )

    return build


@dataclass(frozen=True)
class WindowKernelParams:
    """What the window kernel needs: sliding/tumbling geometry, the clock and the folds.

    ``counting``: the fold counts items (``count_window``), so it may count in bulk.
    """

    clock: Clock[Any, Any]
    length: Any
    offset: Any
    align_to: datetime
    fold: FoldBuilder[Any, Any]
    ordered: bool
    counting: bool


def window_kernel(
    clock: Clock[Any, Any],
    windower: Windower[Any],
    builder: Callable[[Any], WindowLogic[Any, Any, Any]],
    ordered: bool,
    user_step_id: str,
    counting: bool = False,
) -> StatefulKernel | None:
    """The batch kernel for a window step, or ``None`` if it needs the general path.

    Only folds (:class:`FoldBuilder`) over an :class:`EventClock` or :class:`SystemClock`
    and a :class:`TumblingWindower` or :class:`SlidingWindower` (exactly those classes:
    a subclass may change their behaviour) run on the kernel.
    """
    if not kernels_enabled() or not isinstance(builder, FoldBuilder):
        return None
    if type(clock) not in (EventClock, SystemClock):
        return None
    if type(windower) is TumblingWindower:
        length = offset = windower.length
    elif type(windower) is SlidingWindower:
        length, offset = windower.length, windower.offset
    else:
        return None
    params = WindowKernelParams(
        clock, length, offset, windower.align_to, builder, ordered, counting
    )
    return StatefulKernel("window", builder.folder, user_step_id, params)


__all__ += [
    "FoldBuilder",
    "WindowKernelParams",
    "WindowSnapshot",
    "general_path",
    "window_kernel",
    "window_step_builder",
]
