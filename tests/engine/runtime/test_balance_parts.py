"""Partitions handed out in turn (``FixedPartitionedSource.balance_parts``).

The supervisor grants partition indexes one at a time to the worker that asks; each
partition must be built exactly once per execution, a slower worker must end up reading
fewer of them, and a source that does not opt in keeps its fixed shares.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import engine.operators as op
from engine import run_flow
from engine.connectors.files import FileSource
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.inputs import FixedPartitionedSource, StatefulSourcePartition
from engine.runtime.control import ControlClaims, ControlConnection
from engine.runtime.ports import LocalClaims
from engine.testing import TestingSink, run_main


@pytest.fixture(autouse=True)
def _ship_this_module_by_value() -> None:
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _Once(StatefulSourcePartition[tuple[str, int], bool]):
    """Emits ``(name, pid)`` once: who built and read the partition."""

    def __init__(self, name: str, done: bool | None) -> None:
        self.name = name
        self.done = bool(done)

    def next_batch(self) -> list[tuple[str, int]]:
        if self.done:
            raise StopIteration
        self.done = True
        return [(self.name, os.getpid())]

    def snapshot(self) -> bool:
        return self.done


class _Named(FixedPartitionedSource[tuple[str, int], bool]):
    def __init__(self, count: int, balance: bool) -> None:
        self.count = count
        self.balance = balance

    @property
    def balance_parts(self) -> bool:  # type: ignore[override]
        return self.balance

    def list_parts(self) -> list[str]:
        return [f"p{i:02d}" for i in range(self.count)]

    def build_part(self, step_id: str, for_part: str, resume_state: bool | None) -> _Once:
        return _Once(for_part, resume_state)


def _reads(source: FixedPartitionedSource[Any, Any], workers: int | None) -> list[Any]:
    """What ``source`` gives, read by ``run_main`` (None) or that many worker processes."""
    out: list[Any] = []
    flow = Dataflow("reads")
    op.output("out", op.input("inp", flow, source), TestingSink(out))
    if workers is None:
        run_main(flow)
    else:
        run_flow(flow, workers=workers)
    return out


@pytest.mark.parametrize("workers", [None, 1, 2, 3])
def test_every_partition_is_handed_to_exactly_one_worker(workers: int | None) -> None:
    out = _reads(_Named(10, balance=True), workers)
    assert sorted(name for name, _ in out) == [f"p{i:02d}" for i in range(10)]


def test_more_workers_than_partitions_all_finish() -> None:
    out = _reads(_Named(2, balance=True), 3)
    assert sorted(name for name, _ in out) == ["p00", "p01"]


def test_a_source_that_does_not_opt_in_keeps_fixed_shares() -> None:
    out = _reads(_Named(6, balance=False), 2)
    readers = {name: pid for name, pid in out}
    # Every worker_count-th partition, starting at the worker's index.
    assert readers["p00"] == readers["p02"] == readers["p04"]
    assert readers["p01"] == readers["p03"] == readers["p05"]
    assert readers["p00"] != readers["p01"]


def _slow_on_one_worker(marker: str) -> Any:
    """A batch mapper that is slow on whichever worker calls it first."""
    state: dict[str, bool] = {}

    def tag(batch: list[str]) -> list[tuple[str, int]]:
        if "slow" not in state:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                state["slow"] = True
            except FileExistsError:
                state["slow"] = False
        if state["slow"]:
            time.sleep(0.01)
        return [(line, os.getpid()) for line in batch]

    return tag


def test_a_slower_worker_reads_fewer_ranges_of_a_split_file(tmp_path: Path) -> None:
    # 16 ranges of 64 lines, 16 lines a batch. In fixed shares each worker would read
    # 8 ranges (512 lines); handed out in turn, the fast worker takes the ranges the
    # slow one (10 ms a batch, 40 ms a range) has not reached.
    path = tmp_path / "in.txt"
    with open(path, "w") as file:
        for i in range(1024):
            file.write(f"{i:07d}\n")  # 8 bytes a line: 64 lines a 512-byte range
    source = FileSource(path, batch_size=16, split_bytes=0, ranges=16)
    assert len(source.list_parts()) == 16
    out: list[tuple[str, int]] = []
    flow = Dataflow("slow")
    lines = op.input("inp", flow, source)
    tagged = op.flat_map_batch("tag", lines, _slow_on_one_worker(str(tmp_path / "slow")))
    op.output("out", tagged, TestingSink(out))
    run_flow(flow, workers=2)
    assert sorted(int(line) for line, _ in out) == list(range(1024))
    per_worker = sorted(sum(1 for _, pid in out if pid == p) for p in {pid for _, pid in out})
    assert len(per_worker) == 2 and per_worker[0] <= 5 * 64, per_worker


@pytest.mark.parametrize("workers", [None, 1])
def test_one_worker_reads_a_split_file_in_file_order(tmp_path: Path, workers: int | None) -> None:
    # One range at a time, claimed in order: a time-ordered file stays in order (an
    # event clock waiting 0 then finds no line late).
    path = tmp_path / "in.txt"
    path.write_text("".join(f"{i:07d}\n" for i in range(1024)))
    source = FileSource(path, batch_size=16, split_bytes=0, ranges=16)
    assert _reads(source, workers) == [f"{i:07d}" for i in range(1024)]


def test_local_claims_count_on_from_the_worker_count_per_step() -> None:
    claims = LocalClaims(start=2)
    assert claims.granted(0) is None
    claims.request(0)
    claims.request(1)
    assert claims.granted(0) == 2 and claims.granted(1) == 2
    claims.request(0)
    assert claims.granted(0) == 3
    assert claims.granted(0) is None


def test_as_many_partitions_as_workers_are_read_by_all_of_them() -> None:
    # Worker k starts with partition k: nobody takes a second one before the others
    # have their first (a DirSource of two files on two workers reads both at once).
    out = _reads(_Named(2, balance=True), 2)
    assert sorted(name for name, _ in out) == ["p00", "p01"]
    assert len({pid for _, pid in out}) == 2


def test_a_worker_rejects_anything_but_a_grant_while_claiming() -> None:
    import socket
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    supervisor_end = Connection(ours.detach())
    worker_end = ControlConnection(theirs.detach())
    try:
        claims = ControlClaims(worker_end, 1)
        claims.request(0)
        assert supervisor_end.recv().step_index == 0
        assert claims.granted(0) is None  # nothing answered yet: no waiting
        supervisor_end.send(("grant", 0))
        with pytest.raises(EngineRuntimeError, match="worker 1 expected a Grant"):
            claims.granted(0)
    finally:
        supervisor_end.close()
        worker_end.close()
