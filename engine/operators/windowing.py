"""Windowing operators: group the values of each key into time windows.

A windowing step needs a **clock** (where timestamps and the watermark come from:
:class:`EventClock` or :class:`SystemClock`) and a **windower** (which windows a
timestamp falls in: :class:`TumblingWindower`, :class:`SlidingWindower`,
:class:`SessionWindower`). Every windowing operator returns a :class:`WindowOut` of three
keyed streams, each item sub-keyed by window id, ``(key, (window_id, value))``:

- ``down``: what the window logic emitted (e.g. the folded value when a window closes);
- ``late``: upstream values whose timestamp was before the watermark (never dropped
  silently);
- ``meta``: the :class:`WindowMetadata` of each window when it closes.

All windows still open close when the input ends. Everything here is a composition of
:func:`~engine.operators.stateful_batch` (one per-key logic holding the clock, windower
and per-window state) and stateless steps that split its output. Folds over the built-in
clocks with tumbling or sliding windows (``fold_window``, ``count_window``,
``reduce_window``, ``max_window``, ``min_window``) also declare a batch kernel that the
runtime runs instead of the per-key logics, with the same outputs and snapshots.

>>> from datetime import datetime, timedelta, timezone
>>> import engine.operators as op
>>> import engine.operators.windowing as win
>>> from engine.dataflow import Dataflow
>>> from engine.testing import TestingSource, TimeTestingGetter, run_main
>>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
>>> now = TimeTestingGetter(t0)
>>> readings = [("s1", (t0 + timedelta(seconds=s), v)) for s, v in [(1, 10), (4, 5), (12, 7)]]
>>> flow = Dataflow("win_eg")
>>> up = op.input("inp", flow, TestingSource(readings))
>>> clock = win.EventClock(lambda r: r[0], timedelta(0), now_getter=now.get)
>>> sums = win.fold_window("sum", up, clock, win.TumblingWindower(timedelta(seconds=10), t0),
...                        lambda: 0, lambda acc, r: acc + r[1], lambda a, b: a + b)
>>> _ = op.inspect("show", sums.down)
>>> run_main(flow, epoch_interval=timedelta(0))
win_eg.show: ('s1', (0, 15))
win_eg.show: ('s1', (1, 7))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Generic, Literal, TypeVar

from engine._checks import require_callable
from engine.dataflow import Stream, current_step_id, operator
from engine.errors import ItemTypeError, item_repr
from engine.operators._core import KeyedStream, flat_map_batch, merge, stateful_batch
from engine.operators._stateless import key_on, map_value
from engine.operators._windowing_clocks import (
    UTC_MAX,
    UTC_MIN,
    ZERO_TD,
    Clock,
    ClockLogic,
    EventClock,
    SystemClock,
)
from engine.operators._windowing_core import (
    DOWN,
    LATE,
    META,
    FoldBuilder,
    Unwrap,
    WindowLogic,
    general_path,
    window_kernel,
    window_step_builder,
)
from engine.operators._windowing_windowers import (
    LATE_SESSION_ID,
    SessionWindower,
    SlidingWindower,
    TumblingWindower,
    Windower,
    WindowerLogic,
    WindowMetadata,
)

__all__ = [
    "LATE_SESSION_ID",
    "UTC_MAX",
    "UTC_MIN",
    "ZERO_TD",
    "Clock",
    "ClockLogic",
    "EventClock",
    "SessionWindower",
    "SlidingWindower",
    "SystemClock",
    "TumblingWindower",
    "WindowLogic",
    "WindowMetadata",
    "WindowOut",
    "Windower",
    "WindowerLogic",
    "collect_window",
    "count_window",
    "fold_window",
    "join_window",
    "max_window",
    "min_window",
    "reduce_window",
    "window",
]

V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")
X = TypeVar("X")
W_co = TypeVar("W_co", covariant=True)

JoinInsertMode = Literal["first", "last", "product"]
JoinEmitMode = Literal["complete", "final", "running"]


@dataclass(frozen=True)
class WindowOut(Generic[V, W_co]):
    """The three streams of a windowing operator, each sub-keyed by window id."""

    down: KeyedStream[tuple[int, W_co]]
    """What the window logic emitted: ``(key, (window_id, value))``."""

    late: KeyedStream[tuple[int, V]]
    """Upstream values that were late: ``(key, (window_id, value))``.

    The window ids are those the value would have belonged to; they may never appear
    on ``down`` or ``meta``. Late session items use :data:`LATE_SESSION_ID`.
    """

    meta: KeyedStream[tuple[int, WindowMetadata]]
    """``(key, (window_id, WindowMetadata))`` once per closed window.

    Windows merged into another are not reported themselves; their ids are in the
    target window's :attr:`WindowMetadata.merged_ids`.
    """


def _require(condition: bool, exc: type[Exception], message: str) -> None:
    if not condition:
        raise exc(f"step {current_step_id()!r}: {message}")


def _check_window_args(clock: object, windower: object) -> None:
    _require(
        isinstance(clock, Clock),
        TypeError,
        f"clock must be a Clock (EventClock, SystemClock, ...); got {type(clock).__name__}",
    )
    _require(
        isinstance(windower, Windower),
        TypeError,
        "windower must be a Windower (TumblingWindower, SlidingWindower, SessionWindower, "
        f"...); got {type(windower).__name__}",
    )


@operator
def window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    builder: Callable[[S | None], WindowLogic[V, W, S]],
    ordered: bool = True,
) -> WindowOut[V, W]:
    """The general windowing operator: one :class:`WindowLogic` per window per key.

    ``builder(resume_state)`` makes the logic of a newly opened window (``None`` unless
    resuming). With ``ordered`` (the default) values reach the logic in timestamp order,
    held back until the watermark passes them; otherwise in arrival order, at once.

    >>> from datetime import datetime, timedelta, timezone
    >>> import engine.operators as op
    >>> import engine.operators.windowing as win
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, TimeTestingGetter, run_main
    >>> class FirstAndCount(win.WindowLogic):
    ...     def __init__(self, state):
    ...         self.first, self.count = state or (None, 0)
    ...     def on_value(self, value):
    ...         self.count += 1
    ...         if self.count == 1:
    ...             self.first = value[1]
    ...             return [("first", value[1])]
    ...         return []
    ...     def on_merge(self, original):
    ...         self.count += original.count
    ...         return []
    ...     def on_close(self):
    ...         return [("count", self.count)]
    ...     def snapshot(self):
    ...         return (self.first, self.count)
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> now = TimeTestingGetter(t0)
    >>> events = [("u", (t0 + timedelta(minutes=m), e)) for m, e in [(0, "a"), (2, "b"), (9, "c")]]
    >>> flow = Dataflow("window_eg")
    >>> up = op.input("inp", flow, TestingSource(events))
    >>> clock = win.EventClock(lambda e: e[0], timedelta(0), now_getter=now.get)
    >>> out = win.window("w", up, clock, win.SessionWindower(timedelta(minutes=5)), FirstAndCount)
    >>> _ = op.inspect("down", out.down)
    >>> _ = op.inspect("meta", out.meta)
    >>> run_main(flow, epoch_interval=timedelta(0))
    window_eg.down: ('u', (0, ('first', 'a')))
    window_eg.down: ('u', (1, ('first', 'c')))
    window_eg.down: ('u', (0, ('count', 2)))
    window_eg.meta: ('u', (0, WindowMetadata(open_time=datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), close_time=datetime.datetime(2024, 1, 1, 0, 2, tzinfo=datetime.timezone.utc), merged_ids=set())))
    window_eg.down: ('u', (1, ('count', 1)))
    window_eg.meta: ('u', (1, WindowMetadata(open_time=datetime.datetime(2024, 1, 1, 0, 9, tzinfo=datetime.timezone.utc), close_time=datetime.datetime(2024, 1, 1, 0, 9, tzinfo=datetime.timezone.utc), merged_ids=set())))
    """  # noqa: E501
    _check_window_args(clock, windower)
    require_callable(builder, "builder")
    counting = isinstance(builder, FoldBuilder) and builder.folder is _count_one
    kernel = window_kernel(clock, windower, builder, bool(ordered), current_step_id(), counting)
    events = stateful_batch(
        "stateful_batch",
        up,
        window_step_builder(clock, windower, builder, bool(ordered)),
        _kernel=kernel,
    )
    down = flat_map_batch("unwrap_down", events, Unwrap(DOWN))
    late = flat_map_batch("unwrap_late", events, Unwrap(LATE))
    meta = flat_map_batch("unwrap_meta", events, Unwrap(META))
    return WindowOut(down, late, meta)


@operator
def fold_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    builder: Callable[[], S],
    folder: Callable[[S, V], S],
    merger: Callable[[S, S], S],
    ordered: bool = True,
) -> WindowOut[V, S]:
    """Per window, fold values into an accumulator from ``builder()``; emit it at close.

    ``merger(a, b)`` combines two accumulators when windows merge (session windows).
    With ``ordered`` values are folded in timestamp order, else in arrival order.

    >>> from datetime import datetime, timedelta, timezone
    >>> import engine.operators as op
    >>> import engine.operators.windowing as win
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, TimeTestingGetter, run_main
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> now = TimeTestingGetter(t0)
    >>> data = [("k", (t0 + timedelta(minutes=m), x)) for m, x in [(1, "b"), (0, "a"), (12, "c")]]
    >>> flow = Dataflow("fold_window_eg")
    >>> up = op.input("inp", flow, TestingSource(data))
    >>> clock = win.EventClock(lambda d: d[0], timedelta(minutes=5), now_getter=now.get)
    >>> tumbling = win.TumblingWindower(timedelta(minutes=10), t0)
    >>> out = win.fold_window("concat", up, clock, tumbling, str, lambda s, d: s + d[1],
    ...                       lambda a, b: a + b)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow, epoch_interval=timedelta(0))
    fold_window_eg.show: ('k', (0, 'ab'))
    fold_window_eg.show: ('k', (1, 'c'))
    """
    for name, fn in (("builder", builder), ("folder", folder), ("merger", merger)):
        require_callable(fn, name)
    return window("window", up, clock, windower, FoldBuilder(builder, folder, merger), ordered)


def _append(acc: list[V], value: V) -> list[V]:
    acc.append(value)
    return acc


def _add(acc: set[V], value: V) -> set[V]:
    acc.add(value)
    return acc


def _update(a: dict[Any, Any], b: dict[Any, Any]) -> dict[Any, Any]:
    a.update(b)
    return a


def _dict_folder(step_id: str) -> Callable[[dict[Any, Any], Any], dict[Any, Any]]:
    def insert(acc: dict[Any, Any], pair: Any) -> dict[Any, Any]:
        if type(pair) is not tuple or len(pair) != 2:
            msg = (
                f"collect_window step {step_id!r} collecting into a dict needs (key, value) "
                f"2-tuples as values; got {type(pair).__name__} {item_repr(pair)}"
            )
            raise ItemTypeError(msg)
        acc[pair[0]] = pair[1]
        return acc

    return insert


@operator
def collect_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    into: type = list,
    ordered: bool = True,
) -> WindowOut[V, Any]:
    """Collect the values of each window into a ``list``, ``set`` or ``dict``.

    For ``dict`` the values must be ``(dict_key, dict_value)`` pairs. Lists are in
    timestamp order with ``ordered``, else in arrival order.

    >>> from datetime import datetime, timedelta, timezone
    >>> import engine.operators as op
    >>> import engine.operators.windowing as win
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, TimeTestingGetter, run_main
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> now = TimeTestingGetter(t0)
    >>> data = [("k", (t0 + timedelta(seconds=s), s)) for s in [0, 3, 11]]
    >>> flow = Dataflow("collect_window_eg")
    >>> up = op.input("inp", flow, TestingSource(data))
    >>> clock = win.EventClock(lambda d: d[0], timedelta(0), now_getter=now.get)
    >>> out = win.collect_window("seconds", op.map_value("sec", up, lambda d: d),
    ...                          clock, win.TumblingWindower(timedelta(seconds=10), t0))
    >>> _ = op.inspect("show", op.map_value("just_s", out.down,
    ...                                     lambda w: (w[0], [s for _, s in w[1]])))
    >>> run_main(flow, epoch_interval=timedelta(0))
    collect_window_eg.show: ('k', (0, [0, 3]))
    collect_window_eg.show: ('k', (1, [11]))
    """
    if isinstance(into, type) and issubclass(into, list):
        callbacks: tuple[Any, Any, Any] = (list, _append, list.__add__)
    elif isinstance(into, type) and issubclass(into, set):
        callbacks = (set, _add, set.union)
    elif isinstance(into, type) and issubclass(into, dict):
        callbacks = (dict, _dict_folder(current_step_id()), _update)
    else:
        msg = (
            f"step {current_step_id()!r}: collect_window can collect into list, set or "
            f"dict; got {into!r}. Use fold_window for other containers"
        )
        raise TypeError(msg)
    with general_path():  # collections grow per item: nothing for the kernel to gain
        return fold_window("fold_window", up, clock, windower, *callbacks, ordered=ordered)


def _count_one(count: int, _value: Any) -> int:
    return count + 1


def _zero() -> int:
    return 0


@operator
def count_window(
    step_id: str,
    up: Stream[X],
    clock: Clock[X, Any],
    windower: Windower[Any],
    key: Callable[[X], str],
) -> WindowOut[X, int]:
    """Count the items per ``key(item)`` in each window; emit ``(key, (window_id, n))``.

    The clock's ``ts_getter`` receives the items themselves.

    >>> from datetime import datetime, timedelta, timezone
    >>> import engine.operators as op
    >>> import engine.operators.windowing as win
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, TimeTestingGetter, run_main
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> now = TimeTestingGetter(t0)
    >>> clicks = [("home", t0), ("home", t0 + timedelta(seconds=2)), ("cart", t0)]
    >>> flow = Dataflow("count_window_eg")
    >>> up = op.input("inp", flow, TestingSource(clicks))
    >>> clock = win.EventClock(lambda c: c[1], timedelta(0), now_getter=now.get)
    >>> out = win.count_window("clicks", up, clock,
    ...                        win.TumblingWindower(timedelta(minutes=1), t0), lambda c: c[0])
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow, epoch_interval=timedelta(0))
    count_window_eg.show: ('cart', (0, 1))
    count_window_eg.show: ('home', (0, 2))
    """
    require_callable(key, "key")
    keyed = key_on("keyed", up, key)
    return fold_window("sum", keyed, clock, windower, _zero, _count_one, int.__add__, ordered=False)


_NOTHING_YET = None


def _none() -> Any:
    return _NOTHING_YET


def _first_then(reducer: Callable[[V, V], V]) -> Callable[[V | None, V], V]:
    def fold(acc: V | None, value: V) -> V:
        return value if acc is None else reducer(acc, value)

    return fold


@operator
def reduce_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    reducer: Callable[[V, V], V],
) -> WindowOut[V, V]:
    """Per window, combine the values with ``reducer(acc, value)``; emit the result at close.

    Values are combined in arrival order; the first value is the initial accumulator.

    >>> from datetime import datetime, timedelta, timezone
    >>> import engine.operators as op
    >>> import engine.operators.windowing as win
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, TimeTestingGetter, run_main
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> now = TimeTestingGetter(t0)
    >>> flow = Dataflow("reduce_window_eg")
    >>> up = op.input("inp", flow, TestingSource([("k", (t0, 2)), ("k", (t0, 5))]))
    >>> clock = win.EventClock(lambda d: d[0], timedelta(0), now_getter=now.get)
    >>> out = win.reduce_window("add", up, clock, win.TumblingWindower(timedelta(hours=1), t0),
    ...                         lambda a, b: (a[0], a[1] + b[1]))
    >>> _ = op.inspect("show", op.map_value("total", out.down, lambda w: (w[0], w[1][1])))
    >>> run_main(flow, epoch_interval=timedelta(0))
    reduce_window_eg.show: ('k', (0, 7))
    """
    require_callable(reducer, "reducer")
    return fold_window(
        "fold_window", up, clock, windower, _none, _first_then(reducer), reducer, ordered=False
    )


def _identity(value: X) -> X:
    return value


@operator
def max_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    by: Callable[[V], Any] = _identity,
) -> WindowOut[V, V]:
    """Per window, the largest value (compared by ``by(value)``; first one wins ties).

    >>> from datetime import datetime, timedelta, timezone
    >>> import engine.operators as op
    >>> import engine.operators.windowing as win
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, TimeTestingGetter, run_main
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> now = TimeTestingGetter(t0)
    >>> flow = Dataflow("max_window_eg")
    >>> up = op.input("inp", flow, TestingSource([("k", (t0, 3)), ("k", (t0, 9)), ("k", (t0, 4))]))
    >>> clock = win.EventClock(lambda d: d[0], timedelta(0), now_getter=now.get)
    >>> out = win.max_window("max", up, clock, win.TumblingWindower(timedelta(hours=1), t0),
    ...                      by=lambda d: d[1])
    >>> _ = op.inspect("show", op.map_value("value", out.down, lambda w: (w[0], w[1][1])))
    >>> run_main(flow, epoch_interval=timedelta(0))
    max_window_eg.show: ('k', (0, 9))
    """
    return reduce_window("reduce_window", up, clock, windower, partial(max, key=by))


@operator
def min_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    by: Callable[[V], Any] = _identity,
) -> WindowOut[V, V]:
    """Per window, the smallest value (compared by ``by(value)``; first one wins ties).

    >>> from datetime import datetime, timedelta, timezone
    >>> import engine.operators as op
    >>> import engine.operators.windowing as win
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, TimeTestingGetter, run_main
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> now = TimeTestingGetter(t0)
    >>> flow = Dataflow("min_window_eg")
    >>> up = op.input("inp", flow, TestingSource([("k", (t0, 3)), ("k", (t0, 1)), ("k", (t0, 4))]))
    >>> clock = win.EventClock(lambda d: d[0], timedelta(0), now_getter=now.get)
    >>> out = win.min_window("min", up, clock, win.TumblingWindower(timedelta(hours=1), t0),
    ...                      by=lambda d: d[1])
    >>> _ = op.inspect("show", op.map_value("value", out.down, lambda w: (w[0], w[1][1])))
    >>> run_main(flow, epoch_interval=timedelta(0))
    min_window_eg.show: ('k', (0, 1))
    """
    return reduce_window("reduce_window", up, clock, windower, partial(min, key=by))


class _JoinWindowLogic(WindowLogic[tuple[int, Any], tuple[Any, ...], list[list[Any]]]):
    """Per window, the values seen on each side; emits rows as ``emit_mode`` says."""

    __slots__ = ("emit_mode", "insert_mode", "seen")

    def __init__(self, insert_mode: str, emit_mode: str, seen: list[list[Any]]) -> None:
        self.insert_mode = insert_mode
        self.emit_mode = emit_mode
        self.seen = seen

    def _rows(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = [()]
        for values in self.seen:
            rows = [(*row, v) for row in rows for v in (values or (None,))]
        return rows

    def _emits(self) -> Iterable[tuple[Any, ...]]:
        if self.emit_mode == "complete":
            if all(self.seen):
                rows = self._rows()
                for values in self.seen:
                    values.clear()
                return rows
            return ()
        if self.emit_mode == "running":
            return self._rows()
        return ()

    def on_value(self, value: tuple[int, Any]) -> Iterable[tuple[Any, ...]]:
        side, item = value
        if self.insert_mode == "product":
            self.seen[side].append(item)
        elif self.insert_mode == "last" or not self.seen[side]:
            self.seen[side] = [item]
        return self._emits()

    def on_merge(self, original: Any) -> Iterable[tuple[Any, ...]]:
        # ``self`` is the earlier window: "first" keeps its values where it has any,
        # "last" takes the later window's values where that has any.
        pairs = zip(self.seen, original.seen, strict=True)
        if self.insert_mode == "product":
            self.seen = [mine + theirs for mine, theirs in pairs]
        elif self.insert_mode == "first":
            self.seen = [mine or theirs for mine, theirs in pairs]
        else:
            self.seen = [theirs or mine for mine, theirs in pairs]
        return self._emits()

    def on_close(self) -> Iterable[tuple[Any, ...]]:
        return self._rows() if self.emit_mode == "final" else ()

    def snapshot(self) -> list[list[Any]]:
        return [list(values) for values in self.seen]


def _side_labeler(side: int) -> Callable[[Any], tuple[int, Any]]:
    def label(value: Any) -> tuple[int, Any]:
        return (side, value)

    return label


def _labeled_ts_getter(ts_getter: Callable[[Any], datetime]) -> Callable[[Any], datetime]:
    def get(labeled: tuple[int, Any]) -> datetime:
        return ts_getter(labeled[1])

    return get


@operator
def join_window(
    step_id: str,
    clock: Clock[Any, Any],
    windower: Windower[Any],
    *sides: KeyedStream[Any],
    insert_mode: JoinInsertMode = "last",
    emit_mode: JoinEmitMode = "final",
    ordered: bool = True,
) -> WindowOut[Any, tuple[Any, ...]]:
    """Per key and window, join the values of several keyed streams into tuples.

    Rows have one entry per side, in argument order (``None`` for a side with no value).
    ``insert_mode``: keep the ``"first"`` or ``"last"`` value per side, or all of them
    (``"product"``: every combination is a row). ``emit_mode``: ``"final"`` emits when
    the window closes, ``"complete"`` as soon as every side has a value (then starts
    over), ``"running"`` on every value. An :class:`EventClock`'s ``ts_getter`` receives
    the values of the sides; other clocks receive ``(side_index, value)``.

    >>> from datetime import datetime, timedelta, timezone
    >>> import engine.operators as op
    >>> import engine.operators.windowing as win
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, TimeTestingGetter, run_main
    >>> t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> now = TimeTestingGetter(t0)
    >>> flow = Dataflow("join_window_eg")
    >>> names = op.input("names", flow, TestingSource([("u1", (t0, "ann"))]))
    >>> emails = op.input("emails", flow, TestingSource([("u1", (t0, "a@x")), ("u2", (t0, "b@x"))]))
    >>> clock = win.EventClock(lambda d: d[0], timedelta(0), now_getter=now.get)
    >>> out = win.join_window("join", clock, win.TumblingWindower(timedelta(hours=1), t0),
    ...                       names, emails)
    >>> _ = op.inspect("show", op.map_value("values", out.down,
    ...     lambda w: (w[0], tuple(None if d is None else d[1] for d in w[1]))))
    >>> run_main(flow, epoch_interval=timedelta(0))
    join_window_eg.show: ('u1', (0, ('ann', 'a@x')))
    join_window_eg.show: ('u2', (0, (None, 'b@x')))
    """
    _require(
        insert_mode in ("first", "last", "product"),
        ValueError,
        f"unknown join insert_mode {insert_mode!r}; use 'first', 'last' or 'product'",
    )
    _require(
        emit_mode in ("complete", "final", "running"),
        ValueError,
        f"unknown join emit_mode {emit_mode!r}; use 'complete', 'final' or 'running'",
    )
    _require(bool(sides), TypeError, "join_window needs at least one side stream")
    _check_window_args(clock, windower)
    labeled = [map_value(f"label_{i}", side, _side_labeler(i)) for i, side in enumerate(sides)]
    merged = merge("merge", *labeled)
    if isinstance(clock, EventClock):
        clock = dataclasses.replace(clock, ts_getter=_labeled_ts_getter(clock.ts_getter))
    side_count = len(sides)

    def build(resume_state: list[list[Any]] | None) -> _JoinWindowLogic:
        seen = [[] for _ in range(side_count)] if resume_state is None else resume_state
        return _JoinWindowLogic(insert_mode, emit_mode, [list(v) for v in seen])

    return window("window", merged, clock, windower, build, ordered=ordered)
