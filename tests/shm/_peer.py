"""The other end of a ring in shm tests: scenarios run in a thread or a child process.

As a script (``python _peer.py <hex of pickled (scenario, impl, specs, params)>``) it
attaches to the given rings/counters, runs the scenario and prints one JSON line with
the result. Scenarios that must synchronise with the test print ``ready`` first.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # make `import shm` work from a bare script run
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

import shm

Attach = Callable[..., Any]
Scenario = Callable[[Attach, list[Any], dict[str, Any], Callable[[str], None]], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {}
#: Generous bound on every blocking call a peer makes; tests are shorter than this.
PEER_TIMEOUT_S = 60.0


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


def raw_payload(i: int, max_size: int) -> bytes:
    """Deterministic payload of frame i: size cycles through 0..max_size."""
    size = (i * 7919) % (max_size + 1)
    return (i.to_bytes(8, "little") * (size // 8 + 1))[:size]


def batch_items(batch_number: int, batch_size: int) -> list[Any]:
    """Deterministic mixed batch: ints, strs, tuples, None, floats."""
    base = batch_number * batch_size
    kinds = (
        lambda k: k,
        lambda k: f"item-{k}",
        lambda k: (f"key{k % 13}", k),
        lambda k: None,
        lambda k: k / 3,
    )
    return [kinds[(base + j) % 5](base + j) for j in range(batch_size)]


@scenario
def produce_raw(attach: Attach, specs: list[Any], params: dict[str, Any], ready: Any) -> dict:
    ring = attach(specs[0], role="producer")
    digest = hashlib.blake2b()
    for i in range(params["count"]):
        payload = raw_payload(i, params["max_size"])
        ring.put(payload, tag=i, timeout=PEER_TIMEOUT_S)
        digest.update(payload)
    if params.get("close", True):
        ring.close()
    return {"digest": digest.hexdigest()}


@scenario
def consume_raw(attach: Attach, specs: list[Any], params: dict[str, Any], ready: Any) -> dict:
    ring = attach(specs[0], role="consumer")
    digest = hashlib.blake2b()
    count = 0
    tags_in_order = True
    while True:
        try:
            tag, payload = ring.get_tagged(timeout=PEER_TIMEOUT_S)
        except shm.RingClosed:
            break
        tags_in_order &= tag == count
        digest.update(payload)
        count += 1
    return {"digest": digest.hexdigest(), "count": count, "tags_in_order": tags_in_order}


@scenario
def produce_batches(attach: Attach, specs: list[Any], params: dict[str, Any], ready: Any) -> dict:
    ring = attach(specs[0], role="producer")
    for number in range(params["batches"]):
        ring.put_batch(batch_items(number, params["batch_size"]), tag=number, timeout=60)
    ring.close()
    return {}


@scenario
def produce_int_batches(
    attach: Attach, specs: list[Any], params: dict[str, Any], ready: Any
) -> dict:
    """Stress: ``total`` consecutive ints in batches of ``batch_size``."""
    ring = attach(specs[0], role="producer")
    total, batch_size = params["total"], params["batch_size"]
    for start in range(0, total, batch_size):
        ring.put_batch(list(range(start, min(start + batch_size, total))), timeout=60)
    ring.close()
    return {}


@scenario
def consume_batches(attach: Attach, specs: list[Any], params: dict[str, Any], ready: Any) -> dict:
    ring = attach(specs[0], role="consumer")
    batches = []
    while True:
        try:
            batches.append(ring.get_batch_tagged(timeout=PEER_TIMEOUT_S))
        except shm.RingClosed:
            break
    return {"digest": hashlib.blake2b(pickle.dumps(batches)).hexdigest(), "count": len(batches)}


@scenario
def echo_batches(attach: Attach, specs: list[Any], params: dict[str, Any], ready: Any) -> dict:
    inbound = attach(specs[0], role="consumer")
    outbound = attach(specs[1], role="producer")
    echoed = 0
    while True:
        try:
            tag, items = inbound.get_batch_tagged(timeout=PEER_TIMEOUT_S)
        except shm.RingClosed:
            break
        outbound.put_batch(items, tag=tag, timeout=PEER_TIMEOUT_S)
        echoed += 1
    outbound.close()
    return {"echoed": echoed}


@scenario
def produce_big_batch(attach: Attach, specs: list[Any], params: dict[str, Any], ready: Any) -> dict:
    """One batch much larger than the ring (bytes + an array), then a small one."""
    ring = attach(specs[0], role="producer")
    ring.put_batch(big_batch(params["nbytes"]), tag=99, timeout=PEER_TIMEOUT_S)
    ring.put_batch(["after"], tag=100, timeout=PEER_TIMEOUT_S)
    ring.close()
    return {}


def big_batch(nbytes: int) -> list[Any]:
    return [
        bytes(range(256)) * (nbytes // 256),
        np.arange(nbytes // 8, dtype=np.float64),
        "tail",
    ]


@scenario
def claim_and_wait(attach: Attach, specs: list[Any], params: dict[str, Any], ready: Any) -> dict:
    """Claim one end of a ring and idle until killed (peer-death tests)."""
    attach(specs[0], role=params["role"])
    ready("ready")
    time.sleep(PEER_TIMEOUT_S)
    return {}


@scenario
def create_and_wait(attach: Attach, specs: list[Any], params: dict[str, Any], ready: Any) -> dict:
    """Create segments (this process owns them), report their names, idle until killed."""
    ring = shm.Ring.create(4096, run_id=params["run_id"], tag="ring-0-1")
    counters = shm.Counters.create(4, run_id=params["run_id"], tag="frontiers")
    ready(json.dumps({"names": [ring.name, counters.name], "pid": os.getpid()}))
    time.sleep(PEER_TIMEOUT_S)
    return {}


@scenario
def write_counter(attach: Attach, specs: list[Any], params: dict[str, Any], ready: Any) -> dict:
    """Be the single writer of one counter slot: store 1..count in order.

    With ``pause_at``, stop after storing that value until slot ``go_slot`` (another
    process's) holds ``go_value`` (a handshake, so the reader sees the slot mid-way).
    """
    counters = shm.Counters.attach(specs[0])
    try:
        slot = params["slot"]
        pause_at = params.get("pause_at")
        for _ in range(params["count"]):
            if counters.increment(slot) == pause_at:
                deadline = time.monotonic() + 30
                while counters.get(params["go_slot"]) != params["go_value"]:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the reader never saw the paused value")
                    time.sleep(0.0005)
        return {"final": counters.get(slot)}
    finally:
        counters.detach()


def run(
    name: str,
    attach_fn: Attach,
    specs: list[Any],
    params: dict[str, Any],
    ready: Callable[[str], None],
) -> dict[str, Any]:
    """Run a scenario; detach every ring it attached."""
    attached: list[Any] = []

    def attach(spec: Any, **kwargs: Any) -> Any:
        ring = attach_fn(spec, **kwargs)
        attached.append(ring)
        return ring

    try:
        return SCENARIOS[name](attach, specs, params, ready)
    finally:
        for ring in attached:
            ring.detach()


def _print_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    name, specs, params = pickle.loads(bytes.fromhex(sys.argv[1]))
    result = run(name, shm.Ring.attach, specs, params, _print_line)
    _print_line("result " + json.dumps(result))


if __name__ == "__main__":
    main()
