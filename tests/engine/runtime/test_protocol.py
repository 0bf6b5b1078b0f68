"""The typed control protocol between worker processes and the supervisor."""

from __future__ import annotations

import dataclasses
import pickle
import threading
from typing import Any

import cloudpickle
import pytest

import engine.operators as op
from engine import run_flow
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.inputs import AbortExecution
from engine.outputs import DynamicSink, StatelessSinkPartition
from engine.runtime.protocol import (
    Aborted,
    Bootstrap,
    Claim,
    Done,
    Failed,
    Grant,
    InspectCalls,
    Relay,
    SinkItems,
    check_worker_message,
)
from engine.runtime.relay import RelayChannel
from engine.runtime.snapshots import ExecutionInfo
from engine.testing import TestingSource
from shm import Ring


@pytest.fixture(autouse=True)
def _ship_this_module_by_value() -> None:
    # Worker processes then need not import this module (nor pytest with it).
    import sys

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _failure() -> Failed:
    try:
        try:
            raise KeyError("the user's error")
        except KeyError as user_error:
            raise EngineRuntimeError("step 'f.map' failed", step_id="f.map", epoch=3) from (
                user_error
            )
    except EngineRuntimeError as ex:
        return Failed.from_exception(ex, worker_index=1)


def _bootstrap() -> Bootstrap:
    ring = Ring.create(4096, run_id="proto", tag="ring-0-1")
    try:
        spec = ring.spec
    finally:
        ring.detach()
        ring.unlink()
    return Bootstrap(
        plan=b"plan bytes",
        worker_index=0,
        worker_count=2,
        epoch_interval_s=0.5,
        start=12.5,
        first_epoch=4,
        outbound={1: spec},
        inbound={1: spec},
        counters=None,
        parent_pid=1234,
        execution=ExecutionInfo("/tmp/db", 7, 4, 128, 1),
        step_count=3,
        sys_path=["/somewhere"],
    )


MESSAGES: dict[str, Any] = {
    "bootstrap": _bootstrap,
    "relay": lambda: Relay(
        (SinkItems(2, [1, ("a", 2.5)]), InspectCalls(1, [("x", 1), ("y", 2)]), SinkItems(2, []))
    ),
    "done": Done,
    "claim": lambda: Claim(step_index=1),
    "grant": lambda: Grant(step_index=1, index=7),
    "aborted": lambda: Aborted(step_index=0, detail={"marker": 3}),
    "aborted-without-detail": lambda: Aborted(step_index=0),
    "failed": _failure,
}


@pytest.mark.parametrize("name", list(MESSAGES))
def test_messages_round_trip_through_pickle(name: str) -> None:
    message = MESSAGES[name]()
    for protocol in (pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        again = pickle.loads(pickle.dumps(message, protocol=protocol))
        assert again == message
        assert type(again) is type(message)


@pytest.mark.parametrize("name", list(MESSAGES))
def test_messages_are_frozen(name: str) -> None:
    message = MESSAGES[name]()
    field = next(iter(dataclasses.fields(message)), None)
    if field is None:
        return  # Done has no field to change
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(message, field.name, None)


def test_failed_carries_traceback_step_worker_epoch_and_cause() -> None:
    failed = _failure()
    assert failed.error_type == "EngineRuntimeError"
    assert failed.message == "step 'f.map' failed"
    assert (failed.worker_index, failed.step_id, failed.epoch) == (1, "f.map", 3)
    assert failed.engine_error and not failed.type_error
    assert "Traceback (most recent call last)" in failed.traceback
    assert "the user's error" in failed.traceback
    assert failed.cause is not None
    cause = cloudpickle.loads(failed.cause)
    assert isinstance(cause, KeyError)
    assert failed.cause_repr == 'KeyError: "the user\'s error"'


def test_failed_without_an_unpicklable_cause_keeps_its_repr() -> None:
    class Unpicklable(Exception):
        def __reduce__(self) -> Any:
            raise TypeError("no pickling")

    try:
        raise TypeError("wrong item") from Unpicklable("local")
    except TypeError as ex:
        failed = Failed.from_exception(ex, worker_index=None)
    assert failed.cause is None
    assert failed.cause_repr == "Unpicklable: local"
    assert failed.type_error and not failed.engine_error
    assert failed.worker_index is None


def test_abort_execution_keeps_its_detail_through_pickle() -> None:
    ex = pickle.loads(pickle.dumps(AbortExecution("stop", detail=("marker", 3))))
    assert isinstance(ex, AbortExecution)
    assert ex.args == ("stop",)
    assert ex.detail == ("marker", 3)


@pytest.mark.parametrize(
    "message",
    [("done", None), {"kind": "relay"}, None, "aborted", Bootstrap.__name__],
    ids=["tuple", "dict", "none", "str", "class-name"],
)
def test_check_worker_message_rejects_anything_else(message: object) -> None:
    expected = r"worker 3 sent an unknown control message"
    with pytest.raises(EngineRuntimeError, match=expected) as info:
        check_worker_message(message, 3)
    text = str(info.value)
    assert type(message).__name__ in text
    assert "Relay, Claim, Done, Aborted, Failed" in text
    assert "same installation" in text  # says what to do
    assert info.value.worker_index == 3


def test_check_worker_message_rejects_supervisor_messages() -> None:
    with pytest.raises(EngineRuntimeError, match="unknown control message: Bootstrap"):
        check_worker_message(_bootstrap(), 0)
    with pytest.raises(EngineRuntimeError, match="unknown control message: Grant"):
        check_worker_message(Grant(step_index=0, index=0), 0)


@pytest.mark.parametrize("name", ["relay", "claim", "done", "aborted", "failed"])
def test_check_worker_message_accepts_worker_messages(name: str) -> None:
    message = MESSAGES[name]()
    assert check_worker_message(message, 0) is message


# -- the supervisor, with real worker processes ------------------------------------------


class _SendsGarbage(StatelessSinkPartition[Any]):
    """A saboteur: writes an untyped tuple on its worker's control connection."""

    def write_batch(self, items: list[Any]) -> None:
        channel = RelayChannel.current
        assert channel is not None, "runs in a worker process"
        channel.conn.send(("relay", [("sink", 0, items)]))  # the old, untyped form


class _GarbageSink(DynamicSink[Any]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SendsGarbage:
        return _SendsGarbage()


def test_the_supervisor_rejects_an_unknown_message_with_a_clear_error() -> None:
    flow = Dataflow("garbage")
    op.output("out", op.input("inp", flow, TestingSource([1, 2, 3])), _GarbageSink())
    with pytest.raises(EngineRuntimeError) as info:
        run_flow(flow, workers=2)
    text = str(info.value)
    assert "worker 0 sent an unknown control message: tuple ('relay'" in text
    assert "expected one of Relay, Claim, Done, Aborted, Failed" in text
    assert "same installation" in text
    assert info.value.worker_index == 0


# -- the worker's end of the control connection --------------------------------------------


@pytest.mark.parametrize("size", [0, 10, 16_383, 16_384, 200_000])
def test_the_worker_connection_speaks_multiprocessing_framing_both_ways(size: int) -> None:
    # The supervisor keeps a multiprocessing Connection on its end; the worker's
    # ControlConnection must read and write exactly the same frames.
    import socket
    from multiprocessing.connection import Connection

    from engine.runtime.control import ControlConnection

    ours, theirs = socket.socketpair()
    supervisor_end = Connection(ours.detach())
    worker_end = ControlConnection(theirs.detach())
    message = ("x" * size, size, [b"\x00" * (size // 2)])

    def send_both(end: Any, last: Any) -> threading.Thread:
        # From a thread: a big frame fills the socket buffer until the other end reads.
        sender = threading.Thread(target=lambda: (end.send(message), end.send(last)))
        sender.start()
        return sender

    try:
        sender = send_both(supervisor_end, "second")
        assert worker_end.recv() == message
        assert worker_end.recv() == "second"
        sender.join(timeout=10)
        sender = send_both(worker_end, Done())
        assert supervisor_end.recv() == message
        assert supervisor_end.recv() == Done()
        sender.join(timeout=10)
    finally:
        supervisor_end.close()
        worker_end.close()


def test_the_worker_connection_reports_a_closed_supervisor_end() -> None:
    import socket
    from multiprocessing.connection import Connection

    from engine.runtime.control import ControlConnection

    ours, theirs = socket.socketpair()
    supervisor_end = Connection(ours.detach())
    worker_end = ControlConnection(theirs.detach())
    supervisor_end.close()
    with pytest.raises(EOFError, match="closed the control connection"):
        worker_end.recv()
    with pytest.raises(OSError):
        worker_end.send("anyone there?")
    worker_end.close()
    worker_end.close()  # closing twice is harmless
