"""numpy arrays travel out-of-band through the ring and come back identical."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

import shm

TIMEOUT = 10.0


def _arrays() -> dict[str, np.ndarray]:
    grid = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    return {
        "float64": np.linspace(0, 1, 1000),
        "int8": np.arange(-50, 50, dtype=np.int8),
        "bool": np.array([True, False, True]),
        "complex": np.array([1 + 2j, -3j]),
        "empty": np.zeros((0, 5)),
        "scalar-shaped": np.array(3.5),
        "3d C": grid,
        "3d Fortran": np.asfortranarray(grid),
        "transposed (F-contiguous view)": grid.T,
        "strided view": np.arange(100.0)[::3],
        "column of C matrix": np.arange(20.0).reshape(4, 5)[:, 1],
        "structured": np.array([(1, 2.5, b"ab"), (3, -1.0, b"c")], dtype="<i4,<f8,S2"),
        "datetime64": np.array(["2024-01-01T00:00", "2025-06-30T12:34"], dtype="datetime64[ns]"),
        "timedelta64": np.array([1, 2, 3], dtype="timedelta64[s]"),
        "unicode": np.array(["a", "bcd", ""]),
        "big-endian": np.arange(5, dtype=">u4"),
        "object": np.array([1, "x", None], dtype=object),
    }


ARRAYS = _arrays()


def _same(received: np.ndarray, sent: np.ndarray) -> None:
    assert received.dtype == sent.dtype
    assert received.shape == sent.shape
    np.testing.assert_array_equal(received, sent)
    if sent.flags.c_contiguous:
        assert received.flags.c_contiguous
    if sent.flags.f_contiguous and not sent.flags.c_contiguous:
        assert received.flags.f_contiguous


@pytest.mark.parametrize("name", list(ARRAYS))
def test_array_round_trip(name: str) -> None:
    sent = ARRAYS[name]
    with shm.Ring.create(64 * 1024, tag="arrays") as ring:
        ring.put_batch([sent], tag=1)
        tag, (received,) = ring.get_batch_tagged(timeout=TIMEOUT)
    assert tag == 1
    _same(received, sent)


def test_arrays_mixed_with_python_objects_in_one_batch() -> None:
    batch: list[Any] = ["start", *ARRAYS.values(), {"k": (1, 2)}, ("key", 3), None, 2.5]
    with shm.Ring.create(64 * 1024, tag="mixed") as ring:
        for _ in range(5):  # several times, so frames sit at different offsets
            ring.put_batch(batch, timeout=TIMEOUT)
            received = ring.get_batch(timeout=TIMEOUT)
            assert received[0] == "start" and received[-4:] == batch[-4:]
            for got, sent in zip(received[1:-4], batch[1:-4], strict=True):
                _same(got, sent)


def test_received_arrays_own_their_memory_and_are_writable() -> None:
    with shm.Ring.create(4096, tag="owned") as ring:
        ring.put_batch([np.ones(100), np.arange(10)], timeout=TIMEOUT)
        ones, numbers = ring.get_batch(timeout=TIMEOUT)
        for _ in range(20):  # overwrite the ring memory the arrays came from
            ring.put_batch([np.zeros(100)], timeout=TIMEOUT)
            ring.get_batch(timeout=TIMEOUT)
        assert (ones == 1).all() and (numbers == np.arange(10)).all()
        ones[0] = 5.0  # writable
        assert ones[0] == 5.0


def test_array_larger_than_ring_goes_through_in_chunks() -> None:
    big = np.random.default_rng(1).standard_normal((300, 70))  # ~168 KB
    fortran = np.asfortranarray(big[:, :50])
    with shm.Ring.create(16 * 1024, tag="bigarray") as ring:
        consumer = shm.Ring.attach(ring.spec)
        try:
            received: list[Any] = []
            reader = threading.Thread(
                target=lambda: received.append(consumer.get_batch(timeout=TIMEOUT))
            )
            reader.start()
            ring.put_batch([big, "between", fortran], timeout=TIMEOUT)
            reader.join(TIMEOUT)
            assert not reader.is_alive()
        finally:
            consumer.detach()
    got_big, between, got_fortran = received[0]
    _same(got_big, big)
    assert between == "between"
    _same(got_fortran, fortran)


def test_array_straddling_the_ring_end() -> None:
    with shm.Ring.create(1024, tag="straddle") as ring:
        for offset in range(0, 1024, 48):
            ring.put(bytes(max(offset - 16, 0)), timeout=TIMEOUT)  # shift the position
            ring.get(timeout=TIMEOUT)
            sent = np.arange(60, dtype=np.float64) + offset
            ring.put_batch([sent], timeout=TIMEOUT)
            (received,) = ring.get_batch(timeout=TIMEOUT)
            _same(received, sent)
