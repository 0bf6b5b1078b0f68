"""Benchmark flows, their data and baselines: now in the installed package.

They moved to :mod:`engine.tools.flows` so that ``shmflow bench`` works from a plain
install; this module re-exports them for the pytest-benchmark suites in ``bench/``.
"""

from __future__ import annotations

from engine.tools.flows import (
    FLOWS,
    T0,
    CountingSink,
    ListSource,
    _event_ts,
    _running_count,
    _word_key,
    count_baseline,
    count_final_flow,
    cpu_flow,
    cpu_work,
    empty_flow,
    events,
    ints,
    passthrough_baseline,
    passthrough_flow,
    stateful_map_flow,
    window_baseline,
    window_flow,
    words,
)

__all__ = [
    "FLOWS",
    "T0",
    "CountingSink",
    "ListSource",
    "_event_ts",
    "_running_count",
    "_word_key",
    "count_baseline",
    "count_final_flow",
    "cpu_flow",
    "cpu_work",
    "empty_flow",
    "events",
    "ints",
    "passthrough_baseline",
    "passthrough_flow",
    "stateful_map_flow",
    "window_baseline",
    "window_flow",
    "words",
]
