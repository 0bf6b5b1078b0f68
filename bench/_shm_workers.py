"""Machinery of ``bench_shm_ring``: workloads, transports and the producer process.

A *case* is one (transport, workload) pair. A producer child process (spawned, so a
fresh interpreter) builds the workload's messages once, then on every "go" from the
benchmark process sends all of them; the benchmark process receives them and times the
round from "go" to the last message. Nothing here runs at import time.
"""

from __future__ import annotations

import multiprocessing
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import numpy as np

import shm

TRANSPORTS = ("queue", "pipe", "ring")
#: Bound on any wait of the benchmark machinery (a stuck case fails, never hangs).
CASE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Workload:
    """What one round sends: ``messages`` messages, each a single item, a batch, or an array."""

    name: str
    shape: str  # "single" | "batch" | "array"
    messages: int
    batch_size: int = 1
    item: str = "int"  # "int" | "str" | "tuple" (arrays are float64)
    array_length: int = 0
    #: Ring size for this workload: small enough to stay cache-resident, large enough
    #: for several messages in flight (an engine sizes its rings the same way).
    ring_capacity: int = 256 * 2**10

    @property
    def items_per_round(self) -> int:
        return self.messages * self.batch_size

    def build(self) -> list[Any]:
        """The messages of one round (built once per case, outside the timing)."""
        if self.shape == "array":
            array = np.random.default_rng(0).standard_normal(self.array_length)
            return [array] * self.messages
        make = _ITEM_MAKERS[self.item]
        if self.shape == "single":
            return [make(i) for i in range(self.messages)]
        return [
            [make(m * self.batch_size + j) for j in range(self.batch_size)]
            for m in range(self.messages)
        ]

    def bytes_per_round(self) -> int:
        """Payload bytes: array bytes, or the pickled size of the messages."""
        if self.shape == "array":
            return self.messages * self.array_length * 8
        return sum(len(pickle.dumps(message, protocol=5)) for message in self.build())


_ITEM_MAKERS: dict[str, Callable[[int], Any]] = {
    "int": lambda i: i,
    "str": lambda i: f"word{i % 5000}",
    "tuple": lambda i: (f"key{i % 1000}", i),
}

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("int x1", "single", 50_000, 1, "int"),
        Workload("str x1", "single", 50_000, 1, "str"),
        Workload("tuple x1", "single", 50_000, 1, "tuple"),
        Workload("int batch1000", "batch", 400, 1000, "int"),
        Workload("str batch1000", "batch", 400, 1000, "str"),
        Workload("tuple batch1000", "batch", 400, 1000, "tuple"),
        Workload("ndarray 1e3", "array", 10_000, array_length=1_000, ring_capacity=2**20),
        Workload("ndarray 1e5", "array", 300, array_length=100_000, ring_capacity=4 * 2**20),
        Workload("ndarray 1e6", "array", 30, array_length=1_000_000, ring_capacity=32 * 2**20),
    )
}


def producer_main(transport: str, endpoint: Any, control: Connection, workload: Workload) -> None:
    """Child process: send the workload's messages on every "go" until "stop"."""
    messages = workload.build()
    ring = None
    if transport == "queue":
        send: Callable[[Any], None] = endpoint.put
    elif transport == "pipe":
        send = endpoint.send
    else:
        ring = shm.Ring.attach(endpoint, role="producer")
        put_batch = ring.put_batch
        if workload.shape == "batch":
            send = put_batch
        else:

            def send(message: Any) -> None:
                put_batch([message])

    control.send("ready")
    while control.recv() == "go":
        for message in messages:
            send(message)
    if ring is not None:
        ring.detach()
    if transport == "queue":
        endpoint.close()
        endpoint.join_thread()


def memcpy_round(workload: Workload) -> float:
    """Seconds to copy an array workload's bytes once, in this process (``np.copyto``).

    The reference for what moving arrays can cost on this machine: one memory copy of
    every array, no second process, no synchronisation.
    """
    source = workload.build()[0]
    target = np.empty_like(source)
    np.copyto(target, source)  # page faults outside the timing
    started = time.perf_counter()
    for _ in range(workload.messages):
        np.copyto(target, source)
    return time.perf_counter() - started


class Case:
    """One (transport, workload) benchmark case with its producer child process."""

    def __init__(self, transport: str, workload: str | Workload) -> None:
        self.transport = transport
        self.workload = WORKLOADS[workload] if isinstance(workload, str) else workload
        self._context = multiprocessing.get_context("spawn")
        self._ring: shm.Ring | None = None
        self._process: Any = None

    def __enter__(self) -> Case:
        context = self._context
        if self.transport == "queue":
            queue = context.Queue()
            endpoint, child_endpoint = queue, queue
            self._receive: Callable[[], Any] = queue.get
        elif self.transport == "pipe":
            receiver, sender = context.Pipe(duplex=False)
            endpoint, child_endpoint = receiver, sender
            self._receive = receiver.recv
        else:
            self._ring = shm.Ring.create(self.workload.ring_capacity, tag="bench", role="consumer")
            endpoint, child_endpoint = self._ring, self._ring.spec
            self._receive = self._ring.get_batch
        self._endpoint = endpoint
        self._control, child_control = context.Pipe()
        self._process = context.Process(
            target=producer_main,
            args=(self.transport, child_endpoint, child_control, self.workload),
            daemon=True,
        )
        self._process.start()
        child_control.close()
        if not self._control.poll(CASE_TIMEOUT_S):
            raise TimeoutError(f"producer for {self.transport}/{self.workload.name} not ready")
        assert self._control.recv() == "ready"
        return self

    def run_round(self) -> float:
        """Have the child send one round; receive it all; return the seconds it took."""
        receive = self._receive
        started = time.perf_counter()
        self._control.send("go")
        for _ in range(self.workload.messages):
            receive()
        return time.perf_counter() - started

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._control.send("stop")
        except OSError:
            pass
        self._process.join(CASE_TIMEOUT_S if exc is None else 1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(CASE_TIMEOUT_S)
        self._process.close()
        self._control.close()
        if self.transport == "queue":
            self._endpoint.close()
            self._endpoint.join_thread()
        elif self.transport == "pipe":
            self._endpoint.close()
        elif self._ring is not None:
            self._ring.detach()
            self._ring.unlink()
