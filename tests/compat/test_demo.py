"""``engine.connectors.demo.RandomMetricSource``, like Bytewax's."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import engine.operators as op
from engine.connectors.demo import RandomMetricSource
from engine.dataflow import Dataflow
from engine.recovery import RecoveryConfig, init_db_dir
from engine.testing import TestingSink
from tests.compat.conftest import EntryPoint


def _seven() -> float:
    return 7.0


def _flow(out: list[tuple[str, float]], count: int, name: str = "temp") -> Dataflow:
    flow = Dataflow("demo")
    metrics = op.input("inp", flow, RandomMetricSource(name, timedelta(0), count, _seven))
    op.output("out", metrics, TestingSink(out))
    return flow


def test_emits_count_items_named_by_the_metric(entry_point: EntryPoint) -> None:
    out: list[tuple[str, float]] = []
    entry_point(_flow(out, 5, "cpu"))
    assert out == [("cpu", 7.0)] * 5


def test_default_values_are_ints_from_0_to_9(entry_point: EntryPoint) -> None:
    out: list[tuple[str, float]] = []
    flow = Dataflow("demo_default")
    op.output(
        "out", op.input("inp", flow, RandomMetricSource("m", timedelta(0), 50)), TestingSink(out)
    )
    entry_point(flow)
    assert len(out) == 50
    assert all(name == "m" and isinstance(v, int) and 0 <= v < 10 for name, v in out)


def test_one_partition_named_by_the_metric() -> None:
    assert RandomMetricSource("mem").list_parts() == ["mem"]


def test_a_resumed_execution_continues_the_count(tmp_path: Path, entry_point: EntryPoint) -> None:
    init_db_dir(tmp_path, 1)
    config = RecoveryConfig(tmp_path)
    runs = []
    for count in (3, 3, 5):
        out: list[tuple[str, float]] = []
        entry_point(_flow(out, count), recovery_config=config, epoch_interval=timedelta(0))
        runs.append(len(out))
    assert runs == [3, 0, 2]


def test_partition_resumes_after_the_items_it_snapshotted() -> None:
    source = RandomMetricSource("m", timedelta(0), count=4, next_random=_seven)
    part = source.build_part("demo.inp", "m", None)
    assert [part.next_batch() for _ in range(3)] == [[("m", 7.0)]] * 3
    state = part.snapshot()
    assert state == 3
    resumed = source.build_part("demo.inp", "m", state)
    assert resumed.next_batch() == [("m", 7.0)]
    with pytest.raises(StopIteration):
        resumed.next_batch()


def test_one_item_per_interval() -> None:
    interval = timedelta(hours=1)
    part = RandomMetricSource("m", interval, next_random=_seven).build_part("s", "m", None)
    first_due = part.next_awake()
    assert first_due is not None and first_due <= datetime.now(UTC)
    assert part.next_batch() == [("m", 7.0)]
    assert part.next_awake() == first_due + interval
    assert part.next_batch() == []  # called early: nothing yet
    assert part.snapshot() == 1


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="interval must not be negative"):
        RandomMetricSource("m", timedelta(seconds=-1))
    with pytest.raises(ValueError, match="count must be >= 0"):
        RandomMetricSource("m", count=-1)
    with pytest.raises(TypeError, match="next_random must be callable"):
        RandomMetricSource("m", next_random=3)  # type: ignore[arg-type]


def test_signature_matches_bytewax() -> None:
    demo = pytest.importorskip("bytewax.connectors.demo")
    ours = inspect.signature(RandomMetricSource)
    theirs = inspect.signature(demo.RandomMetricSource)
    assert list(ours.parameters) == list(theirs.parameters)
    for name in ("interval", "count"):
        assert ours.parameters[name].default == theirs.parameters[name].default
