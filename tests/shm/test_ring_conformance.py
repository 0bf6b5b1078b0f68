"""Behaviour every ring must show, in three modes: the shm ring with its peer in a
thread, the shm ring with its peer in a child process, and the reference ring."""

from __future__ import annotations

import hashlib
import pickle

import pytest

import shm

TIMEOUT = 30.0


def test_raw_frames_arrive_in_order_with_tags_across_wraparound(harness, peer) -> None:
    ring = harness.make_ring(1024)
    count, max_size = 3000, 300
    producer = harness.start("produce_raw", [ring], count=count, max_size=max_size)
    digest = hashlib.blake2b()
    for i in range(count):
        tag, payload = ring.get_tagged(timeout=TIMEOUT)
        assert tag == i
        assert payload == peer.raw_payload(i, max_size)
        digest.update(payload)
    with pytest.raises(shm.RingClosed):
        ring.get(timeout=TIMEOUT)
    assert producer.result()["digest"] == digest.hexdigest()


def test_batches_of_mixed_objects_round_trip(harness, peer) -> None:
    ring = harness.make_ring(4096)
    producer = harness.start("produce_batches", [ring], batches=200, batch_size=37)
    for number in range(200):
        tag, items = ring.get_batch_tagged(timeout=TIMEOUT)
        assert tag == number
        assert items == peer.batch_items(number, 37)
    with pytest.raises(shm.RingClosed):
        ring.get_batch(timeout=TIMEOUT)
    producer.result()


def test_backpressure_local_producer_remote_consumer(harness, peer) -> None:
    ring = harness.make_ring(512)
    consumer = harness.start("consume_raw", [ring])
    digest = hashlib.blake2b()
    for i in range(2000):
        payload = peer.raw_payload(i, 200)
        ring.put(payload, tag=i, timeout=TIMEOUT)
        digest.update(payload)
    ring.close()
    result = consumer.result()
    assert result == {"digest": digest.hexdigest(), "count": 2000, "tags_in_order": True}
    assert ring.statistics().frames_got == 2000


def test_echo_through_two_rings(harness, peer) -> None:
    to_peer, from_peer = harness.make_ring(2048), harness.make_ring(2048)
    echo = harness.start("echo_batches", [to_peer, from_peer])
    for number in range(100):
        to_peer.put_batch(peer.batch_items(number, 20), tag=number, timeout=TIMEOUT)
        assert from_peer.get_batch_tagged(timeout=TIMEOUT) == (number, peer.batch_items(number, 20))
    to_peer.close()
    with pytest.raises(shm.RingClosed):
        from_peer.get_batch(timeout=TIMEOUT)
    assert echo.result() == {"echoed": 100}


def test_batch_larger_than_ring_is_split_and_reassembled(harness, peer) -> None:
    ring = harness.make_ring(1024)
    producer = harness.start("produce_big_batch", [ring], nbytes=64 * 1024)
    tag, items = ring.get_batch_tagged(timeout=TIMEOUT)
    expected = peer.big_batch(64 * 1024)
    assert tag == 99
    assert items[0] == expected[0]
    assert (items[1] == expected[1]).all()
    assert items[2] == "tail"
    assert ring.get_batch_tagged(timeout=TIMEOUT) == (100, ["after"])
    with pytest.raises(shm.RingClosed):
        ring.get_batch(timeout=TIMEOUT)
    producer.result()


def test_consumer_sees_closed_only_after_draining(harness, peer) -> None:
    ring = harness.make_ring(1024)
    harness.start("produce_raw", [ring], count=5, max_size=40).result()
    assert ring.closed
    assert ring.readable()
    received = [ring.try_get() for _ in range(5)]
    assert received == [peer.raw_payload(i, 40) for i in range(5)]
    for _ in range(2):  # stays closed
        with pytest.raises(shm.RingClosed):
            ring.try_get()
        with pytest.raises(shm.RingClosed):
            ring.get(timeout=TIMEOUT)
    assert ring.readable() and not ring.has_data()


def test_put_on_closed_ring_raises(harness) -> None:
    ring = harness.make_ring(1024)
    ring.close()
    ring.close()  # idempotent
    with pytest.raises(shm.RingClosed):
        ring.try_put(b"x")
    with pytest.raises(shm.RingClosed):
        ring.put_batch([1], timeout=TIMEOUT)


def test_try_calls_raise_would_block(harness) -> None:
    ring = harness.make_ring(64)
    assert not ring.readable() and not ring.has_data()
    with pytest.raises(shm.WouldBlock):
        ring.try_get()
    with pytest.raises(shm.WouldBlock):
        ring.try_get_batch()
    ring.try_put(b"a" * 48)  # 16 + 48 = the whole ring
    assert ring.readable() and ring.has_data()
    with pytest.raises(shm.WouldBlock):
        ring.try_put(b"")
    assert ring.try_get() == b"a" * 48
    stats = ring.statistics()
    assert (stats.full_count, stats.empty_count) == (1, 2)
    assert (stats.frames_put, stats.frames_got, stats.bytes_put, stats.bytes_got) == (1, 1, 48, 48)
    assert stats.used_bytes == 0


def test_blocking_calls_time_out(harness) -> None:
    ring = harness.make_ring(64)
    with pytest.raises(shm.RingTimeout) as raised:
        ring.get(timeout=0.05)
    assert isinstance(raised.value, TimeoutError)
    with pytest.raises(shm.RingTimeout):
        ring.get_batch_tagged(timeout=0)
    ring.put(b"", timeout=0)
    ring.try_put(bytes(16))
    with pytest.raises(shm.RingTimeout, match="timed out"):
        ring.put(bytes(32), timeout=0.05)


def test_raw_frame_larger_than_ring_fails_at_once(harness) -> None:
    ring = harness.make_ring(256)
    assert ring.max_frame_payload == 240
    ring.put(bytes(240), timeout=TIMEOUT)  # exactly the whole ring
    assert ring.get(timeout=TIMEOUT) == bytes(240)
    with pytest.raises(shm.FrameTooLarge, match=r"241-byte frame.*capacity 256.*capacity_bytes"):
        ring.put(bytes(241), timeout=None)
    with pytest.raises(shm.FrameTooLarge):
        ring.try_put([bytes(200), bytes(41)])
    with pytest.raises(shm.FrameTooLarge, match="put_batch"):
        ring.try_put_batch([bytes(1000)])


def test_gathered_frame_and_zero_byte_frames(harness) -> None:
    ring = harness.make_ring(256)
    ring.try_put([b"ab", bytearray(b"cd"), memoryview(b"ef")], tag=2**64 - 1)
    ring.try_put(b"", tag=1)
    ring.try_put([], tag=2)
    assert ring.try_get_tagged() == (2**64 - 1, b"abcdef")
    assert ring.try_get_tagged() == (1, b"")
    assert ring.try_get_tagged() == (2, b"")


def test_getter_of_the_wrong_kind_does_not_consume(harness) -> None:
    ring = harness.make_ring(256)
    ring.put_batch([1, 2], tag=5)
    with pytest.raises(shm.ShmError, match="batch"):
        ring.try_get()
    assert ring.try_get_batch_tagged() == (5, [1, 2])
    ring.put(b"raw")
    with pytest.raises(shm.ShmError, match="raw"):
        ring.get_batch(timeout=TIMEOUT)
    assert ring.get(timeout=TIMEOUT) == b"raw"


def test_empty_batch_is_a_batch(harness) -> None:
    ring = harness.make_ring(256)
    ring.try_put_batch([], tag=7)
    assert ring.try_get_batch_tagged() == (7, [])


def test_spec_is_picklable_and_unlink_is_owner_only(harness) -> None:
    ring = harness.make_ring(256)
    spec = pickle.loads(pickle.dumps(ring.spec))
    other = harness.ring_class.attach(spec)
    try:
        assert not other.is_owner and ring.is_owner
        ring.put(b"hello")
        assert other.get(timeout=TIMEOUT) == b"hello"
        with pytest.raises(shm.ShmError, match="creator"):
            other.unlink()
    finally:
        other.detach()
        other.detach()  # idempotent
