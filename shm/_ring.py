"""A bounded single-producer/single-consumer ring of variable-length frames.

One ring lives in one shared-memory segment (:mod:`shm._segment`). Exactly one process
(or thread) puts, exactly one gets. The creator owns the segment and unlinks it; other
processes attach by :attr:`Ring.spec`.

Byte layout (absolute offsets in the segment mapping; all integers little-endian u64)::

      0  segment header (64 bytes, see _segment.py: magic, creator pid/start, size)
     64  ring line           : RING_MAGIC, capacity                   (constant)
    128  producer line       : head, closed, producer_pid, producer_start
    192  producer statistics : frames_put, bytes_put, full_count
    256  consumer line       : tail, consumer_pid, consumer_start
    320  consumer statistics : frames_got, bytes_got, empty_count
    384  data                : ``capacity`` bytes, a circular buffer of frames

The producer writes only the two producer lines, the consumer only the two consumer
lines; the ring line is written once at creation. ``head`` and ``tail`` are
monotonically increasing 64-bit byte counters (never wrapped; 2**64 bytes is centuries
at memory speed); a byte counter ``c`` lives at data offset ``c % capacity`` and
``head - tail`` bytes are in use. Each sits on its own 64-byte cache line, and the
per-frame statistics sit on separate lines, so the line the peer polls changes once per
frame and the two sides never write the same line.

A frame is a 16-byte header followed by its payload, padded to a multiple of 16::

    u64 tag              opaque, chosen by the producer (the engine encodes edge/kind/epoch)
    u32 payload length   bytes, excluding header and padding
    u32 flags            kind (low byte: RAW, BATCH, BATCH_OOB) | part << 8
                         (WHOLE, or FIRST/MIDDLE/LAST of a batch split into chunks)

``capacity`` is a multiple of 16 and frames start at multiples of 16, so a frame header
never straddles the end of the data area; a payload may, and is then written and read in
two pieces. A frame costs ``16 + pad16(length)`` bytes and fits whenever that many bytes
are free, so an empty ring accepts any frame up to ``capacity`` bytes.

Batch payloads are ``pickle`` protocol 5 of the item list. Without out-of-band buffers
(kind BATCH) the payload is the pickle. With them (kind BATCH_OOB, e.g. numpy arrays)::

    u64 buffer count n, u64 pickle length, n x u64 buffer length, pad16
    pickle bytes, pad16, buffer 0, pad16, ..., buffer n-1

A batch whose frame would exceed the capacity is split into FIRST/MIDDLE/LAST chunk
frames; the FIRST payload starts with the u64 total length; the consumer reassembles.

Memory ordering. The producer writes the frame header and payload, *then* stores the new
``head``; the consumer loads ``head``, *then* reads the frame, *then* stores the new
``tail``; the producer loads ``tail`` before writing into freed space. Every store of a
counter is one aligned 8-byte store (``memoryview.cast("Q")`` item assignment), which is
atomic on x86-64. CPython performs these stores in program order (each is a separate C
call, no reordering across them), and x86-64's TSO memory model keeps stores in order
with stores and loads in order with loads, and never moves a store before an earlier
load. That is all the protocol needs, so there are no locks or fences. On a weakly
ordered CPU (ARM, POWER) this is not enough: publishing ``head``/``tail`` would need a
release store and reading them an acquire load (e.g. a tiny C extension or
``atomics``-style module) -- do not port the ring there without adding them.

Waiting (``put``/``get`` and friends) polls the header for ~100 us (yielding the CPU
between polls, so a peer sharing the core can run), then sleeps with exponential back-off
up to 1 ms, so an idle side costs next to no CPU. While waiting it checks every
few milliseconds that the peer process (recorded in the header when a side first uses or
claims its end) is alive, and raises :class:`~shm.errors.PeerGone` if not.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeAlias, TypeVar

from shm._segment import Segment, SegmentSpec, own_start_token, process_start_token
from shm.errors import (
    FrameTooLarge,
    PeerGone,
    RingClosed,
    RingTimeout,
    ShmError,
    WouldBlock,
)

__all__ = ["BytesLike", "Frame", "Ring", "RingSpec", "RingStatistics", "Role"]

#: A contiguous bytes-like object (numpy arrays and other buffers work too).
BytesLike: TypeAlias = bytes | bytearray | memoryview
#: One buffer, or several gathered into one frame.
Frame: TypeAlias = BytesLike | Sequence[BytesLike]
Role: TypeAlias = Literal["producer", "consumer"]
_T = TypeVar("_T")

# Byte offsets in the mapping (see module docstring); _I_* are u64 indexes.
_RING_LINE = 64
_PRODUCER_LINE = 128
_PRODUCER_STATISTICS = 192
_CONSUMER_LINE = 256
_CONSUMER_STATISTICS = 320
_DATA = 384
_RING_MAGIC = 0x474E4952574C4653  # "SFLWRING"
_I_MAGIC, _I_CAPACITY = _RING_LINE // 8, _RING_LINE // 8 + 1
_I_HEAD = _PRODUCER_LINE // 8
_I_CLOSED = _I_HEAD + 1
_I_PRODUCER_PID = _I_HEAD + 2
_I_PRODUCER_START = _I_HEAD + 3
_I_FRAMES_PUT = _PRODUCER_STATISTICS // 8
_I_BYTES_PUT = _I_FRAMES_PUT + 1
_I_FULL_COUNT = _I_FRAMES_PUT + 2
_I_TAIL = _CONSUMER_LINE // 8
_I_CONSUMER_PID = _I_TAIL + 1
_I_CONSUMER_START = _I_TAIL + 2
_I_FRAMES_GOT = _CONSUMER_STATISTICS // 8
_I_BYTES_GOT = _I_FRAMES_GOT + 1
_I_EMPTY_COUNT = _I_FRAMES_GOT + 2

FRAME_HEADER = 16
MIN_CAPACITY = 64
#: A batch larger than the ring is cut into chunks of capacity / this, so the producer
#: can write some while the consumer copies others out.
CHUNKS_IN_FLIGHT = 4
MAX_CAPACITY = 2**32  # payload lengths are u32

KIND_RAW = 1
KIND_BATCH = 2
KIND_BATCH_OOB = 3
PART_WHOLE = 0
PART_FIRST = 1 << 8
PART_MIDDLE = 2 << 8
PART_LAST = 3 << 8
_KIND_MASK = 0xFF
_PART_MASK = 0xFF00
_LENGTH_MASK = 0xFFFFFFFF

_U64 = struct.Struct("<Q")
_BATCH_WHOLE_HIGH = (KIND_BATCH | PART_WHOLE) << 32
_dumps = pickle.dumps
_loads = pickle.loads
_ZEROS = bytes(16)
_PICKLE_PROTOCOL = 5

#: How long a waiting side polls without sleeping: a sleep costs at least ~60 us on
#: Linux (timer slack), more than a peer usually needs to free space or publish a frame.
SPIN_S = 100e-6
#: Polls between clock reads while spinning.
_POLLS_PER_CLOCK_READ = 16
#: First sleep of the back-off.
MIN_BACKOFF_S = 20e-6
#: Longest single sleep of the back-off.
MAX_BACKOFF_S = 1e-3
#: How often a waiting side checks that its peer process is alive.
PEER_CHECK_INTERVAL_S = 0.005

#: "Could not proceed": an attempt found the ring full/empty.
_NOTHING: Any = object()
#: "Not done, but moved": chunks of a large batch were read; waiting restarts its back-off.
_PROGRESS: Any = object()


def _pad16(n: int) -> int:
    return (n + 15) & ~15


def frame_cost(payload_bytes: int) -> int:
    """Bytes of ring a frame with ``payload_bytes`` of payload occupies."""
    return FRAME_HEADER + ((payload_bytes + 15) & ~15)


@dataclass(frozen=True)
class RingSpec:
    """What another process needs to attach to a ring. Small and picklable."""

    segment: SegmentSpec
    capacity: int

    @property
    def name(self) -> str:
        return self.segment.name


@dataclass(frozen=True)
class RingStatistics:
    """A snapshot of a ring's header counters (readable from any process)."""

    capacity: int
    used_bytes: int
    frames_put: int
    bytes_put: int
    frames_got: int
    bytes_got: int
    #: Times a put found too little free space (once per blocking call / per try).
    full_count: int
    #: Times a get found nothing to read (once per blocking call / per try).
    empty_count: int
    producer_pid: int
    consumer_pid: int
    closed: bool


class _Detached:
    """Stands in for the mapping after ``detach()`` so stale use fails clearly."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _fail(self, *_args: object) -> Any:
        raise ShmError(f"ring {self._name} is detached in this process; attach it again")

    __getitem__ = __setitem__ = _fail


def _byte_view(buffer: Any) -> tuple[Any, int]:
    """Return (object writable into the ring, its size in bytes)."""
    if type(buffer) is bytes or type(buffer) is bytearray:
        return buffer, len(buffer)
    view = memoryview(buffer)
    if view.ndim != 1 or view.format != "B":
        if not view.c_contiguous:
            raise ValueError("frame buffers must be C-contiguous bytes-like objects")
        view = view.cast("B")
    return view, view.nbytes


class Ring:
    """Bounded SPSC ring of tagged frames and pickled batches in shared memory.

    Ownership: ``Ring.create`` makes the segment and owns it (only the owner may
    ``unlink()``); ``Ring.attach(ring.spec)`` maps it in another process; ``detach()``
    unmaps this process's view. Used as a context manager, a ring detaches on exit and
    the owner also unlinks.

    One process puts, one gets. ``close()`` (producer) ends the stream: the consumer
    reads everything already put, then gets :class:`RingClosed`.
    """

    # -- construction -------------------------------------------------------------------

    def __init__(self, segment: Segment, role: Role | None) -> None:
        self._segment = segment
        self._name = segment.name
        self._mm = segment.mmap
        self._mv = memoryview(self._mm)
        self._q = self._mv.cast("Q")
        if self._q[_I_MAGIC] != _RING_MAGIC:
            self.detach()
            raise ShmError(f"segment {segment.name} does not hold a ring (bad ring magic)")
        self._capacity = self._q[_I_CAPACITY]
        self._chunk_payload = max(self._capacity // CHUNKS_IN_FLIGHT & ~15, 64) - FRAME_HEADER
        self._producer_claimed = False
        self._consumer_claimed = False
        # Consumer-side reassembly of a chunked batch: [kind, tag, buffer, filled].
        self._partial: list[Any] | None = None
        # Reused buffer_callback target of the batch pickler (out-of-band buffers).
        self._oob: list[pickle.PickleBuffer] = []
        # Set when a chunked put was interrupted; the stream is then unusable.
        self._broken: str | None = None
        if role is not None:
            self.claim(role)

    @classmethod
    def create(
        cls,
        capacity_bytes: int,
        *,
        run_id: str | None = None,
        tag: str = "ring",
        directory: str | None = None,
        role: Role | None = None,
    ) -> Ring:
        """Create a ring with ``capacity_bytes`` of frame space (rounded up to 16).

        The calling process owns the segment. ``role`` claims an end right away (see
        :meth:`claim`). Raises :class:`ShmFull` if shared memory lacks the space.
        """
        if not MIN_CAPACITY <= capacity_bytes <= MAX_CAPACITY:
            raise ValueError(
                f"ring capacity must be between {MIN_CAPACITY} and {MAX_CAPACITY} bytes, "
                f"got {capacity_bytes}"
            )
        capacity = _pad16(capacity_bytes)
        segment = Segment.create(
            _DATA - Segment.data_offset + capacity, run_id=run_id, tag=tag, directory=directory
        )
        try:
            words = memoryview(segment.mmap).cast("Q")
            words[_I_CAPACITY] = capacity
            words[_I_MAGIC] = _RING_MAGIC
            words.release()
            return cls(segment, role)
        except BaseException:
            segment.close()
            segment.unlink()
            raise

    @classmethod
    def attach(cls, spec: RingSpec, *, role: Role | None = None) -> Ring:
        """Map the ring described by ``spec`` (from :attr:`spec` in another process)."""
        return cls(Segment.attach(spec.segment), role)

    def claim(self, role: Role) -> None:
        """Record this process as the ring's producer or consumer.

        The peer uses the recorded pid to notice this process dying while it waits. A
        side claims its end automatically on its first put/get; claim explicitly at
        attach time so that a peer waiting before that first call is covered too.
        """
        if role == "producer":
            self._q[_I_PRODUCER_START] = own_start_token()
            self._q[_I_PRODUCER_PID] = os.getpid()
            self._producer_claimed = True
        elif role == "consumer":
            self._q[_I_CONSUMER_START] = own_start_token()
            self._q[_I_CONSUMER_PID] = os.getpid()
            self._consumer_claimed = True
        else:
            raise ValueError(f"role must be 'producer' or 'consumer', got {role!r}")

    # -- properties ---------------------------------------------------------------------

    @property
    def spec(self) -> RingSpec:
        return RingSpec(segment=self._segment.spec, capacity=self._capacity)

    @property
    def name(self) -> str:
        return self._name

    @property
    def capacity(self) -> int:
        """Bytes of frame space; the largest raw payload is ``capacity - 16``."""
        return self._capacity

    @property
    def max_frame_payload(self) -> int:
        """Largest payload a single (raw) frame can carry."""
        return self._capacity - FRAME_HEADER

    @property
    def is_owner(self) -> bool:
        return self._segment.is_owner

    @property
    def closed(self) -> bool:
        """True once the producer called ``close()`` (frames may still be unread)."""
        return bool(self._q[_I_CLOSED])

    def has_data(self) -> bool:
        """True if at least one frame is waiting to be read."""
        q = self._q
        return q[_I_HEAD] != q[_I_TAIL]

    def readable(self) -> bool:
        """True if a get would not wait: data is pending or the stream has ended.

        Two header loads; meant for a consumer polling several rings.
        """
        q = self._q
        return q[_I_HEAD] != q[_I_TAIL] or q[_I_CLOSED] != 0

    def statistics(self) -> RingStatistics:
        q = self._q
        head, tail = q[_I_HEAD], q[_I_TAIL]
        return RingStatistics(
            capacity=self._capacity,
            used_bytes=head - tail,
            frames_put=q[_I_FRAMES_PUT],
            bytes_put=q[_I_BYTES_PUT],
            frames_got=q[_I_FRAMES_GOT],
            bytes_got=q[_I_BYTES_GOT],
            full_count=q[_I_FULL_COUNT],
            empty_count=q[_I_EMPTY_COUNT],
            producer_pid=q[_I_PRODUCER_PID],
            consumer_pid=q[_I_CONSUMER_PID],
            closed=bool(q[_I_CLOSED]),
        )

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        """End the stream (producer side). Idempotent.

        Frames already put stay readable; afterwards the consumer gets
        :class:`RingClosed`, and so does any further put.
        """
        self._q[_I_CLOSED] = 1

    def detach(self) -> None:
        """Unmap the ring in this process. Idempotent; does not close or unlink."""
        if isinstance(self._q, _Detached):
            return
        detached: Any = _Detached(self._name)
        for view in (self._q, self._mv):
            with contextlib.suppress(BufferError):  # a user holds a view: GC unmaps later
                view.release()
        self._q = self._mm = self._mv = detached
        self._segment.close()

    def unlink(self) -> None:
        """Remove the ring's name (creator only; :class:`ShmError` otherwise)."""
        if not self._segment.is_owner:
            raise ShmError(
                f"ring {self._name} was attached, not created, by this process; "
                "only its creator unlinks it"
            )
        self._segment.unlink()

    def __enter__(self) -> Ring:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Detach; the owner also unlinks."""
        self.detach()
        if self._segment.is_owner:
            self._segment.unlink()

    def __repr__(self) -> str:
        return f"<Ring {self._name} capacity={self._capacity}>"

    def __reduce__(self) -> Any:
        raise TypeError(
            f"a Ring handle ({self._name}) cannot be pickled; send ring.spec to the other "
            "process and call Ring.attach(spec) there"
        )

    # -- raw frames: put ----------------------------------------------------------------

    def try_put(self, frame: Frame, tag: int = 0) -> None:
        """Put one frame now or raise :class:`WouldBlock` (ring too full).

        ``frame`` is a bytes-like object or a list of them (gathered into one frame).
        Raises :class:`FrameTooLarge` if it can never fit, :class:`RingClosed` after
        ``close()``.
        """
        parts, nbytes = self._raw_parts(frame)
        if not self._try_write(parts, nbytes, tag, KIND_RAW):
            self._q[_I_FULL_COUNT] += 1
            raise WouldBlock(f"ring {self._name} is full")

    def put(self, frame: Frame, tag: int = 0, timeout: float | None = None) -> None:
        """Put one frame, waiting while the ring is full.

        Raises :class:`RingTimeout` after ``timeout`` seconds, :class:`PeerGone` if the
        consumer dies meanwhile, plus everything :meth:`try_put` raises.
        """
        parts, nbytes = self._raw_parts(frame)
        self._put_parts(parts, nbytes, tag, KIND_RAW, timeout)

    def _raw_parts(self, frame: Frame) -> tuple[list[Any], int]:
        if type(frame) is bytes:
            parts, nbytes = [frame], len(frame)
        elif isinstance(frame, list | tuple):
            parts, nbytes = [], 0
            for buffer in frame:
                view, size = _byte_view(buffer)
                parts.append(view)
                nbytes += size
        else:
            view, nbytes = _byte_view(frame)
            parts = [view]
        if FRAME_HEADER + nbytes > self._capacity:
            raise FrameTooLarge(
                f"a {nbytes}-byte frame can never fit into ring {self._name} of capacity "
                f"{self._capacity} bytes (at most {self.max_frame_payload} payload bytes "
                "per frame); create the ring with a larger capacity_bytes, or send the "
                "data with put_batch(), which splits large batches"
            )
        return parts, nbytes

    def _try_write(self, parts: list[Any], nbytes: int, tag: int, flags: int) -> bool:
        """Write one frame if it fits now; return whether it did."""
        if not self._producer_claimed:
            if self._broken is not None:
                raise ShmError(self._broken)
            self.claim("producer")
        q = self._q
        head = q[_I_HEAD]
        cost = FRAME_HEADER + ((nbytes + 15) & ~15)
        capacity = self._capacity
        if cost > capacity - (head - q[_I_TAIL]):
            if q[_I_CLOSED]:
                raise self._closed_for_put()
            return False
        if q[_I_CLOSED]:
            raise self._closed_for_put()
        pos = head % capacity
        index = (_DATA + pos) >> 3
        q[index] = tag
        q[index + 1] = nbytes | (flags << 32)
        pos += FRAME_HEADER
        if pos == capacity:
            pos = 0
        mm = self._mm
        for part in parts:
            size = part.nbytes if type(part) is memoryview else len(part)
            end = pos + size
            if end <= capacity:
                mm[_DATA + pos : _DATA + end] = part
                pos = end
            else:  # the payload straddles the end of the data area
                first = capacity - pos
                view = memoryview(part)
                mm[_DATA + pos : _DATA + capacity] = view[:first]
                pos = size - first
                mm[_DATA : _DATA + pos] = view[first:]
        q[_I_HEAD] = head + cost  # publish: everything above is written
        q[_I_FRAMES_PUT] += 1
        q[_I_BYTES_PUT] += nbytes
        return True

    def _closed_for_put(self) -> RingClosed:
        return RingClosed(f"ring {self._name} is closed; nothing more can be put (make a new ring)")

    def _put_parts(
        self,
        parts: list[Any],
        nbytes: int,
        tag: int,
        flags: int,
        timeout: float | None,
        deadline: float | None = None,
    ) -> None:
        if self._try_write(parts, nbytes, tag, flags):
            return
        self._q[_I_FULL_COUNT] += 1

        def attempt() -> Any:
            return True if self._try_write(parts, nbytes, tag, flags) else _NOTHING

        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        self._wait(attempt, deadline, timeout, "producer")

    # -- raw frames: get ----------------------------------------------------------------

    def try_get(self) -> bytes:
        """Return the next raw frame's payload now, or raise :class:`WouldBlock`.

        Raises :class:`RingClosed` once the ring is closed and drained.
        """
        return self.try_get_tagged()[1]

    def try_get_tagged(self) -> tuple[int, bytes]:
        """Like :meth:`try_get` but return ``(tag, payload)``."""
        result = self._try_read_raw()
        if result is _NOTHING:
            self._q[_I_EMPTY_COUNT] += 1
            raise WouldBlock(f"ring {self._name} is empty")
        return result

    def get(self, timeout: float | None = None) -> bytes:
        """Return the next raw frame's payload, waiting while the ring is empty.

        Raises :class:`RingClosed` once closed and drained, :class:`RingTimeout`,
        :class:`PeerGone` if the producer dies while we wait.
        """
        return self.get_tagged(timeout)[1]

    def get_tagged(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Like :meth:`get` but return ``(tag, payload)``."""
        result = self._try_read_raw()
        if result is _NOTHING:
            self._q[_I_EMPTY_COUNT] += 1
            deadline = None if timeout is None else time.monotonic() + timeout
            result = self._wait(self._try_read_raw, deadline, timeout, "consumer")
        return result

    def _next_frame(self) -> tuple[int, int, int, int, int] | None:
        """Return (tail, payload position, tag, length, flags) of the next frame."""
        if not self._consumer_claimed:
            self.claim("consumer")
        q = self._q
        tail = q[_I_TAIL]
        if tail == q[_I_HEAD]:
            if q[_I_CLOSED] and tail == q[_I_HEAD]:
                self._raise_end_of_stream()
            return None
        pos = tail % self._capacity
        index = (_DATA + pos) >> 3
        length_flags = q[index + 1]
        pos += FRAME_HEADER
        if pos == self._capacity:
            pos = 0
        return tail, pos, q[index], length_flags & _LENGTH_MASK, length_flags >> 32

    def _raise_end_of_stream(self) -> None:
        if self._partial is not None:
            self._partial = None
            raise ShmError(
                f"ring {self._name} was closed in the middle of a chunked batch (the "
                "producer was interrupted); the batch is lost"
            )
        raise RingClosed(f"ring {self._name} is closed and drained; nothing more will arrive")

    def _consume(self, tail: int, nbytes: int) -> None:
        q = self._q
        q[_I_TAIL] = tail + FRAME_HEADER + ((nbytes + 15) & ~15)  # frees the space
        q[_I_FRAMES_GOT] += 1
        q[_I_BYTES_GOT] += nbytes

    def _read_bytes(self, pos: int, nbytes: int) -> bytes:
        end = pos + nbytes
        if end <= self._capacity:
            return self._mm[_DATA + pos : _DATA + end]
        first = self._capacity - pos
        return (
            self._mm[_DATA + pos : _DATA + self._capacity]
            + self._mm[_DATA : _DATA + nbytes - first]
        )

    def _copy_into(self, target: memoryview, pos: int, nbytes: int) -> None:
        end = pos + nbytes
        if end <= self._capacity:
            target[:nbytes] = self._mv[_DATA + pos : _DATA + end]
        else:
            first = self._capacity - pos
            target[:first] = self._mv[_DATA + pos : _DATA + self._capacity]
            target[first:nbytes] = self._mv[_DATA : _DATA + nbytes - first]

    def _try_read_raw(self) -> Any:
        frame = self._next_frame()
        if frame is None:
            return _NOTHING
        tail, pos, tag, nbytes, flags = frame
        if flags != KIND_RAW:
            raise ShmError(
                f"the next frame on ring {self._name} is a batch; read it with get_batch()"
            )
        payload = self._read_bytes(pos, nbytes)
        self._consume(tail, nbytes)
        return tag, payload

    # -- batches: put -------------------------------------------------------------------

    def try_put_batch(self, items: list[Any], tag: int = 0) -> None:
        """Pickle ``items`` as one frame and put it now, or raise :class:`WouldBlock`.

        A batch too large for one frame raises :class:`FrameTooLarge` here (it cannot be
        put without waiting); :meth:`put_batch` splits it instead.
        """
        oob = self._oob
        data = _dumps(items, _PICKLE_PROTOCOL, buffer_callback=oob.append)
        flags, parts, nbytes = _encode_batch(data, oob)
        oob.clear()
        if FRAME_HEADER + nbytes > self._capacity:
            raise FrameTooLarge(
                f"a batch of {nbytes} pickled bytes exceeds ring {self._name}'s capacity "
                f"of {self._capacity} bytes, so it cannot be put without waiting; use "
                "put_batch() (splits it into chunks) or create a larger ring"
            )
        if not self._try_write(parts, nbytes, tag, flags):
            self._q[_I_FULL_COUNT] += 1
            raise WouldBlock(f"ring {self._name} is full")

    def put_batch(self, items: list[Any], tag: int = 0, timeout: float | None = None) -> None:
        """Pickle ``items`` (protocol 5) as one frame and put it, waiting while full.

        numpy arrays travel out-of-band: their bytes are copied straight into the ring.
        A batch larger than the ring is split into chunks and reassembled by the
        consumer. ``timeout`` bounds the whole call; raises like :meth:`put`.
        """
        oob = self._oob
        data = _dumps(items, _PICKLE_PROTOCOL, buffer_callback=oob.append)
        if not oob and self._producer_claimed:
            # Fast path: a plain pickle that fits now without straddling the ring end.
            q = self._q
            head = q[_I_HEAD]
            nbytes = len(data)
            cost = FRAME_HEADER + ((nbytes + 15) & ~15)
            capacity = self._capacity
            pos = head % capacity
            if (
                pos + cost <= capacity
                and cost <= capacity - (head - q[_I_TAIL])
                and not q[_I_CLOSED]
            ):
                index = (_DATA + pos) >> 3
                q[index] = tag
                q[index + 1] = nbytes | _BATCH_WHOLE_HIGH
                start = _DATA + pos + FRAME_HEADER
                self._mm[start : start + nbytes] = data
                q[_I_HEAD] = head + cost  # publish: everything above is written
                q[_I_FRAMES_PUT] += 1
                q[_I_BYTES_PUT] += nbytes
                return
        flags, parts, nbytes = _encode_batch(data, oob)
        oob.clear()
        if FRAME_HEADER + nbytes <= self._capacity:
            self._put_parts(parts, nbytes, tag, flags, timeout)
        else:
            self._put_chunked(parts, nbytes, tag, flags, timeout)

    def _put_chunked(
        self, parts: list[Any], nbytes: int, tag: int, kind: int, timeout: float | None
    ) -> None:
        if self._broken is not None:
            raise ShmError(self._broken)
        deadline = None if timeout is None else time.monotonic() + timeout
        chunks = _split_into_chunks(parts, nbytes, self._chunk_payload)
        last = len(chunks) - 1
        try:
            for number, (chunk_parts, chunk_bytes) in enumerate(chunks):
                part = PART_FIRST if number == 0 else PART_LAST if number == last else PART_MIDDLE
                self._put_parts(chunk_parts, chunk_bytes, tag, kind | part, timeout, deadline)
        except BaseException as error:
            if not isinstance(error, RingClosed):
                self._broken = (
                    f"ring {self._name}: an earlier chunked put_batch was interrupted "
                    f"({type(error).__name__}); the stream is corrupt, close it and "
                    "make a new ring"
                )
                self._producer_claimed = False  # route the next put through the check
            raise

    # -- batches: get -------------------------------------------------------------------

    def try_get_batch(self) -> list[Any]:
        """Return the next batch now, or raise :class:`WouldBlock`.

        Raises :class:`RingClosed` once closed and drained.
        """
        return self.try_get_batch_tagged()[1]

    def try_get_batch_tagged(self) -> tuple[int, list[Any]]:
        """Like :meth:`try_get_batch` but return ``(tag, items)``."""
        result = self._try_read_batch()
        if result is _NOTHING or result is _PROGRESS:
            self._q[_I_EMPTY_COUNT] += 1
            raise WouldBlock(f"ring {self._name} has no complete batch")
        return result

    def get_batch(self, timeout: float | None = None) -> list[Any]:
        """Return the next batch, waiting while none is complete; raises like :meth:`get`."""
        return self.get_batch_tagged(timeout)[1]

    def get_batch_tagged(self, timeout: float | None = None) -> tuple[int, list[Any]]:
        """Like :meth:`get_batch` but return ``(tag, items)``."""
        q = self._q
        tail = q[_I_TAIL]
        if tail != q[_I_HEAD] and self._consumer_claimed and self._partial is None:
            # Fast path: a whole plain batch that does not straddle the ring end.
            capacity = self._capacity
            pos = tail % capacity
            index = (_DATA + pos) >> 3
            length_flags = q[index + 1]
            nbytes = length_flags & _LENGTH_MASK
            if length_flags >> 32 == KIND_BATCH and pos + FRAME_HEADER + nbytes <= capacity:
                tag = q[index]
                start = _DATA + pos + FRAME_HEADER
                data = self._mm[start : start + nbytes]
                q[_I_TAIL] = tail + FRAME_HEADER + ((nbytes + 15) & ~15)  # frees the space
                q[_I_FRAMES_GOT] += 1
                q[_I_BYTES_GOT] += nbytes
                return tag, _loads(data)
        result = self._try_read_batch()
        if result is _NOTHING or result is _PROGRESS:
            self._q[_I_EMPTY_COUNT] += 1
            deadline = None if timeout is None else time.monotonic() + timeout
            result = self._wait(self._try_read_batch, deadline, timeout, "consumer")
        return result

    def _try_read_batch(self) -> Any:
        """Return (tag, items), or _NOTHING (nothing read) / _PROGRESS (chunks read)."""
        outcome = _NOTHING
        while True:
            frame = self._next_frame()
            if frame is None:
                return outcome
            tail, pos, tag, nbytes, flags = frame
            kind = flags & _KIND_MASK
            part = flags & _PART_MASK
            if kind == KIND_RAW:
                raise ShmError(
                    f"the next frame on ring {self._name} is a raw frame; read it with get()"
                )
            if part == PART_WHOLE:
                return tag, self._read_whole_batch(tail, pos, nbytes, kind)
            result = self._take_chunk(tail, pos, tag, nbytes, kind, part)
            if result is not _NOTHING:
                return result
            outcome = _PROGRESS

    def _read_whole_batch(self, tail: int, pos: int, nbytes: int, kind: int) -> list[Any]:
        if kind == KIND_BATCH and pos + nbytes <= self._capacity:
            # Unpickle straight from ring memory: the objects built are the one copy.
            view = self._mv[_DATA + pos : _DATA + pos + nbytes]
            try:
                return pickle.loads(view)
            finally:
                view.release()
                self._consume(tail, nbytes)
        if pos + nbytes <= self._capacity:  # the one copy out (no zero-fill first)
            target = memoryview(bytearray(self._mv[_DATA + pos : _DATA + pos + nbytes]))
        else:
            target = memoryview(bytearray(nbytes))
            self._copy_into(target, pos, nbytes)
        self._consume(tail, nbytes)
        return _decode_batch(kind, target)

    def _take_chunk(self, tail: int, pos: int, tag: int, nbytes: int, kind: int, part: int) -> Any:
        """Copy one chunk into the batch being reassembled; return it when complete."""
        if part == PART_FIRST:
            if self._partial is not None:
                self._partial = None
                self._consume(tail, nbytes)
                raise ShmError(f"ring {self._name}: a chunked batch was cut short; lost")
            total = _U64.unpack(self._read_bytes(pos, 8))[0]
            buffer = memoryview(bytearray(total))
            self._copy_into(buffer, (pos + 8) % self._capacity, nbytes - 8)
            self._partial = [kind, tag, buffer, nbytes - 8]
            self._consume(tail, nbytes)
            return _NOTHING
        partial = self._partial
        if partial is None:
            self._consume(tail, nbytes)
            raise ShmError(f"ring {self._name}: chunk without a first chunk; stream corrupt")
        buffer, filled = partial[2], partial[3]
        self._copy_into(buffer[filled:], pos, nbytes)
        partial[3] = filled + nbytes
        self._consume(tail, nbytes)
        if part != PART_LAST:
            return _NOTHING
        self._partial = None
        return partial[1], _decode_batch(partial[0], buffer)

    # -- waiting ------------------------------------------------------------------------

    def _wait(
        self,
        attempt: Callable[[], _T],
        deadline: float | None,
        timeout: float | None,
        role: Role,
    ) -> _T:
        """Call ``attempt`` until it returns a result (not _NOTHING or _PROGRESS).

        Spins, then sleeps with exponential back-off; checks the peer and the deadline.
        _PROGRESS (part of a chunked batch read) restarts the spin and the back-off.
        """
        next_peer_check = 0.0
        while True:
            spin_until = time.perf_counter() + SPIN_S
            while True:
                for _ in range(_POLLS_PER_CLOCK_READ):
                    result = attempt()
                    if result is _PROGRESS:
                        spin_until = time.perf_counter() + SPIN_S
                    elif result is not _NOTHING:
                        return result
                if time.perf_counter() >= spin_until:
                    break
                os.sched_yield()  # let the peer run if it shares our core
            result = self._sleep_until_progress(attempt, deadline, timeout, role, next_peer_check)
            if result is not _PROGRESS:
                return result

    def _sleep_until_progress(
        self,
        attempt: Callable[[], _T],
        deadline: float | None,
        timeout: float | None,
        role: Role,
        next_peer_check: float,
    ) -> _T:
        """Poll with exponentially growing sleeps until ``attempt`` does something."""
        delay = MIN_BACKOFF_S
        while True:
            result = attempt()
            if result is not _NOTHING:
                return result
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise self._timeout(role, timeout)
            if now >= next_peer_check:
                self._check_peer(role)
                next_peer_check = now + PEER_CHECK_INTERVAL_S
            sleep_for = delay if deadline is None else min(delay, max(deadline - now, 0.0))
            time.sleep(sleep_for)
            delay = min(delay * 2, MAX_BACKOFF_S)

    def _timeout(self, role: Role, timeout: float | None) -> RingTimeout:
        if role == "producer":
            what, peer = "free space", "consumer"
        else:
            what, peer = "data", "producer"
        return RingTimeout(
            f"timed out after {timeout} s waiting for {what} on ring {self._name}; the "
            f"{peer} is alive but not keeping up: raise the timeout or check the {peer}"
        )

    def _check_peer(self, role: Role) -> None:
        """Raise :class:`PeerGone` if the process at the other end has died."""
        q = self._q
        if role == "producer":
            pid, start, peer = q[_I_CONSUMER_PID], q[_I_CONSUMER_START], "consumer"
        else:
            pid, start, peer = q[_I_PRODUCER_PID], q[_I_PRODUCER_START], "producer"
        if pid == 0:
            return  # the peer has not claimed its end yet
        token = process_start_token(pid)
        if token is None or (start and token and token != start):
            raise PeerGone(
                f"the {peer} of ring {self._name} (pid {pid}) is gone; the ring cannot "
                "make progress: tear it down and report the dead process",
                pid,
            )


def _encode_batch(data: bytes, buffers: list[pickle.PickleBuffer]) -> tuple[int, list[Any], int]:
    """Lay out a pickle and its out-of-band buffers; return (kind, parts, total bytes).

    Each piece starts at a multiple of 16 (zero padding between pieces, none at the end).
    """
    if not buffers:
        return KIND_BATCH, [data], len(data)
    raws = [buffer.raw() for buffer in buffers]
    count = len(raws)
    head = struct.pack(f"<QQ{count}Q", count, len(data), *[raw.nbytes for raw in raws])
    parts: list[Any] = [head]
    nbytes = len(head)
    pieces: list[Any] = [data, *raws]
    for piece in pieces:
        pad = -nbytes & 15
        if pad:
            parts.append(_ZEROS[:pad])
        parts.append(piece)
        nbytes += pad + (len(piece) if type(piece) is bytes else piece.nbytes)
    return KIND_BATCH_OOB, parts, nbytes


def _decode_batch(kind: int, payload: memoryview) -> list[Any]:
    """Unpickle a batch payload that was copied out of the ring into ``payload``."""
    if kind == KIND_BATCH:
        return pickle.loads(payload)
    count, pickle_length = struct.unpack_from("<QQ", payload, 0)
    lengths = struct.unpack_from(f"<{count}Q", payload, 16)
    offset = _pad16(16 + 8 * count)
    data = payload[offset : offset + pickle_length]
    offset = _pad16(offset + pickle_length)
    buffers = []
    for length in lengths:
        buffers.append(payload[offset : offset + length])
        offset = _pad16(offset + length)
    return pickle.loads(data, buffers=buffers)


def _split_into_chunks(
    parts: list[Any], nbytes: int, chunk_payload: int
) -> list[tuple[list[Any], int]]:
    """Cut the byte stream ``parts`` into chunk frames of at most ``chunk_payload`` bytes.

    The first chunk starts with the u64 total length.
    """
    chunks: list[tuple[list[Any], int]] = []
    current: list[Any] = [_U64.pack(nbytes)]
    room = chunk_payload - 8
    for part in parts:
        view = memoryview(part)
        while view.nbytes:
            take = min(room, view.nbytes)
            current.append(view[:take])
            view = view[take:]
            room -= take
            if room == 0:
                chunks.append((current, chunk_payload - room))
                current, room = [], chunk_payload
    if current:
        chunks.append((current, chunk_payload - room))
    return chunks
