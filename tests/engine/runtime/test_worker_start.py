"""Starting worker processes: all start before any is sent its (possibly big) plan."""

from __future__ import annotations

from typing import Any

import pytest

import engine.operators as op
import engine.runtime.supervisor as supervisor
from engine import run_flow
from engine.dataflow import Dataflow
from engine.testing import TestingSink, TestingSource


def _big_flow(out: list[Any]) -> Dataflow:
    # ~24 MB of items in the plan: far more than a socket buffer, so sending a plan
    # blocks until the worker has started and read it.
    items = [bytes([i]) * 3_000_000 for i in range(8)]
    flow = Dataflow("big")
    s = op.input("inp", flow, TestingSource(items))
    op.output("out", op.map("size", s, len), TestingSink(out))
    return flow


def test_every_worker_starts_before_any_plan_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    start = supervisor._start_worker

    def recording_start(index: int) -> Any:
        worker = start(index)
        events.append(f"start {index}")
        send = worker.conn.send

        def recording_send(obj: Any) -> None:
            events.append(f"send {index}")
            send(obj)

        worker.conn.send = recording_send
        return worker

    monkeypatch.setattr(supervisor, "_start_worker", recording_start)
    out: list[Any] = []
    run_flow(_big_flow(out), workers=2)
    assert events == ["start 0", "start 1", "send 0", "send 1"]
    assert sorted(out) == [3_000_000] * 8
