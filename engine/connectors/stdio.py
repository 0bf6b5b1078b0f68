"""Connectors for the console."""

from __future__ import annotations

import sys
from typing import Any

from engine.outputs import DynamicSink, StatelessSinkPartition

__all__ = ["StdOutSink"]


class _StdOutPartition(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        if not items:
            return
        # Looked up on every batch so a replaced `sys.stdout` (e.g. in tests) is used.
        out = sys.stdout
        out.write("\n".join(map(str, items)) + "\n")
        out.flush()


class StdOutSink(DynamicSink[Any]):
    """Print `str(item)` of every item on its own line of the worker's standard output.

    Every worker prints the items it has, so with several workers lines interleave in
    no particular order. Output is flushed after each batch. Nothing is resumed: after
    a failure, items of the resume epoch may be printed again (at-least-once).

    >>> part = StdOutSink().build("flow.out", worker_index=0, worker_count=1)
    >>> part.write_batch(["hello", 42])
    hello
    42
    """

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StdOutPartition:
        return _StdOutPartition()
