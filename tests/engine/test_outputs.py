"""Sink interfaces of engine.outputs."""

from __future__ import annotations

import zlib

import pytest

from engine.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    Sink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)


class _ListPartition(StatefulSinkPartition[str, int]):
    def __init__(self, written: list[str], resume_state: int | None) -> None:
        self.written = written
        del self.written[resume_state or 0 :]

    def write_batch(self, values: list[str]) -> None:
        self.written.extend(values)

    def snapshot(self) -> int:
        return len(self.written)


class _ListsSink(FixedPartitionedSink[str, int]):
    def __init__(self) -> None:
        self.lists: dict[str, list[str]] = {"p0": [], "p1": [], "p2": []}

    def list_parts(self) -> list[str]:
        return list(self.lists)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ListPartition:
        return _ListPartition(self.lists[for_part], resume_state)


class _CollectPartition(StatelessSinkPartition[int]):
    def __init__(self, out: list[tuple[int, int]], worker_index: int) -> None:
        self.out = out
        self.worker_index = worker_index

    def write_batch(self, items: list[int]) -> None:
        self.out.extend((self.worker_index, item) for item in items)


class _CollectSink(DynamicSink[int]):
    def __init__(self) -> None:
        self.out: list[tuple[int, int]] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CollectPartition:
        return _CollectPartition(self.out, worker_index)


def test_default_part_fn_is_adler32_of_the_utf8_key() -> None:
    sink = _ListsSink()
    assert isinstance(sink, Sink)
    for key in ["", "a", "user-17", "clé ünïcode"]:
        assert sink.part_fn(key) == zlib.adler32(key.encode("utf-8"))
    # Known value: must never depend on the process (unlike hash()).
    assert sink.part_fn("hello") == 0x062C0215


def test_routing_by_key_writes_values_only_and_resumes() -> None:
    """Do by hand what the runtime does: route (key, value) by part_fn, write values."""
    sink = _ListsSink()
    parts = sink.list_parts()
    built = {name: sink.build_part("flow.out", name, None) for name in parts}
    items = [(f"k{n}", f"v{n}") for n in range(20)]
    for key, value in items:
        built[parts[sink.part_fn(key) % len(parts)]].write_batch([value])
    written = sorted(value for values in sink.lists.values() for value in values)
    assert written == sorted(value for _key, value in items)
    state = built["p0"].snapshot()
    built["p0"].write_batch(["written after the snapshot"])
    resumed = sink.build_part("flow.out", "p0", state)
    assert resumed.snapshot() == state
    assert "written after the snapshot" not in sink.lists["p0"]
    resumed.close()  # default close is a no-op


def test_dynamic_sink_builds_one_writer_per_worker() -> None:
    sink = _CollectSink()
    assert isinstance(sink, Sink)
    for worker_index in range(2):
        part = sink.build("flow.out", worker_index, 2)
        part.write_batch([worker_index * 10, worker_index * 10 + 1])
        part.close()
    assert sink.out == [(0, 0), (0, 1), (1, 10), (1, 11)]


def test_abstract_methods_are_enforced() -> None:
    class NoSnapshot(StatefulSinkPartition[str, int]):
        def write_batch(self, values: list[str]) -> None:
            pass

    with pytest.raises(TypeError):
        NoSnapshot()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        StatelessSinkPartition()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        FixedPartitionedSink()  # type: ignore[abstract]


# --- end to end through run_main ----------------------------------------------------------

import engine.operators as op  # noqa: E402 - grouped with the tests that use it
from engine.dataflow import Dataflow  # noqa: E402
from engine.testing import TestingSource, run_main  # noqa: E402


class _RecordingPartition(StatefulSinkPartition[str, int]):
    def __init__(self, log: list[tuple[str, str, object]], name: str) -> None:
        self.log = log
        self.name = name
        self.count = 0

    def write_batch(self, values: list[str]) -> None:
        self.log.extend((self.name, "write", value) for value in values)
        self.count += len(values)

    def snapshot(self) -> int:
        self.log.append((self.name, "snapshot", self.count))
        return self.count

    def close(self) -> None:
        self.log.append((self.name, "close", None))


class _RecordingSink(FixedPartitionedSink[str, int]):
    def __init__(self, log: list[tuple[str, str, object]]) -> None:
        self.log = log

    def list_parts(self) -> list[str]:
        return ["even", "odd"]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _RecordingPartition:
        self.log.append((for_part, f"build {step_id}", resume_state))
        return _RecordingPartition(self.log, for_part)


def test_e2e_partitioned_sink_gets_values_routed_by_key() -> None:
    log: list[tuple[str, str, object]] = []
    flow = Dataflow("routing")
    nums = op.input("inp", flow, TestingSource(range(6)))
    keyed = op.map("key", nums, lambda n: (str(n), f"v{n}"))
    op.output("out", keyed, _RecordingSink(log))
    run_main(flow)
    builds = sorted(entry for entry in log if entry[1].startswith("build"))
    assert builds == [("even", "build routing.out", None), ("odd", "build routing.out", None)]
    writes = [(name, value) for name, what, value in log if what == "write"]
    assert sorted(writes) == sorted((["even", "odd"][n % 2], f"v{n}") for n in range(6))
    final = {name: value for name, what, value in log if what == "snapshot"}
    assert final == {"even": 3, "odd": 3}
    assert sorted(name for name, what, _ in log if what == "close") == ["even", "odd"]
