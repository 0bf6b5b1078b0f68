"""The flow of the chaos test: a keyed running count over replayable files.

Input: a directory of files, one partition each, with lines ``partition sequence key``.
Output: every worker appends ``key count partition sequence pid`` lines to its own file
in ``OUT_DIR`` (flushed per batch, so what was written survives a SIGKILL). Run it with
``python -m engine.run tests/engine/chaos_flow.py:make_flow("IN_DIR", "OUT_DIR") -r ...``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import engine.operators as op
from engine.connectors.files import DirSource
from engine.dataflow import Dataflow
from engine.outputs import DynamicSink, StatelessSinkPartition


class _AppendPartition(StatelessSinkPartition[Any]):
    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")

    def write_batch(self, items: list[Any]) -> None:
        self.file.write("".join(f"{' '.join(map(str, item))} {os.getpid()}\n" for item in items))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class AppendSink(DynamicSink[Any]):
    """Appends items to one file per worker process (at-least-once, survives kill -9)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AppendPartition:
        return _AppendPartition(Path(self.out_dir) / f"worker{worker_index}-{os.getpid()}.txt")


def _parse(line: str) -> tuple[str, tuple[int, int]]:
    partition, sequence, key = line.split()
    return key, (int(partition), int(sequence))


def _count(state: int | None, tag: tuple[int, int]) -> tuple[int, tuple[int, int, int]]:
    count = (state or 0) + 1
    return count, (count, tag[0], tag[1])


def _slow_down(batch: list[Any]) -> list[Any]:
    time.sleep(0.002)  # spreads the run over a few seconds so kills land mid-run
    return batch


def make_flow(in_dir: str, out_dir: str) -> Dataflow:
    flow = Dataflow("chaos")
    lines = op.input("lines", flow, DirSource(Path(in_dir), batch_size=40))
    slowed = op.flat_map_batch("slow", lines, _slow_down)
    keyed = op.map("parse", slowed, _parse)
    counted = op.stateful_map("count", keyed, _count)
    flat = op.map("flatten", counted, lambda kv: (kv[0], *kv[1]))
    op.output("out", flat, AppendSink(out_dir))
    return flow
