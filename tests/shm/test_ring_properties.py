"""Property tests: the shm ring behaves exactly like the reference ring.

Both charge ``16 + pad16(payload)`` bytes per frame, so with small capacities (which
force constant wraparound) every put must succeed or block on both, every get must
return the same thing, and the byte accounting must agree.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import shm

FAST = settings(
    max_examples=60,
    stateful_step_count=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

payloads = st.binary(min_size=0, max_size=300)
tags = st.integers(min_value=0, max_value=2**64 - 1)
items = st.lists(st.one_of(st.integers(), st.text(max_size=20), st.none()), max_size=12)


def _outcome(call: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", call(*args)
    except (shm.WouldBlock, shm.FrameTooLarge, shm.RingClosed) as error:
        return type(error).__name__, None
    except shm.ShmError as error:  # wrong frame kind
        return "ShmError", "raw" in str(error)


class RingMatchesReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ring: Any = None
        self.model: Any = None

    @initialize(capacity=st.sampled_from([64, 80, 112, 128, 256, 400]))
    def create(self, capacity: int) -> None:
        self.ring = shm.Ring.create(capacity, tag="prop")
        self.model = shm.ReferenceRing.create(capacity)

    def both(self, method: str, *args: Any) -> tuple[str, Any]:
        real = _outcome(getattr(self.ring, method), *args)
        model = _outcome(getattr(self.model, method), *args)
        assert real == model, f"{method}{args!r}: ring {real!r} != reference {model!r}"
        return real

    @rule(payload=payloads, tag=tags)
    def put_raw(self, payload: bytes, tag: int) -> None:
        self.both("try_put", payload, tag)

    @rule(parts=st.lists(payloads, max_size=3), tag=tags)
    def put_gathered(self, parts: list[bytes], tag: int) -> None:
        self.both("try_put", parts, tag)

    @rule(batch=items, tag=tags)
    def put_batch(self, batch: list[Any], tag: int) -> None:
        self.both("try_put_batch", batch, tag)

    @rule()
    def get_raw(self) -> None:
        self.both("try_get_tagged")

    @rule()
    def get_batch(self) -> None:
        self.both("try_get_batch_tagged")

    @rule()
    def close(self) -> None:
        self.ring.close()
        self.model.close()

    @invariant()
    def same_state(self) -> None:
        real, model = self.ring.statistics(), self.model.statistics()
        assert real.used_bytes == model.used_bytes
        assert (real.frames_put, real.bytes_put) == (model.frames_put, model.bytes_put)
        assert (real.frames_got, real.bytes_got) == (model.frames_got, model.bytes_got)
        assert real.closed == model.closed
        assert self.ring.readable() == self.model.readable()
        assert self.ring.has_data() == self.model.has_data()

    def teardown(self) -> None:
        self.ring.detach()
        self.ring.unlink()
        self.model.detach()
        self.model.unlink()


TestRingMatchesReference = RingMatchesReference.TestCase
TestRingMatchesReference.settings = FAST


@pytest.mark.parametrize("capacity", [64, 144, 1024])
def test_every_frame_size_from_zero_to_beyond_capacity(capacity: int) -> None:
    """Raw frames up to capacity-16 round-trip at every ring offset; larger ones fail at
    once; batches of any size go through (split when needed)."""
    with shm.Ring.create(capacity, tag="sizes") as ring:
        for size in range(0, capacity + 40):
            payload = bytes((size + k) % 251 for k in range(size))
            if shm.frame_cost(size) <= capacity:
                ring.put(payload, tag=size, timeout=5)
                assert ring.get_tagged(timeout=5) == (size, payload)
            else:
                with pytest.raises(shm.FrameTooLarge):
                    ring.put(payload, timeout=5)
        # Batches bigger than the ring need a concurrent reader; in one thread, check
        # each size that fits one frame, at shifting offsets.
        for size in range(0, capacity):
            batch = [bytes(size)]
            try:
                ring.try_put_batch(batch, tag=size)
            except shm.FrameTooLarge:
                continue
            assert ring.try_get_batch_tagged() == (size, batch)
        assert ring.statistics().used_bytes == 0


def test_batches_of_every_size_beyond_capacity_are_split() -> None:
    """put_batch of sizes around and far beyond the capacity, read by a peer thread."""
    with shm.Ring.create(256, tag="split") as ring:
        sizes = [*range(150, 700, 13), 5000, 20000]

        def consume() -> list[Any]:
            reader = shm.Ring.attach(ring.spec)
            try:
                return [reader.get_batch_tagged(timeout=10) for _ in sizes]
            finally:
                reader.detach()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(consume)
            for size in sizes:
                ring.put_batch([bytes(range(256)) * (size // 256) + bytes(size % 256)], tag=size)
            received = future.result(timeout=30)
        for size, (tag, batch) in zip(sizes, received, strict=True):
            assert tag == size
            assert batch == [bytes(range(256)) * (size // 256) + bytes(size % 256)]
