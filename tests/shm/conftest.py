"""Fixtures for shm tests: peers in a thread or a child process, and ring harnesses.

A *peer* runs a scenario from ``_peer.py`` at the other end of a ring. Every peer a test
starts is joined (threads) or killed and reaped (processes) at teardown.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import shm

PEER_PATH = Path(__file__).with_name("_peer.py")
#: Bound on waiting for a peer's result or its "ready" line.
PEER_RESULT_TIMEOUT_S = 60.0


def _load_peer_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shm_tests_peer", PEER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


peer_module = _load_peer_module()


@pytest.fixture
def peer() -> ModuleType:
    """The ``_peer`` module: scenarios and the deterministic data they send."""
    return peer_module


class PeerThread:
    """A scenario running in a thread of this process."""

    def __init__(self, name: str, attach: Callable[..., Any], specs: list[Any], params: dict):
        self._lines: queue.Queue[str] = queue.Queue()
        self._outcome: dict[str, Any] = {}
        self._thread = threading.Thread(
            target=self._run, args=(name, attach, specs, params), daemon=True
        )
        self._thread.start()

    def _run(self, name: str, attach: Callable[..., Any], specs: list[Any], params: dict):
        try:
            self._outcome["result"] = peer_module.run(name, attach, specs, params, self._lines.put)
        except BaseException as error:
            self._outcome["error"] = error

    def readline(self, timeout: float = PEER_RESULT_TIMEOUT_S) -> str:
        return self._lines.get(timeout=timeout)

    def result(self, timeout: float = PEER_RESULT_TIMEOUT_S) -> dict[str, Any]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "peer thread did not finish"
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["result"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        self._thread.join(PEER_RESULT_TIMEOUT_S)


class PeerProcess:
    """A scenario running in a fresh interpreter (``python _peer.py ...``)."""

    def __init__(self, name: str, specs: list[Any], params: dict) -> None:
        argument = pickle.dumps((name, specs, params)).hex()
        self.process = subprocess.Popen(
            [sys.executable, str(PEER_PATH), argument],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.process.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def readline(self, timeout: float = PEER_RESULT_TIMEOUT_S) -> str:
        line = self._lines.get(timeout=timeout)
        if line is None:
            raise AssertionError(f"peer exited early: {self._stderr()}")
        return line

    def _stderr(self) -> str:
        assert self.process.stderr is not None
        self.process.wait(PEER_RESULT_TIMEOUT_S)
        return self.process.stderr.read()

    def result(self, timeout: float = PEER_RESULT_TIMEOUT_S) -> dict[str, Any]:
        while True:
            line = self._lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"peer failed: {self._stderr()}")
            if line.startswith("result "):
                self.process.wait(timeout)
                return json.loads(line[len("result ") :])  # type: ignore[no-any-return]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(PEER_RESULT_TIMEOUT_S)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(PEER_RESULT_TIMEOUT_S)
        self._reader.join(PEER_RESULT_TIMEOUT_S)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class Peers:
    """Starts peers and guarantees their teardown."""

    def __init__(self) -> None:
        self._started: list[PeerThread | PeerProcess] = []

    def thread(self, name: str, attach: Callable[..., Any], specs: list[Any], **params: Any):
        peer = PeerThread(name, attach, specs, params)
        self._started.append(peer)
        return peer

    def process(self, name: str, specs: list[Any], **params: Any) -> PeerProcess:
        peer = PeerProcess(name, specs, params)
        self._started.append(peer)
        return peer

    def stop_all(self) -> None:
        for peer in self._started:
            peer.stop()


@pytest.fixture
def peers() -> Iterator[Peers]:
    started = Peers()
    try:
        yield started
    finally:
        started.stop_all()


class Harness:
    """One execution mode of the conformance suite: ring class plus where the peer runs."""

    def __init__(self, mode: str, peers: Peers) -> None:
        self.mode = mode
        self.ring_class: Any = shm.ReferenceRing if mode == "reference" else shm.Ring
        self._peers = peers
        self._rings: list[Any] = []

    def make_ring(self, capacity: int) -> Any:
        ring = self.ring_class.create(capacity, tag=f"test{len(self._rings)}")
        self._rings.append(ring)
        return ring

    def start(self, scenario: str, rings: list[Any], **params: Any) -> PeerThread | PeerProcess:
        specs = [ring.spec for ring in rings]
        if self.mode == "process":
            return self._peers.process(scenario, specs, **params)
        return self._peers.thread(scenario, self.ring_class.attach, specs, **params)

    def teardown(self) -> None:
        self._peers.stop_all()
        for ring in self._rings:
            ring.detach()
            ring.unlink()


@pytest.fixture(params=["thread", "process", "reference"])
def harness(request: pytest.FixtureRequest, peers: Peers) -> Iterator[Harness]:
    """The conformance modes: shm ring in-thread, across processes, and the reference."""
    rig = Harness(request.param, peers)
    try:
        yield rig
    finally:
        rig.teardown()
