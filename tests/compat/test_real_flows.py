"""Real-style flows, written once against the Bytewax API, run on shmflow and on Bytewax.

Each flow below is written the way a Bytewax user writes one (tutorial and guide
shapes: word count, sensor windows, a join of two streams, a stateful session, an
enrichment with a cache, branching), taking the API's modules as arguments so the same
code builds a shmflow flow and a Bytewax flow. It runs on shmflow in this process, on 2
and on 3 worker processes, and on Bytewax 0.21.1 where it is installed; the outputs
must be equal (sorted: items of different keys interleave differently between engines
and worker counts, items of one key keep their order).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import cloudpickle
import pytest

import engine.operators as sop
import engine.operators.windowing as swin
from engine.dataflow import Dataflow as SDataflow
from engine.testing import TestingSink as STestingSink
from engine.testing import TestingSource as STestingSource
from engine.testing import cluster_main, run_main

T0 = datetime(2026, 1, 1, tzinfo=UTC)

SHMFLOW = SimpleNamespace(
    op=sop, win=swin, Dataflow=SDataflow, Source=STestingSource, Sink=STestingSink
)


def _bytewax() -> SimpleNamespace:
    pytest.importorskip("bytewax")
    return SimpleNamespace(
        op=importlib.import_module("bytewax.operators"),
        win=importlib.import_module("bytewax.operators.windowing"),
        Dataflow=importlib.import_module("bytewax.dataflow").Dataflow,
        Source=importlib.import_module("bytewax.testing").TestingSource,
        Sink=importlib.import_module("bytewax.testing").TestingSink,
    )


@dataclass(frozen=True)
class Reading:
    sensor: str
    at: datetime
    value: float


LINES = ["the quick brown fox", "jumps over the lazy dog", "The fox", "", "dog  days"]
READINGS = [
    Reading(f"s{i % 3}", T0 + timedelta(seconds=7 * i + (i % 4)), float(i % 5)) for i in range(40)
]


def word_count(api: Any, out: list[Any]) -> Any:
    flow = api.Dataflow("word_count")
    lines = api.op.input("inp", flow, api.Source(LINES))
    words = api.op.flat_map("split", lines, lambda line: line.lower().split())
    counts = api.op.count_final("count", words, lambda word: word)
    api.op.output("out", counts, api.Sink(out))
    return flow


def sensor_windows(api: Any, out: list[Any]) -> Any:
    flow = api.Dataflow("sensors")
    readings = api.op.input("inp", flow, api.Source(READINGS, batch_size=4))
    keyed = api.op.key_on("by_sensor", readings, lambda r: r.sensor)
    clock = api.win.EventClock(lambda r: r.at, wait_for_system_duration=timedelta(seconds=30))
    windower = api.win.TumblingWindower(length=timedelta(minutes=1), align_to=T0)
    stats = api.win.fold_window(
        "stats",
        keyed,
        clock,
        windower,
        lambda: (0, 0.0),
        lambda acc, r: (acc[0] + 1, acc[1] + r.value),
        lambda a, b: (a[0] + b[0], a[1] + b[1]),
    )
    api.op.output("out", stats.down, api.Sink(out))
    late = api.op.map("late", stats.late, lambda kv: (kv[0], "late", kv[1][1].value))
    api.op.output("late_out", late, api.Sink(out))
    return flow


def join_users(api: Any, out: list[Any]) -> Any:
    flow = api.Dataflow("join_users")
    names = api.op.input("names", flow, api.Source([("1", "ann"), ("2", "bob"), ("3", "cy")]))
    emails = api.op.input("emails", flow, api.Source([("2", "b@x"), ("1", "a@x"), ("4", "d@x")]))
    joined = api.op.join("join", names, emails, emit_mode="final")
    api.op.output("out", joined, api.Sink(out))
    return flow


def sessions(api: Any, out: list[Any]) -> Any:
    def running(state: Any, event: tuple[str, int]) -> tuple[Any, Any]:
        total = (state or 0) + event[1]
        return (None if event[0] == "logout" else total), (event[0], total)

    events = [("u1", ("login", 1)), ("u2", ("login", 5)), ("u1", ("click", 2))]
    events += [("u1", ("logout", 3)), ("u1", ("login", 4)), ("u2", ("click", 1))]
    flow = api.Dataflow("sessions")
    inp = api.op.input("inp", flow, api.Source(events))
    api.op.output("out", api.op.stateful_map("session", inp, running), api.Sink(out))
    return flow


def enrich_and_branch(api: Any, out: list[Any]) -> Any:
    rates = {"eur": 1.1, "gbp": 1.3}
    flow = api.Dataflow("enrich")
    orders = api.op.input("inp", flow, api.Source([("eur", 10), ("gbp", 5), ("eur", 2)]))
    priced = api.op.enrich_cached(
        "price", orders, lambda cur: rates[cur], lambda cache, o: (o[0], o[1] * cache.get(o[0]))
    )
    split = api.op.branch("big", priced, lambda o: o[1] >= 6)
    api.op.output(
        "big_out", api.op.map("tag_big", split.trues, lambda o: ("big", o)), api.Sink(out)
    )
    small = api.op.map("tag_small", split.falses, lambda o: ("small", o))
    api.op.output("small_out", small, api.Sink(out))
    return flow


FLOWS: dict[str, Callable[[Any, list[Any]], Any]] = {
    "word_count": word_count,
    "sensor_windows": sensor_windows,
    "join_users": join_users,
    "sessions": sessions,
    "enrich_and_branch": enrich_and_branch,
}


def _shmflow_output(build: Callable[[Any, list[Any]], Any], workers: int) -> list[Any]:
    out: list[Any] = []
    flow = build(SHMFLOW, out)
    if workers == 0:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return sorted(out, key=repr)


@pytest.fixture(autouse=True)
def _ship_this_module_by_value() -> None:
    cloudpickle.register_pickle_by_value(importlib.import_module(__name__))


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_flow_matches_bytewax(name: str) -> None:
    bytewax = _bytewax()
    expected: list[Any] = []
    importlib.import_module("bytewax.testing").run_main(FLOWS[name](bytewax, expected))
    assert _shmflow_output(FLOWS[name], 0) == sorted(expected, key=repr)


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("name", sorted(FLOWS))
def test_flow_gives_the_same_output_on_worker_processes(name: str, workers: int) -> None:
    assert _shmflow_output(FLOWS[name], workers) == _shmflow_output(FLOWS[name], 0)
