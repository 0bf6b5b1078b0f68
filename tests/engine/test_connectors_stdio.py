"""StdOutSink."""

from __future__ import annotations

import io
import sys

import pytest

from engine.connectors.stdio import StdOutSink
from engine.outputs import DynamicSink


class _CountingStdout(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_each_item_on_its_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    sink = StdOutSink()
    assert isinstance(sink, DynamicSink)
    part = sink.build("flow.out", 0, 1)
    part.write_batch(["a", 1, ("k", None)])
    part.write_batch(["multi\nline"])
    part.close()
    assert capsys.readouterr().out == "a\n1\n('k', None)\nmulti\nline\n"


def test_flushes_once_per_batch_and_skips_empty_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _CountingStdout()
    monkeypatch.setattr(sys, "stdout", fake)
    part = StdOutSink().build("flow.out", 1, 2)
    part.write_batch(["x", "y"])
    part.write_batch([])
    part.write_batch(["z"])
    assert fake.getvalue() == "x\ny\nz\n"
    assert fake.flushes == 2


def test_e2e_prints_every_item(capsys: pytest.CaptureFixture[str]) -> None:
    import engine.operators as op
    from engine.dataflow import Dataflow
    from engine.testing import TestingSource, run_main

    flow = Dataflow("stdout_eg")
    nums = op.input("inp", flow, TestingSource(range(5), batch_size=2))
    op.output("out", op.map("double", nums, lambda n: n * 2), StdOutSink())
    run_main(flow)
    assert capsys.readouterr().out == "0\n2\n4\n6\n8\n"
