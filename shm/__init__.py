"""Shared-memory transport for shmflow: segments, SPSC batch rings, single-writer counters.

This package knows nothing of dataflows: it moves frames and batches of picklable
objects between processes on one machine. It never imports ``engine`` or ``recovery``.

* :class:`Segment` -- a named, preallocated ``/dev/shm`` file mapped with mmap; created
  (and unlinked) by one owner, attached by others through a picklable spec.
* :class:`Ring` -- a bounded single-producer/single-consumer ring of tagged frames and
  pickled batches (numpy buffers out-of-band); :class:`ReferenceRing` is an in-process
  model with the same interface.
* :class:`Counters` -- int64 slots, each with exactly one writer process.
* :func:`cleanup_stale` -- removes segments left behind by dead processes.

Errors are in :mod:`shm.errors` (re-exported here); all derive from :class:`ShmError`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shm._counters import Counters, CountersSpec
    from shm._reference import ReferenceRing, ReferenceRingSpec
    from shm._ring import Ring, RingSpec, RingStatistics, frame_cost
    from shm._segment import (
        SEGMENT_DIR_ENV,
        SEGMENT_PREFIX,
        Segment,
        SegmentSpec,
        cleanup_stale,
        new_run_id,
    )
    from shm.errors import (
        FrameTooLarge,
        PeerGone,
        RingClosed,
        RingTimeout,
        ShmError,
        ShmFull,
        WouldBlock,
    )

#: Where each public name lives. The package imports a module when one of its names is
#: first used: a worker process needs the ring, the counters and the segments, not the
#: in-process reference ring (which would cost it ~5 ms of start-up).
_HOMES = {
    "Counters": "_counters",
    "CountersSpec": "_counters",
    "ReferenceRing": "_reference",
    "ReferenceRingSpec": "_reference",
    "Ring": "_ring",
    "RingSpec": "_ring",
    "RingStatistics": "_ring",
    "frame_cost": "_ring",
    "SEGMENT_DIR_ENV": "_segment",
    "SEGMENT_PREFIX": "_segment",
    "Segment": "_segment",
    "SegmentSpec": "_segment",
    "cleanup_stale": "_segment",
    "new_run_id": "_segment",
    "FrameTooLarge": "errors",
    "PeerGone": "errors",
    "RingClosed": "errors",
    "RingTimeout": "errors",
    "ShmError": "errors",
    "ShmFull": "errors",
    "WouldBlock": "errors",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'shm' has no attribute {name!r}")
    value = getattr(import_module(f"shm.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "SEGMENT_DIR_ENV",
    "SEGMENT_PREFIX",
    "Counters",
    "CountersSpec",
    "FrameTooLarge",
    "PeerGone",
    "ReferenceRing",
    "ReferenceRingSpec",
    "Ring",
    "RingClosed",
    "RingSpec",
    "RingStatistics",
    "RingTimeout",
    "Segment",
    "SegmentSpec",
    "ShmError",
    "ShmFull",
    "WouldBlock",
    "cleanup_stale",
    "frame_cost",
    "new_run_id",
]
