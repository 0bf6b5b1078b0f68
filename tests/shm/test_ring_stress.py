"""Millions of frames across processes: nothing lost, duplicated or reordered."""

from __future__ import annotations

import hashlib
import pickle
from typing import Any

import shm

TIMEOUT = 60.0


def test_two_million_items_in_batches_across_processes(peers: Any) -> None:
    total, batch_size = 2_000_000, 1000
    with shm.Ring.create(1 << 20, tag="stress-batches") as ring:
        producer = peers.process(
            "produce_int_batches", [ring.spec], total=total, batch_size=batch_size
        )
        expected_next = 0
        checksum = 0
        while True:
            try:
                batch = ring.get_batch(timeout=TIMEOUT)
            except shm.RingClosed:
                break
            assert batch[0] == expected_next and batch[-1] == expected_next + len(batch) - 1
            checksum += sum(batch)
            expected_next += len(batch)
        producer.result()
        assert expected_next == total
        assert checksum == total * (total - 1) // 2
        stats = ring.statistics()
        assert stats.frames_got == stats.frames_put == total // batch_size


def test_three_hundred_thousand_single_frames_across_processes(peers: Any, peer: Any) -> None:
    count, max_size = 300_000, 48
    with shm.Ring.create(64 * 1024, tag="stress-frames") as ring:
        producer = peers.process("produce_raw", [ring.spec], count=count, max_size=max_size)
        digest = hashlib.blake2b()
        received = 0
        in_order = True
        while True:
            try:
                tag, payload = ring.get_tagged(timeout=TIMEOUT)
            except shm.RingClosed:
                break
            in_order &= tag == received
            digest.update(payload)
            received += 1
        assert producer.result()["digest"] == digest.hexdigest()
        assert received == count and in_order


def test_many_batches_from_this_process_to_a_child(peers: Any, peer: Any) -> None:
    with shm.Ring.create(32 * 1024, tag="stress-out") as ring:
        consumer = peers.process("consume_batches", [ring.spec])
        sent = []
        for number in range(3000):
            batch = peer.batch_items(number, 50)
            ring.put_batch(batch, tag=number, timeout=TIMEOUT)
            sent.append((number, batch))
        ring.close()

        result = consumer.result()
        assert result["count"] == 3000
        assert result["digest"] == hashlib.blake2b(pickle.dumps(sent)).hexdigest()
