"""Keyed joins of several streams: :func:`join`.

Each side's values are tagged with the side's position, the tagged streams are merged,
and one :class:`~engine.operators.StatefulBatchLogic` per key keeps the values seen on
every side. ``insert_mode`` says which values a side keeps, ``emit_mode`` when rows go
out and when the key's state is dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeAlias, get_args

from engine._keyed import check_keyed
from engine.dataflow import Stream, current_step_id, operator
from engine.operators._core import (
    KeyedStream,
    StatefulBatchLogic,
    flat_map_batch,
    merge,
    stateful_batch,
)

__all__ = ["JoinEmitMode", "JoinInsertMode", "join"]

JoinInsertMode: TypeAlias = Literal["first", "last", "product"]
"""Which values of a side a join keeps for a key.

- ``"first"``: only the first value seen on the side.
- ``"last"``: only the latest value seen on the side.
- ``"product"``: every value; rows are every combination of the sides' values (like a SQL
  cross join).
"""

JoinEmitMode: TypeAlias = Literal["complete", "final", "running"]
"""When a join emits rows for a key.

- ``"complete"``: as soon as every side has a value; then the key's state is dropped,
  so the next value starts a new row. Incomplete rows are never emitted.
- ``"final"``: once, when the upstream ends (``None`` for sides without a value); then
  the state is dropped. Only useful on finite streams.
- ``"running"``: every time any side gets a value (``None`` for sides without one yet);
  the state is kept for good.
"""

_EMPTY: tuple[()] = ()
_LONE_NONE: tuple[None] = (None,)

#: Snapshot of a join key: the kept values of each side, in side order.
JoinState: TypeAlias = tuple[tuple[Any, ...], ...]


def _rows(seen: list[list[Any]]) -> list[tuple[Any, ...]]:
    """Every combination of the sides' values; ``None`` stands in for an empty side."""
    return list(itertools.product(*(values or _LONE_NONE for values in seen)))


class _JoinLogic(StatefulBatchLogic[tuple[int, Any], tuple[Any, ...], JoinState]):
    """The values seen on each side for one key."""

    __slots__ = ("emit_mode", "insert_mode", "seen")

    def __init__(
        self, insert_mode: JoinInsertMode, emit_mode: JoinEmitMode, seen: list[list[Any]]
    ) -> None:
        self.insert_mode = insert_mode
        self.emit_mode = emit_mode
        self.seen = seen

    def on_batch(self, values: list[tuple[int, Any]]) -> tuple[Iterable[tuple[Any, ...]], bool]:
        insert_mode, emit_mode, seen = self.insert_mode, self.emit_mode, self.seen
        out: list[tuple[Any, ...]] = []
        for side, value in values:
            if insert_mode == "last":
                seen[side] = [value]
            elif insert_mode == "first":
                if not seen[side]:
                    seen[side] = [value]
            else:
                seen[side].append(value)
            if emit_mode == "running":
                out.extend(_rows(seen))
            elif emit_mode == "complete" and all(seen):
                out.extend(_rows(seen))
                # The row is done: later values start from nothing, as a new key would.
                seen = [[] for _ in seen]
        self.seen = seen
        # Only "complete" drops state on data, and only if the last value completed a row.
        discard = emit_mode == "complete" and not any(seen)
        return out, discard

    def on_eof(self) -> tuple[Iterable[tuple[Any, ...]], bool]:
        if self.emit_mode == "final":
            return _rows(self.seen), StatefulBatchLogic.DISCARD
        return _EMPTY, StatefulBatchLogic.RETAIN

    def snapshot(self) -> JoinState:
        return tuple(tuple(values) for values in self.seen)


def _tag_side(step_id: str, side: int) -> Callable[[list[Any]], list[tuple[str, Any]]]:
    """A batch mapper turning ``(key, value)`` into ``(key, (side, value))``."""

    def tag_batch(batch: list[Any]) -> list[tuple[str, Any]]:
        try:
            tagged = [(key, (side, value)) for key, value in batch]
        except (TypeError, ValueError):
            check_keyed(step_id, batch)
            raise
        if not {type(item) for item in batch} <= {tuple}:
            check_keyed(step_id, batch)  # unpacking also accepts lists and 2-char strs
        return tagged

    return tag_batch


@operator
def join(
    step_id: str,
    *sides: KeyedStream[Any],
    insert_mode: JoinInsertMode = "last",
    emit_mode: JoinEmitMode = "complete",
) -> KeyedStream[tuple[Any, ...]]:
    """Join the values of a key across keyed streams into rows ``(v_side0, v_side1, ...)``.

    See :data:`JoinInsertMode` and :data:`JoinEmitMode` for what the modes do; unknown
    mode names raise ``ValueError``. Every side must be a stream of ``(str, value)``.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> flow = Dataflow("join_eg")
    >>> names = op.input("names", flow, TestingSource([("u1", "Ann"), ("u2", "Bob")]))
    >>> emails = op.input("emails", flow, TestingSource([("u1", "ann@x.org")]))
    >>> _ = op.inspect("show", op.join("by_user", names, emails))
    >>> run_main(flow)
    join_eg.show: ('u1', ('Ann', 'ann@x.org'))

    With ``emit_mode="final"`` every key is emitted at the end, missing sides as ``None``:

    >>> flow = Dataflow("join_final_eg")
    >>> names = op.input("names", flow, TestingSource([("u1", "Ann"), ("u2", "Bob")]))
    >>> emails = op.input("emails", flow, TestingSource([("u1", "ann@x.org")]))
    >>> _ = op.inspect("show", op.join("by_user", names, emails, emit_mode="final"))
    >>> run_main(flow)
    join_final_eg.show: ('u1', ('Ann', 'ann@x.org'))
    join_final_eg.show: ('u2', ('Bob', None))
    """
    outer = current_step_id()
    if insert_mode not in get_args(JoinInsertMode):
        msg = (
            f"join {outer!r}: unknown insert_mode {insert_mode!r}; use one of "
            f"{', '.join(map(repr, get_args(JoinInsertMode)))}"
        )
        raise ValueError(msg)
    if emit_mode not in get_args(JoinEmitMode):
        msg = (
            f"join {outer!r}: unknown emit_mode {emit_mode!r}; use one of "
            f"{', '.join(map(repr, get_args(JoinEmitMode)))}"
        )
        raise ValueError(msg)
    if not sides or not all(isinstance(side, Stream) for side in sides):
        msg = f"join {outer!r} needs one or more keyed streams as sides; got {sides!r}"
        raise TypeError(msg)
    side_count = len(sides)

    def build(resume: JoinState | None) -> _JoinLogic:
        if resume is None:
            return _JoinLogic(insert_mode, emit_mode, [[] for _ in range(side_count)])
        return _JoinLogic(insert_mode, emit_mode, [list(values) for values in resume])

    tagged = [
        flat_map_batch(f"tag_{side}", up, _tag_side(outer, side)) for side, up in enumerate(sides)
    ]
    return stateful_batch("stateful_batch", merge("merge", *tagged), build)
