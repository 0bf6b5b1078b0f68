"""Property: a random flow over random keyed input gives the same multiset of outputs on
one worker in-process and on 1, 2 and 3 worker processes."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.operators as op
from engine import run_flow
from engine.dataflow import Dataflow, Stream
from engine.testing import TestingSink, TestingSource, run_main

KEYS = [f"k{i}" for i in range(12)]


def _running_count(state: int | None, value: int) -> tuple[int, tuple[int, int]]:
    seen = (state or 0) + 1
    return seen, (value, seen)


# Each stage maps a keyed stream of (str, int) to a keyed stream of (str, int).
STAGES: dict[str, Any] = {
    "add": lambda sid, s: op.map_value(sid, s, lambda v: v + 3),
    "filter": lambda sid, s: op.filter_value(sid, s, lambda v: v % 3 != 0),
    "rekey": lambda sid, s: op.map(sid, s, lambda kv: (f"k{(kv[1] * 7) % 5}", kv[1])),
    "dup": lambda sid, s: op.flat_map_value(sid, s, lambda v: [v, v + 1]),
    "spread": lambda sid, s: op.redistribute(sid, s),
    # The multiset of running counts (1..n per key) does not depend on arrival order.
    "running_count": lambda sid, s: op.map_value(
        f"{sid}_seen", op.stateful_map(sid, s, _running_count), lambda vt: vt[1]
    ),
    "count": lambda sid, s: op.count_final(sid, s, lambda kv: kv[0]),
    "sum": lambda sid, s: op.reduce_final(sid, s, lambda a, b: a + b),
    "max": lambda sid, s: op.max_final(sid, s),
}


def _build(items: list[tuple[str, int]], stages: list[str], batch_size: int):
    out: list[Any] = []
    flow = Dataflow("prop")
    stream: Stream[Any] = op.input("inp", flow, TestingSource(items, batch_size=batch_size))
    for i, name in enumerate(stages):
        stream = STAGES[name](f"s{i}_{name}", stream)
    op.output("out", stream, TestingSink(out))
    return flow, out


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    items=st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, 50)), max_size=60),
    stages=st.lists(st.sampled_from(sorted(STAGES)), min_size=1, max_size=4),
    batch_size=st.integers(1, 16),
)
def test_same_outputs_at_any_worker_count(
    items: list[tuple[str, int]], stages: list[str], batch_size: int
) -> None:
    flow, out = _build(items, stages, batch_size)
    run_main(flow, epoch_interval=timedelta(0))
    expected = Counter(out)
    for workers in (1, 2, 3):
        flow, out = _build(items, stages, batch_size)
        run_flow(flow, workers=workers, epoch_interval=timedelta(0))
        assert Counter(out) == expected, f"{workers} workers, stages {stages}"
