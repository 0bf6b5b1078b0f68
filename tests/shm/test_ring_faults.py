"""Failure injection: peers killed with SIGKILL, stale segments, a full /dev/shm."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import shm
import shm._ring
from shm import _segment

#: A dead peer must be reported within this long (the requirement says ~1 s).
PEER_GONE_WITHIN_S = 2.0


def _kill_when(predicate: Callable[[], bool], victim: Any) -> threading.Thread:
    """Kill ``victim`` (SIGKILL) as soon as ``predicate`` holds (bounded)."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.001)
        victim.process.kill()

    killer = threading.Thread(target=watch, daemon=True)
    killer.start()
    return killer


def test_consumer_waiting_on_empty_ring_sees_killed_producer(peers: Any) -> None:
    with shm.Ring.create(4096, tag="dead-producer") as ring:
        producer = peers.process("claim_and_wait", [ring.spec], role="producer")
        assert producer.readline() == "ready"
        killer = _kill_when(lambda: ring.statistics().empty_count >= 1, producer)
        started = time.monotonic()
        with pytest.raises(shm.PeerGone, match=rf"producer .*pid {producer.pid}") as raised:
            ring.get(timeout=30)
        assert time.monotonic() - started < PEER_GONE_WITHIN_S + 0.5
        assert raised.value.pid == producer.pid
        killer.join(5)


def test_producer_waiting_on_full_ring_sees_killed_consumer(peers: Any) -> None:
    with shm.Ring.create(1024, tag="dead-consumer") as ring:
        consumer = peers.process("claim_and_wait", [ring.spec], role="consumer")
        assert consumer.readline() == "ready"
        while True:
            try:
                ring.try_put_batch(list(range(50)))
            except shm.WouldBlock:
                break
        full_before = ring.statistics().full_count
        killer = _kill_when(lambda: ring.statistics().full_count > full_before, consumer)
        started = time.monotonic()
        with pytest.raises(shm.PeerGone, match=rf"consumer .*pid {consumer.pid}"):
            ring.put_batch(list(range(50)), timeout=30)
        assert time.monotonic() - started < PEER_GONE_WITHIN_S + 0.5
        killer.join(5)


def test_peer_already_dead_is_reported_at_once(peers: Any) -> None:
    with shm.Ring.create(1024, tag="already-dead") as ring:
        producer = peers.process("claim_and_wait", [ring.spec], role="producer")
        assert producer.readline() == "ready"
        producer.kill()
        started = time.monotonic()
        with pytest.raises(shm.PeerGone):
            ring.get_batch(timeout=30)
        assert time.monotonic() - started < 0.5


def test_unclaimed_peer_cannot_be_watched_so_the_timeout_bounds_the_wait() -> None:
    with shm.Ring.create(1024, tag="unclaimed") as ring:
        started = time.monotonic()
        with pytest.raises(shm.RingTimeout):
            ring.get(timeout=0.2)
        assert time.monotonic() - started < 1.5


def test_data_put_before_the_producer_died_is_still_delivered(peers: Any, peer: Any) -> None:
    with shm.Ring.create(4096, tag="drain-dead") as ring:
        peers.process("produce_raw", [ring.spec], count=10, max_size=30, close=False).result()
        assert [ring.get(timeout=5) for _ in range(10)] == [
            peer.raw_payload(i, 30) for i in range(10)
        ]
        with pytest.raises(shm.PeerGone):
            ring.get(timeout=30)


def test_cleanup_stale_removes_segments_of_a_killed_creator_only(peers: Any) -> None:
    run_id = shm.new_run_id()
    creator = peers.process("create_and_wait", [], run_id=run_id)
    report = json.loads(creator.readline())
    names = report["names"]
    assert all(name.startswith(f"shmflow-{report['pid']}-{run_id}-") for name in names)
    with shm.Ring.create(1024, run_id=run_id, tag="mine") as live:
        assert shm.cleanup_stale(run_id) == []  # creator alive: nothing touched
        creator.kill()
        assert all(os.path.exists(f"/dev/shm/{name}") for name in names)
        assert sorted(shm.cleanup_stale(run_id)) == sorted(names)
        assert not any(os.path.exists(f"/dev/shm/{name}") for name in names)
        assert os.path.exists(f"/dev/shm/{live.name}")  # a live process's segment stays
        assert shm.cleanup_stale(run_id) == []


def test_cleanup_stale_recognises_a_reused_pid() -> None:
    run_id = shm.new_run_id()
    segment = shm.Segment.create(64, run_id=run_id, tag="reused")
    try:
        # Pretend the segment was made by an earlier process that had our pid.
        header = bytearray(segment.mmap[: _segment._HEADER.size])
        fields = list(_segment._HEADER.unpack(header))
        fields[4] += 12345  # creator start token
        segment.mmap[: _segment._HEADER.size] = _segment._HEADER.pack(*fields)
        assert shm.cleanup_stale(run_id) == [segment.name]
    finally:
        segment.close()
        segment.unlink()  # already gone: still fine for the owner


def test_cleanup_stale_ignores_foreign_files(tmp_path: Any) -> None:
    for name in ("unrelated", "shmflow-notapid-x-y", "shmflow-999999999-abc-ring"):
        (tmp_path / name).write_bytes(b"")
    assert shm.cleanup_stale(directory=str(tmp_path)) == ["shmflow-999999999-abc-ring"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shmflow-notapid-x-y", "unrelated"]


class _TinyStatvfs:
    f_bavail = 10
    f_frsize = 4096


def test_too_small_dev_shm_fails_at_creation_naming_sizes(monkeypatch: Any, tmp_path: Any) -> None:
    monkeypatch.setattr(_segment.os, "statvfs", lambda _path: _TinyStatvfs())
    with pytest.raises(shm.ShmFull) as raised:
        shm.Ring.create(1 << 20, directory=str(tmp_path))
    message = str(raised.value)
    needed = shm._ring._DATA + (1 << 20)
    assert f"needed {needed} bytes" in message
    assert "available 40960 bytes" in message
    assert "tmpfs size" in message and "smaller ring capacity" in message
    assert list(tmp_path.iterdir()) == []  # the partial file was removed


def test_fallocate_enospc_becomes_shm_full_and_leaves_no_file(monkeypatch: Any) -> None:
    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_segment.os, "posix_fallocate", no_space)
    before = set(os.listdir("/dev/shm"))
    with pytest.raises(shm.ShmFull, match=r"needed \d+ bytes .* available \d+ bytes"):
        shm.Counters.create(1000, tag="nospace")
    assert set(os.listdir("/dev/shm")) == before
