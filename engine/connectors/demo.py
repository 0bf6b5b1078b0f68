"""Connectors for demo flows that need no data: :class:`RandomMetricSource`.

Like ``bytewax.connectors.demo``: a ported flow changes the import and runs.

>>> import engine.operators as op
>>> from datetime import timedelta
>>> from engine.dataflow import Dataflow
>>> from engine.testing import TestingSink, run_main
>>> out = []
>>> flow = Dataflow("demo_eg")
>>> temps = op.input("temp", flow, RandomMetricSource("temp", timedelta(0), count=3))
>>> op.output("out", temps, TestingSink(out))
>>> run_main(flow)
>>> [name for name, value in out], all(0 <= value < 10 for _, value in out)
(['temp', 'temp', 'temp'], True)
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from engine._checks import require_callable
from engine.inputs import FixedPartitionedSource, StatefulSourcePartition

__all__ = ["RandomMetricSource"]

Metric = tuple[str, float]


class _RandomMetricPartition(StatefulSourcePartition[Metric, int]):
    """Emits one metric per interval until ``count`` have been emitted in total.

    The resume state is the number emitted so far.
    """

    def __init__(
        self,
        metric_name: str,
        interval: timedelta,
        count: int,
        next_random: Callable[[], float],
        emitted: int,
    ) -> None:
        self._metric_name = metric_name
        self._interval = interval
        self._count = count
        self._next_random = next_random
        self._emitted = emitted
        self._due = datetime.now(UTC)

    def next_batch(self) -> list[Metric]:
        if self._emitted >= self._count:
            raise StopIteration
        if datetime.now(UTC) < self._due:
            return []
        # Step from the last due time, not from now: the cadence does not drift.
        self._due += self._interval
        self._emitted += 1
        return [(self._metric_name, self._next_random())]

    def next_awake(self) -> datetime | None:
        return self._due

    def snapshot(self) -> int:
        return self._emitted


class RandomMetricSource(FixedPartitionedSource[Metric, int]):
    """A source of ``(metric_name, value)`` 2-tuples, one every ``interval``.

    One partition, named ``metric_name``. ``value`` is ``next_random()`` (default: a
    random int in 0..9); the source ends after ``count`` items (default: practically
    never). For several metrics, make one ``input`` step per metric and ``merge`` them.

    On resume it continues the count: an execution resumed after ``n`` items emits
    ``count - n`` more, the first at once and then one per ``interval`` (Bytewax instead
    resumes the old schedule and so emits the items it missed while stopped in a burst).
    """

    def __init__(
        self,
        metric_name: str,
        interval: timedelta = timedelta(seconds=0.7),
        count: int = sys.maxsize,
        next_random: Callable[[], float] = lambda: random.randrange(0, 10),
    ) -> None:
        if interval < timedelta(0):
            msg = f"RandomMetricSource interval must not be negative, got {interval}"
            raise ValueError(msg)
        if count < 0:
            msg = f"RandomMetricSource count must be >= 0, got {count}"
            raise ValueError(msg)
        require_callable(next_random, "next_random", where="RandomMetricSource")
        self._metric_name = metric_name
        self._interval = interval
        self._count = count
        self._next_random = next_random

    def list_parts(self) -> list[str]:
        return [self._metric_name]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _RandomMetricPartition:
        emitted = 0 if resume_state is None else resume_state
        return _RandomMetricPartition(
            for_part, self._interval, self._count, self._next_random, emitted
        )
