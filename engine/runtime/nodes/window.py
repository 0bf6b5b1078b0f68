"""The window kernel: tumbling and sliding fold windows, run for all keys in one pass.

``fold_window`` (and ``count_window``, ``reduce_window``, ``max_window``, ``min_window``)
over an :class:`~engine.operators.windowing.EventClock` or
:class:`~engine.operators.windowing.SystemClock` with a tumbling or sliding windower
declare this kernel (``StatefulKernel("window", ...)``, see
:func:`~engine.operators._windowing_core.window_kernel`). :class:`WindowKernelNode`
then keeps, per key, the clock logic, the open windows with their accumulators and the
queue of values not yet due (``ordered``), instead of one ``_WindowStepLogic`` per key
with a ``WindowLogic`` per window. Per batch it groups the items by key and for each key:
stamps the values with the key's clock (late ones are reported), computes their window
ids with integer arithmetic, folds them per window (``count_window`` counts with a
``Counter``), and closes windows only when the key's earliest close time is due (no
scan of the open windows otherwise). Outputs, their order, late handling, timers and
the per-key snapshots (:class:`~engine.operators._windowing_core.WindowSnapshot`) are
the same as the general path's, so either can resume from the other's store.

Outputs: the general path emits tagged events ``(key, (kind, window_id, payload))`` that
three ``unwrap_*`` steps split into ``down``, ``late`` and ``meta``. The kernel instead
makes each stream's items ``(key, (window_id, payload))`` itself and hands them straight
to its ``unwrap_*`` step, which passes them on (the worker runs those steps as
pass-throughs, keeping their step ids and counts), so no tagged tuple is made and no
batch is filtered three times. A window's metadata, or its value, is not made at all
when nothing reads that stream; late items always are (their count is how ``shmflow
tune`` tells that results depend on the worker count).

Pre-aggregation before the exchange (several workers): with a ``SystemClock`` an item's
timestamp is the system time at which the key's owner applies it, so the kernel folds the
items of each key per epoch into one partial on the worker that has them and ships the
partial at epoch close; the owner stamps the partial when it arrives and merges it into
the windows of that time with the fold's ``merger``. That is exactly what the general
path does if the items happen to arrive together at the end of the epoch. With an
``EventClock`` items keep crossing one by one: whether an item is late depends on the
watermark of its key on the owning worker at the moment the item is applied, which the
sending worker cannot know (other workers' items of the same key, and the owner's system
time, move it); a partial could not say which of its items would have been late, and a
late item must reach the ``late`` stream with its value.

Holding (an event clock on the system's time): a batch often holds few values per key
(a log of 200 paths read 1,000 lines at a time gives each path 5), so the per-key work
of a pass outweighs the per-value work. The kernel then holds the batches of an epoch
and applies them in one pass once :data:`HOLD_ITEMS` values are held, when a round of
the worker brings no more, after :data:`HOLD_S` seconds, and always before timers,
EOF and the epoch's snapshot. Values are applied in the order they came, so outputs
and late items are those of applying each batch at once, read a little later from the
system clock; that reading is real time, which no run can reproduce anyway. A clock on
any other time (a test clock, say) is applied batch by batch.
"""

from __future__ import annotations

import copy
import math
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from heapq import heappop as _heappop
from heapq import heappush as _heappush
from itertools import chain
from operator import itemgetter
from typing import Any

from engine._keyed import check_keyed
from engine.errors import ItemTypeError
from engine.operators._windowing_clocks import (
    UTC_MIN,
    ClockLogic,
    EventClock,
    SystemClock,
    stamp_batch,
    system_utc_now,
)
from engine.operators._windowing_core import (
    DOWN,
    LATE,
    META,
    Unwrap,
    WindowKernelParams,
    WindowSnapshot,
    group_by_window,
)
from engine.operators._windowing_windowers import SlidingState, WindowMetadata
from engine.runtime.nodes.base import Node, NodeContext, as_timestamp
from engine.runtime.nodes.stateful import StatefulNode
from engine.runtime.nodes.stateless import PassNode
from engine.runtime.plan import FlatMapBatchConfig, PlanStep
from engine.runtime.progress import EOF_FRONTIER
from recovery import TOMBSTONE

__all__ = ["WindowKernelNode", "unwrap_kind"]

_by_timestamp = itemgetter(1)
_first = itemgetter(0)
_MISSING = object()
_TUPLE_ONLY = {tuple}
#: Holding (see the module docstring): apply held values once this many are held...
HOLD_ITEMS = 16384
#: ...or once the first of them has waited this long (seconds).
HOLD_S = 0.05
#: Queued runs of one key (see ``_KeyWindows.queue``) beyond which they are merged.
MAX_QUEUE_RUNS = 16
_STR_ONLY = {str}


class _KeyWindows:
    """One key's windowing state: clock, open windows (in opening order), accumulators,
    values not yet due, and the earliest close time (``None``: no window open)."""

    __slots__ = (
        "accs",
        "clock",
        "next_close",
        "opened",
        "queue",
        "timer_when",
        "watermark",
    )

    def __init__(
        self,
        clock: ClockLogic[Any, Any],
        opened: dict[int, WindowMetadata],
        accs: dict[int, Any],
        queued: list[tuple[Any, datetime]],
    ) -> None:
        self.clock = clock
        self.opened = opened
        self.accs = accs
        #: Values not yet due: runs of ``(timestamps, values)`` in arrival order, each
        #: sorted by timestamp. A batch that starts before the last run ends opens a new
        #: run, so values are sorted once, when due, not re-merged per batch.
        self.queue: list[tuple[list[datetime], list[Any]]] = []
        if queued:  # ``(value, timestamp)`` pairs of a snapshot, maybe in arrival order
            ordered = sorted(queued, key=_by_timestamp)
            self.queue.append(([ts for _, ts in ordered], [v for v, _ in ordered]))
        self.watermark = UTC_MIN
        self.next_close: datetime | None = min(
            (m.close_time for m in opened.values()), default=None
        )
        #: The clock time the key's timer was last set for (skips re-arming it).
        self.timer_when: datetime | None = None


class _Outputs:
    """What one pass emits, per stream, as ``(key, (window_id, payload))``; ``None``
    for a stream nobody reads (its items are not even made)."""

    __slots__ = ("down", "late", "meta")

    def __init__(self, down: bool, meta: bool) -> None:
        self.down: list[Any] | None = [] if down else None
        self.late: list[Any] = []
        self.meta: list[Any] | None = [] if meta else None

    def of(self, kind: int) -> list[Any] | None:
        return self.down if kind == DOWN else self.late if kind == LATE else self.meta


class WindowKernelNode(StatefulNode):
    """Fold windows of every key of a batch in one pass (see the module docstring)."""

    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        super().__init__(step, ctx)
        assert self.kernel is not None
        params = self.kernel.params
        assert isinstance(params, WindowKernelParams)
        self.clock = params.clock
        self.length = params.length
        self.offset = params.offset
        self.align_to = params.align_to
        self.tumbling = params.length == params.offset
        self.fold = params.fold
        self.ordered = params.ordered
        self.counting = params.counting
        self.keys: dict[str, _KeyWindows] = {}
        #: SystemClock on several workers: fold per key and epoch before the exchange.
        self.combine = ctx.config.worker_count > 1 and type(params.clock) is SystemClock
        self.partials: dict[int, dict[str, Any]] = {}
        #: An event clock on the system's time: a key's watermark reaches a close time
        #: no sooner than the wall time that takes (earlier wake-ups would be no-ops).
        self.real_time = (
            type(params.clock) is EventClock
            and params.clock.now_getter is system_utc_now
            and ctx.config.wall_now is time.time
        )
        #: Held values of epoch ``held_epoch`` (real-time event clocks only), since
        #: wall time ``held_at``; ``held_seen``: how many the last wake saw.
        self.held: list[Any] = []
        self.held_epoch = 0
        self.held_at = 0.0
        self.held_seen = 0
        #: Per stream kind, in the order of the consumers: the ``unwrap_*`` step reading
        #: it (see :meth:`wired`); ``None``: emit tagged events like the general path.
        self.split: list[tuple[int, list[tuple[Node, int]]]] | None = None
        self.wants_down = self.wants_meta = True

    def wired(self) -> None:
        """Hand each ``unwrap_*`` step its stream's items directly where they run as
        pass-throughs (the worker's ``node_types``); skip the metadata, or the values,
        of a window when nothing reads them. Late items are always made: they are few,
        and their count shows when results depend on the worker count."""
        split: list[tuple[int, list[tuple[Node, int]]]] = []
        for reader in self.downstream[0]:
            kind = unwrap_kind(reader[0].step)
            if kind is None or not isinstance(reader[0], PassNode):
                return  # some other step reads the tagged events
            split.append((kind, [reader]))
        self.split = split
        read = {kind for kind, ((node, _),) in self.split if node.downstream[0]}
        self.wants_down, self.wants_meta = DOWN in read, META in read

    def _outputs(self) -> _Outputs:
        return _Outputs(self.wants_down, self.wants_meta)

    def _emit_outputs(self, epoch: int, out: _Outputs) -> None:
        if self.split is not None:
            for kind, consumers in self.split:
                items = out.of(kind)
                if items:
                    self.emit_to(consumers, epoch, items)
            return
        tagged = [
            (key, (kind, window_id, payload))
            for kind in (DOWN, LATE, META)
            for key, (window_id, payload) in out.of(kind) or ()
        ]
        if tagged:
            self.emit(0, epoch, tagged)

    # -- data --------------------------------------------------------------------------
    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        if not self.combine:
            super().push(port, epoch, batch)
            return
        partial = self.partials.get(epoch)
        if partial is None:
            partial = self.partials[epoch] = {}
        try:
            self._pre_fold(partial, batch)
        except ItemTypeError as bad:
            raise self.failure(epoch, bad) from None
        except (TypeError, ValueError) as ex:
            raise self.keyed_failure(epoch, batch, ex)  # noqa: B904
        except Exception as ex:
            raise self.failure(epoch, ex, "while folding items before the exchange") from ex

    def _pre_fold(self, partial: dict[str, Any], batch: list[Any]) -> None:
        if not set(map(type, batch)) <= _TUPLE_ONLY:
            check_keyed(self.step_id, batch)
        get = partial.get
        if self.counting:
            for key, count in Counter(map(_first, batch)).items():
                partial[key] = get(key, 0) + count
        else:
            folder, builder = self.fold.folder, self.fold.builder
            for key, value in batch:
                acc = get(key, _MISSING)
                partial[key] = folder(builder() if acc is _MISSING else acc, value)
        if not set(map(type, partial)) <= _STR_ONLY:
            check_keyed(self.step_id, batch)

    def before_marks(self, local_frontier: int) -> None:
        for epoch in sorted(e for e in self.partials if e < local_frontier):
            batch = self.route(epoch, list(self.partials.pop(epoch).items()))
            if batch:
                self.deliver(epoch, batch)

    def apply(self, epoch: int, batch: list[Any]) -> None:
        if not self.real_time:
            self._apply(epoch, batch)
            return
        held = self.held
        if held and epoch != self.held_epoch:
            self._release()
        if not held:
            self.held_epoch, self.held_at, self.held_seen = epoch, time.time(), 0
        held.extend(batch)
        if len(held) >= HOLD_ITEMS:
            self._release()

    def _release(self) -> None:
        """Apply the held values (see the module docstring)."""
        if self.held:
            batch, self.held = self.held, []
            self._apply(self.held_epoch, batch)

    def _apply(self, epoch: int, batch: list[Any]) -> None:
        groups = self.grouped(epoch, batch)
        keys, touched = self.keys, self.touched
        out = self._outputs()
        key = ""
        try:
            for key, values in groups.items():
                state = keys.get(key)
                if state is None:
                    state = keys[key] = _KeyWindows(self.clock.build(None), {}, {}, [])
                stamped = stamp_batch(state.clock, values, state.watermark)
                self._watermark_is(state, stamped.watermark)
                if stamped.late:
                    self._late(key, stamped.late, out)
                self._flush(key, state, stamped.values, stamped.timestamps, out, stamped.in_order)
                touched.add(key)
                self._settle(key, state)
        except Exception as ex:
            raise self.failure(epoch, ex, f"for key {key!r}") from ex
        self._emit_outputs(epoch, out)

    # -- timers and EOF ----------------------------------------------------------------
    def next_wake(self) -> float:
        wake_at = super().next_wake()
        return min(wake_at, self.held_at) if self.held else wake_at

    def wake(self, wall_now: float) -> bool:
        released = False
        if self.held:
            count = len(self.held)
            timer_due = super().next_wake() <= wall_now  # values came before the timer
            if count == self.held_seen or wall_now - self.held_at >= HOLD_S or timer_due:
                self._release()
                released = True
            else:
                self.held_seen = count
        return self._wake_timers(wall_now) or released

    def _wake_timers(self, wall_now: float) -> bool:
        if super().next_wake() > wall_now:
            return False
        epoch = self.frontier if self.frontier != EOF_FRONTIER else self.ctx.epoch
        due = []
        heap, timers = self.timer_heap, self.timers
        while heap and heap[0][0] <= wall_now:
            at, key = _heappop(heap)
            if timers.get(key) == at:
                del timers[key]
                due.append(key)
        self._advance_keys(epoch, due, "on_notify")
        return bool(due)

    def upstream_eof(self, epoch: int) -> None:
        self._release()
        self._advance_keys(epoch, sorted(self.keys), "on_eof")

    def _snapshot(self, epoch: int) -> None:
        self._release()
        super()._snapshot(epoch)

    def _advance_keys(self, epoch: int, keys: list[str], method: str) -> None:
        """Move the watermark of ``keys`` (their clock's ``method``) and close windows."""
        out = self._outputs()
        key = ""
        try:
            for key in keys:
                state = self.keys.get(key)
                if state is None:
                    continue
                state.timer_when = None  # the timer fired or EOF: set it afresh
                watermark = getattr(state.clock, method)()
                self._watermark_is(state, watermark)
                self._flush(key, state, [], [], out)
                self.touched.add(key)
                self._settle(key, state)
        except Exception as ex:
            raise self.failure(epoch, ex, f"in {method} for key {key!r}") from ex
        self._emit_outputs(epoch, out)

    # -- recovery ----------------------------------------------------------------------
    def restore(self, key: str, state: Any) -> None:
        assert isinstance(state, WindowSnapshot)
        opened = {
            i: WindowMetadata(m.open_time, m.close_time, set(m.merged_ids))
            for i, m in state.windower_state.opened.items()
        }
        windows = _KeyWindows(
            self.clock.build(state.clock_state),
            opened,
            dict(state.logic_states),
            list(state.queue),
        )
        self.keys[key] = windows
        self._settle(key, windows, may_discard=False)

    def state_of(self, key: str) -> Any:
        state = self.keys.get(key)
        if state is None:
            return TOMBSTONE
        queued_times, queued = _merged(state.queue)
        return WindowSnapshot(
            state.clock.snapshot(),
            SlidingState(
                {
                    i: WindowMetadata(m.open_time, m.close_time, set(m.merged_ids))
                    for i, m in state.opened.items()
                }
            ),
            {i: copy.deepcopy(acc) for i, acc in state.accs.items()},
            list(zip(queued, queued_times, strict=True)),
        )

    # -- one key -----------------------------------------------------------------------
    @staticmethod
    def _watermark_is(state: _KeyWindows, watermark: datetime) -> None:
        if watermark < state.watermark:
            msg = (
                f"clock {type(state.clock).__name__} moved the watermark backwards from "
                f"{state.watermark} to {watermark}; a watermark must never regress"
            )
            raise ValueError(msg)
        state.watermark = watermark

    def _ids_for(self, timestamp: datetime) -> range:
        since_align = timestamp - self.align_to
        first = (since_align - self.length) // self.offset + 1
        return range(first, since_align // self.offset + 1)

    def _late(self, key: str, late: list[tuple[Any, datetime]], out: _Outputs) -> None:
        append, ids_for = out.late.append, self._ids_for
        for value, ts in late:
            for window_id in ids_for(ts):
                append((key, (window_id, value)))

    def _flush(
        self,
        key: str,
        state: _KeyWindows,
        values: list[Any],
        timestamps: list[datetime],
        out: _Outputs,
        in_order: bool = False,
    ) -> None:
        """Fold the due values into their windows, close what the watermark passed
        (``in_order``: the timestamps are known to be ascending)."""
        watermark = state.watermark
        if self.ordered:
            values, timestamps = _due(state, values, timestamps, watermark, in_order)
        elif state.queue:  # left over from an ordered execution
            queued_times, queued = _merged(state.queue)
            values = queued + values
            timestamps = queued_times + timestamps
            state.queue = []
        if values:
            self._insert(state, values, timestamps)
        if state.next_close is not None and state.next_close <= watermark:
            self._close(key, state, watermark, out)

    def _insert(self, state: _KeyWindows, values: list[Any], timestamps: list[datetime]) -> None:
        align_to, offset = self.align_to, self.offset
        if self.tumbling and self.ordered and not self.combine:
            runs = self._tumbling_runs(timestamps)
            if runs is not None:
                self._open(state, [window_id for window_id, _, _ in runs])
                self._fold_runs(state, runs, values)
                return
        if self.tumbling and not (self.ordered or self.combine or self.counting):
            self._fold_in_arrival_order(state, values, timestamps)
            return
        if self.tumbling:
            window_ids = [(ts - align_to) // offset for ts in timestamps]
        else:
            ids_for = self._ids_for
            pairs = [
                (window_id, v)
                for v, ts in zip(values, timestamps, strict=True)
                for window_id in ids_for(ts)
            ]
            window_ids = [window_id for window_id, _ in pairs]
            values = [v for _, v in pairs]
        self._open(state, dict.fromkeys(window_ids))
        if self.combine:
            self._merge_partials(state, window_ids, values)
        elif self.counting:
            accs = state.accs
            get = accs.get
            for window_id, count in Counter(window_ids).items():
                accs[window_id] = get(window_id, 0) + count
        else:
            self._fold(state, window_ids, values)

    def _open(self, state: _KeyWindows, window_ids: Iterable[int]) -> None:
        """Open the windows of ``window_ids`` not open yet, in that order."""
        opened, align_to, offset = state.opened, self.align_to, self.offset
        for window_id in window_ids:
            if window_id not in opened:
                open_time = align_to + offset * window_id
                meta = opened[window_id] = WindowMetadata(open_time, open_time + self.length)
                if state.next_close is None or meta.close_time < state.next_close:
                    state.next_close = meta.close_time

    def _tumbling_runs(self, timestamps: list[datetime]) -> list[tuple[int, int, int]] | None:
        """``(window_id, start, end)``: ``timestamps[start:end]`` (sorted) fall in that
        tumbling window; one bisection per window instead of arithmetic per value.
        ``None`` where a window end is beyond what a datetime can hold."""
        align_to, offset = self.align_to, self.offset
        runs: list[tuple[int, int, int]] = []
        append = runs.append
        start, count = 0, len(timestamps)
        try:
            window_id = (timestamps[0] - align_to) // offset
            close = align_to + offset * (window_id + 1)
            while True:
                end = bisect_left(timestamps, close, start)
                append((window_id, start, end))
                if end == count:
                    return runs
                start = end
                close += offset
                window_id += 1
                if timestamps[start] >= close:  # a gap: skip the empty windows
                    window_id = (timestamps[start] - align_to) // offset
                    close = align_to + offset * (window_id + 1)
        except OverflowError:
            return None

    def _fold_runs(
        self, state: _KeyWindows, runs: list[tuple[int, int, int]], values: list[Any]
    ) -> None:
        accs = state.accs
        if self.counting:
            get = accs.get
            for window_id, start, end in runs:
                accs[window_id] = get(window_id, 0) + end - start
            return
        folder, builder = self.fold.folder, self.fold.builder
        whole = len(runs) == 1
        for window_id, start, end in runs:
            acc = accs[window_id] if window_id in accs else builder()
            for value in values if whole else values[start:end]:
                acc = folder(acc, value)
            accs[window_id] = acc

    def _fold_in_arrival_order(
        self, state: _KeyWindows, values: list[Any], timestamps: list[datetime]
    ) -> None:
        """Tumbling windows, ``ordered=False``: window id, open and fold in one pass over
        the values (no per-window grouping: each value goes straight into its window).

        A key's values mostly come in time order, so runs of them share a window: while
        a value falls in the current window's ``[start, end)`` (two comparisons) its id
        is not computed and the accumulator stays in a local, stored back when the run
        ends."""
        accs, opened = state.accs, state.opened
        get, folder, builder = accs.get, self.fold.folder, self.fold.builder
        align_to, offset = self.align_to, self.offset
        window_id: int | None = None
        start = end = align_to
        acc: Any = _MISSING
        for value, ts in zip(values, timestamps, strict=True):
            if not start <= ts < end:
                if window_id is not None:
                    accs[window_id] = acc
                window_id = (ts - align_to) // offset
                start = align_to + offset * window_id
                end = start + offset  # overflows where _open's close time would
                acc = get(window_id, _MISSING)
                if acc is _MISSING:
                    if window_id not in opened:
                        self._open(state, (window_id,))
                    acc = builder()
            acc = folder(acc, value)
        if window_id is not None:
            accs[window_id] = acc

    def _fold(self, state: _KeyWindows, window_ids: list[int], values: list[Any]) -> None:
        groups = group_by_window(window_ids, values)
        accs, folder, builder = state.accs, self.fold.folder, self.fold.builder
        for window_id, group in groups.items():
            acc = accs[window_id] if window_id in accs else builder()
            for value in group:
                acc = folder(acc, value)
            accs[window_id] = acc

    def _merge_partials(
        self, state: _KeyWindows, window_ids: list[int], partials: list[Any]
    ) -> None:
        accs, merger, shared = state.accs, self.fold.merger, not self.tumbling
        for window_id, partial in zip(window_ids, partials, strict=True):
            if shared:  # one partial goes into several sliding windows
                partial = copy.deepcopy(partial)
            acc = accs.get(window_id, _MISSING)
            accs[window_id] = partial if acc is _MISSING else merger(acc, partial)

    def _close(self, key: str, state: _KeyWindows, watermark: datetime, out: _Outputs) -> None:
        opened, accs, down, meta_out = state.opened, state.accs, out.down, out.meta
        # In order of close time, like the general path's windower (then batching and
        # holding do not change a key's output order).
        due = [(m.close_time, i) for i, m in opened.items() if m.close_time <= watermark]
        due.sort(key=_first)
        for _, window_id in due:
            meta = opened.pop(window_id)
            acc = accs.pop(window_id, _MISSING)
            if acc is not _MISSING and down is not None:
                down.append((key, (window_id, acc)))
            if meta_out is not None:
                meta_out.append((key, (window_id, meta)))
        state.next_close = min((m.close_time for m in opened.values()), default=None)

    def _settle(self, key: str, state: _KeyWindows, may_discard: bool = True) -> None:
        """Drop a key with nothing open or queued; else set its timer for its next close."""
        if may_discard and not state.opened and not state.queue:
            del self.keys[key]
            self.timers.pop(key, None)
            return
        when = state.next_close
        if self.ordered and state.queue:
            # Queued values must be folded once they are due, even without new items.
            queued = min(times[0] for times, _ in state.queue)
            when = queued if when is None else min(when, queued)
        if when == state.timer_when and key in self.timers:
            return
        state.timer_when = when
        wake_at = None if when is None else state.clock.to_system_utc(when)
        if wake_at is None:
            self.timers.pop(key, None)
            return
        at = as_timestamp(wake_at)
        if self.real_time and when is not None:
            at = max(at, _drift_reaches(state.clock, when))
        if self.timers.get(key) != at:
            self.timers[key] = at
            _heappush(self.timer_heap, (at, key))


def unwrap_kind(step: PlanStep) -> int | None:
    """The stream (``DOWN``, ``LATE`` or ``META``) that ``step`` gives, if it is one of a
    window step's ``unwrap_*`` steps; ``None`` for any other step."""
    config = step.config
    if isinstance(config, FlatMapBatchConfig) and isinstance(config.mapper, Unwrap):
        return config.mapper.kind
    return None


def _drift_reaches(clock: ClockLogic[Any, Any], when: datetime) -> float:
    """The wall time at which an event clock's watermark, moving with system time since
    its largest timestamp, reaches ``when`` (``-inf`` if it cannot say)."""
    state = clock.snapshot()
    try:
        return as_timestamp(state.system_time_of_max_event + (when - state.watermark_base))
    except (OverflowError, AttributeError):
        return -math.inf


def _due(
    state: _KeyWindows,
    values: list[Any],
    timestamps: list[datetime],
    watermark: datetime,
    in_order: bool = False,
) -> tuple[list[Any], list[datetime]]:
    """The queued and new values due at ``watermark``, sorted by timestamp (stable)."""
    if timestamps:
        if not in_order:
            values, timestamps = _in_time_order(values, timestamps)
        if not state.queue and timestamps[-1] <= watermark:
            return values, timestamps
        _enqueue(state, values, timestamps)
    due: list[tuple[list[datetime], list[Any]]] = []
    kept: list[tuple[list[datetime], list[Any]]] = []
    for run in state.queue:
        times, queued = run
        if times[0] > watermark:
            kept.append(run)
            continue
        cut = bisect_right(times, watermark)
        if cut == len(times):
            due.append(run)
        else:
            due.append((times[:cut], queued[:cut]))
            del times[:cut], queued[:cut]
            kept.append(run)
    if not due:
        return [], []  # nothing due yet
    state.queue = kept
    due_times, due_values = due[0] if len(due) == 1 else _merged(due)
    return due_values, due_times


def _in_time_order(
    values: list[Any], timestamps: list[datetime]
) -> tuple[list[Any], list[datetime]]:
    """``values`` and ``timestamps`` sorted by timestamp, arrival order among equal ones."""
    if sorted(timestamps) == timestamps:
        return values, timestamps
    timestamps, values = _by_time(timestamps, values)
    return values, timestamps


def _enqueue(state: _KeyWindows, values: list[Any], timestamps: list[datetime]) -> None:
    """Queue time-ordered ``values``: onto the last run if they start at or after its
    end, else as a new run (all runs merged into one once there are too many)."""
    queue = state.queue
    if queue:
        times, queued = queue[-1]
        if times[-1] <= timestamps[0]:
            times.extend(timestamps)
            queued.extend(values)
            return
    queue.append((list(timestamps), list(values)))
    if len(queue) > MAX_QUEUE_RUNS:
        state.queue = [_merged(queue)]


def _merged(
    runs: list[tuple[list[datetime], list[Any]]],
) -> tuple[list[datetime], list[Any]]:
    """Runs (in arrival order) as one run sorted by timestamp, arrival order kept."""
    if len(runs) == 1:
        return runs[0]
    times = list(chain.from_iterable(run_times for run_times, _ in runs))
    values = list(chain.from_iterable(run_values for _, run_values in runs))
    return _by_time(times, values)


def _by_time(times: list[datetime], values: list[Any]) -> tuple[list[datetime], list[Any]]:
    """``times`` and ``values`` stably sorted by time (one sort of indexes)."""
    order = sorted(range(len(times)), key=times.__getitem__)
    return [times[i] for i in order], [values[i] for i in order]
