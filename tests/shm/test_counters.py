"""Single-writer counters: per-process slots, readable by anyone."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

import shm


def test_set_get_array_and_attach() -> None:
    with shm.Counters.create(4, tag="basic") as counters:
        assert len(counters) == 4
        assert counters.array.tolist() == [0, 0, 0, 0]
        counters.set(0, -(2**63))
        counters.set(3, 2**63 - 1)
        assert counters.increment(1, by=5) == 5
        other = shm.Counters.attach(pickle.loads(pickle.dumps(counters.spec)))
        try:
            assert other.get(0) == -(2**63) and other.get(3) == 2**63 - 1
            snapshot = other.array
            assert snapshot.dtype == np.int64 and snapshot.tolist()[1] == 5
            with pytest.raises(ValueError):
                snapshot[0] = 1  # read-only copy
            counters.set(1, 6)
            assert snapshot[1] == 5 and other.get(1) == 6  # copy vs live
            values = other.values()
            assert values == [-(2**63), 6, 0, 2**63 - 1]
            assert all(type(v) is int for v in values)
            counters.set(2, 7)
            assert values[2] == 0  # a copy too
            with pytest.raises(shm.ShmError, match="creator"):
                other.unlink()
        finally:
            other.detach()
            other.detach()
        with pytest.raises(shm.ShmError, match="detached"):
            other.get(0)


def test_writer_process_increments_its_slot_reader_sees_monotonic_values(peers: Any) -> None:
    count, half = 20_000, 10_000
    with shm.Counters.create(3, tag="frontiers") as counters:
        counters.set(2, 77)  # this process's own slot
        writer = peers.process(
            "write_counter",
            [counters.spec],
            slot=1,
            count=count,
            pause_at=half,  # until this process saw it: no timing assumption
            go_slot=2,
            go_value=78,
        )
        seen = [0]
        while seen[-1] < count:
            value = counters.get(1)
            assert value >= seen[-1], "a single-writer slot went backwards"
            seen.append(value)
            if value == half:
                counters.set(2, 78)
            assert writer.process.poll() in (None, 0)
        assert writer.result() == {"final": count}
        assert counters.array.tolist() == [0, count, 78]
        assert half in seen  # observed it moving, not just the end


def test_bad_slot_count() -> None:
    with pytest.raises(ValueError):
        shm.Counters.create(0)


def test_writable_slots_is_a_live_view_for_the_single_writer() -> None:
    with shm.Counters.create(4, tag="gauge") as counters:
        other = shm.Counters.attach(counters.spec)
        try:
            gauge = counters.writable_slots(2, 3)
            gauge[0] = 41
            assert other.get(2) == 41 and counters.array.tolist() == [0, 0, 41, 0]
            with pytest.raises(IndexError):
                counters.writable_slots(3, 5)
            del gauge
        finally:
            other.detach()
