"""An in-process reference ring with :class:`shm.Ring`'s interface.

Frames live in a ``deque`` under a byte budget that charges each frame exactly what the
shared-memory ring charges (``16 + pad16(payload)``), so the two are full at the same
moments. It is thread-safe (one condition variable) and exists to pin down the
behaviour the real ring must match: the conformance suite and the property tests run
against both. It is not shared across processes; ``attach`` works only in the process
that created it.
"""

from __future__ import annotations

import itertools
import os
import pickle
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from shm._ring import (
    FRAME_HEADER,
    MAX_CAPACITY,
    MIN_CAPACITY,
    Frame,
    RingStatistics,
    Role,
    frame_cost,
)
from shm.errors import FrameTooLarge, RingClosed, RingTimeout, ShmError, WouldBlock

__all__ = ["ReferenceRing", "ReferenceRingSpec"]

_RAW, _BATCH = "raw", "batch"


@dataclass(frozen=True)
class ReferenceRingSpec:
    """Names a reference ring inside the creating process."""

    key: int
    capacity: int


@dataclass
class _State:
    capacity: int
    name: str
    frames: deque[tuple[str, int, bytes, int]] = field(default_factory=deque)
    used: int = 0
    closed: bool = False
    unlinked: bool = False
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("frames_put", "bytes_put", "frames_got", "bytes_got", "full", "empty"), 0
        )
    )
    condition: threading.Condition = field(default_factory=threading.Condition)


_REGISTRY: dict[int, _State] = {}
_KEYS = itertools.count(1)


class ReferenceRing:
    """Deque-backed stand-in for :class:`shm.Ring` (same methods, same errors)."""

    def __init__(self, key: int, state: _State, *, owner: bool) -> None:
        self._key = key
        self._state: _State | None = state
        self._owner = owner

    @classmethod
    def create(
        cls,
        capacity_bytes: int,
        *,
        run_id: str | None = None,
        tag: str = "ring",
        directory: str | None = None,
        role: Role | None = None,
    ) -> ReferenceRing:
        if not MIN_CAPACITY <= capacity_bytes <= MAX_CAPACITY:
            raise ValueError(f"ring capacity out of range: {capacity_bytes}")
        key = next(_KEYS)
        state = _State(capacity=(capacity_bytes + 15) & ~15, name=f"reference-{key}-{tag}")
        _REGISTRY[key] = state
        return cls(key, state, owner=True)

    @classmethod
    def attach(cls, spec: ReferenceRingSpec, *, role: Role | None = None) -> ReferenceRing:
        state = _REGISTRY.get(spec.key)
        if state is None:
            raise ShmError(f"reference ring {spec.key} does not exist in this process")
        return cls(spec.key, state, owner=False)

    def claim(self, role: Role) -> None:
        if role not in ("producer", "consumer"):
            raise ValueError(f"role must be 'producer' or 'consumer', got {role!r}")

    # -- properties ---------------------------------------------------------------------

    @property
    def _s(self) -> _State:
        if self._state is None:
            raise ShmError(f"reference ring {self._key} is detached")
        return self._state

    @property
    def spec(self) -> ReferenceRingSpec:
        return ReferenceRingSpec(self._key, self._s.capacity)

    @property
    def name(self) -> str:
        return self._s.name

    @property
    def capacity(self) -> int:
        return self._s.capacity

    @property
    def max_frame_payload(self) -> int:
        return self._s.capacity - FRAME_HEADER

    @property
    def is_owner(self) -> bool:
        return self._owner

    @property
    def closed(self) -> bool:
        return self._s.closed

    def has_data(self) -> bool:
        return bool(self._s.frames)

    def readable(self) -> bool:
        return bool(self._s.frames) or self._s.closed

    def statistics(self) -> RingStatistics:
        s = self._s
        with s.condition:
            c = s.counters
            return RingStatistics(
                capacity=s.capacity,
                used_bytes=s.used,
                frames_put=c["frames_put"],
                bytes_put=c["bytes_put"],
                frames_got=c["frames_got"],
                bytes_got=c["bytes_got"],
                full_count=c["full"],
                empty_count=c["empty"],
                producer_pid=os.getpid(),
                consumer_pid=os.getpid(),
                closed=s.closed,
            )

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        s = self._s
        with s.condition:
            s.closed = True
            s.condition.notify_all()

    def detach(self) -> None:
        self._state = None

    def unlink(self) -> None:
        if not self._owner:
            raise ShmError("only the creator of a reference ring unlinks it")
        _REGISTRY.pop(self._key, None)

    def __enter__(self) -> ReferenceRing:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()
        if self._owner:
            self.unlink()

    # -- core ---------------------------------------------------------------------------

    def _offer(self, kind: str, tag: int, payload: bytes, oversize_ok: bool) -> bool:
        """Append a frame if the budget allows; caller holds the condition."""
        s = self._s
        if s.closed:
            raise RingClosed(f"ring {s.name} is closed; nothing more can be put")
        cost = frame_cost(len(payload))
        if cost > s.capacity and oversize_ok:
            cost = s.capacity  # streams through in chunks: needs the whole ring
        if s.used + cost > s.capacity:
            return False
        s.frames.append((kind, tag, payload, cost))
        s.used += cost
        s.counters["frames_put"] += 1
        s.counters["bytes_put"] += len(payload)
        s.condition.notify_all()
        return True

    def _put(self, kind: str, tag: int, payload: bytes, timeout: float | None, block: bool) -> None:
        s = self._s
        oversize_ok = kind == _BATCH and block
        with s.condition:
            if self._offer(kind, tag, payload, oversize_ok):
                return
            s.counters["full"] += 1
            if not block:
                raise WouldBlock(f"ring {s.name} is full")
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._offer(kind, tag, payload, oversize_ok):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RingTimeout(f"timed out after {timeout} s waiting for free space")
                s.condition.wait(remaining)

    def _take(self, kind: str) -> tuple[int, bytes] | None:
        s = self._s
        if not s.frames:
            if s.closed:
                raise RingClosed(f"ring {s.name} is closed and drained")
            return None
        frame_kind, tag, payload, cost = s.frames[0]
        if frame_kind != kind:
            raise ShmError(f"the next frame on ring {s.name} is a {frame_kind} frame")
        s.frames.popleft()
        s.used -= cost
        s.counters["frames_got"] += 1
        s.counters["bytes_got"] += len(payload)
        s.condition.notify_all()
        return tag, payload

    def _get(self, kind: str, timeout: float | None, block: bool) -> tuple[int, bytes]:
        s = self._s
        with s.condition:
            result = self._take(kind)
            if result is not None:
                return result
            s.counters["empty"] += 1
            if not block:
                raise WouldBlock(f"ring {s.name} is empty")
            deadline = None if timeout is None else time.monotonic() + timeout
            while (result := self._take(kind)) is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RingTimeout(f"timed out after {timeout} s waiting for data")
                s.condition.wait(remaining)
            return result

    def _raw_payload(self, frame: Frame) -> bytes:
        parts: Any = frame if isinstance(frame, list | tuple) else [frame]
        payload = b"".join(bytes(memoryview(part).cast("B")) for part in parts)
        if frame_cost(len(payload)) > self._s.capacity:
            raise FrameTooLarge(
                f"a {len(payload)}-byte frame can never fit into ring {self.name} of "
                f"capacity {self.capacity} bytes; create the ring with a larger "
                "capacity_bytes, or use put_batch()"
            )
        return payload

    def _batch_payload(self, items: list[Any], allow_oversize: bool) -> bytes:
        payload = pickle.dumps(items, protocol=5)
        if not allow_oversize and frame_cost(len(payload)) > self._s.capacity:
            raise FrameTooLarge(
                f"a batch of {len(payload)} pickled bytes exceeds ring {self.name}'s "
                f"capacity of {self.capacity} bytes; use put_batch() or a larger ring"
            )
        return payload

    # -- public API (mirrors shm.Ring) --------------------------------------------------

    def try_put(self, frame: Frame, tag: int = 0) -> None:
        self._put(_RAW, tag, self._raw_payload(frame), None, block=False)

    def put(self, frame: Frame, tag: int = 0, timeout: float | None = None) -> None:
        self._put(_RAW, tag, self._raw_payload(frame), timeout, block=True)

    def try_get(self) -> bytes:
        return self._get(_RAW, None, block=False)[1]

    def try_get_tagged(self) -> tuple[int, bytes]:
        return self._get(_RAW, None, block=False)

    def get(self, timeout: float | None = None) -> bytes:
        return self._get(_RAW, timeout, block=True)[1]

    def get_tagged(self, timeout: float | None = None) -> tuple[int, bytes]:
        return self._get(_RAW, timeout, block=True)

    def try_put_batch(self, items: list[Any], tag: int = 0) -> None:
        self._put(_BATCH, tag, self._batch_payload(items, False), None, block=False)

    def put_batch(self, items: list[Any], tag: int = 0, timeout: float | None = None) -> None:
        self._put(_BATCH, tag, self._batch_payload(items, True), timeout, block=True)

    def try_get_batch(self) -> list[Any]:
        return self.try_get_batch_tagged()[1]

    def try_get_batch_tagged(self) -> tuple[int, list[Any]]:
        tag, payload = self._get(_BATCH, None, block=False)
        return tag, pickle.loads(payload)

    def get_batch(self, timeout: float | None = None) -> list[Any]:
        return self.get_batch_tagged(timeout)[1]

    def get_batch_tagged(self, timeout: float | None = None) -> tuple[int, list[Any]]:
        tag, payload = self._get(_BATCH, timeout, block=True)
        return tag, pickle.loads(payload)
