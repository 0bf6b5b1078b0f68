"""Errors raised by :mod:`shm`.

The tree is small on purpose; catch :class:`ShmError` to catch all of them::

    ShmError
    ├── WouldBlock        a try_* call could not proceed right now (ring full / empty)
    ├── RingClosed        the producer closed the ring (and, for readers, it is drained)
    ├── PeerGone          the process at the other end of a ring died while we waited
    ├── FrameTooLarge     a raw frame can never fit into the ring
    ├── ShmFull           the shared-memory filesystem cannot hold a new segment
    └── RingTimeout       a blocking call's timeout expired (also a TimeoutError)

Every message says what failed and what to do next.
"""

from __future__ import annotations

__all__ = [
    "FrameTooLarge",
    "PeerGone",
    "RingClosed",
    "RingTimeout",
    "ShmError",
    "ShmFull",
    "WouldBlock",
]


class ShmError(Exception):
    """Base class of every error raised by :mod:`shm`."""


class WouldBlock(ShmError):
    """A non-blocking ``try_*`` call could not proceed now.

    The ring is full (for ``try_put*``) or empty (for ``try_get*``). Retry later, or use
    the blocking variant (``put``/``get``), which waits with back-off.
    """


class RingClosed(ShmError):
    """The ring was closed by its producer.

    Raised to a producer that puts after ``close()``, and to a consumer once every frame
    put before ``close()`` has been read. Nothing more will arrive: stop reading.
    """


class PeerGone(ShmError):
    """The process at the other end of the ring died while this side was waiting.

    Its pid is in the message. The ring cannot make progress any more: tear the ring
    down (the creator unlinks it) and report the dead process.
    """

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


class FrameTooLarge(ShmError):
    """A raw frame is larger than the ring could ever hold.

    Raise the ring capacity (``Ring.create(capacity_bytes=...)``) or send the data with
    ``put_batch``, which splits large batches into chunks transparently.
    """


class ShmFull(ShmError):
    """The shared-memory filesystem has too little free space for a new segment.

    The message names needed vs available bytes. Free space in the directory (stale
    segments: ``shm.cleanup_stale()``), raise the tmpfs size (``mount -o
    remount,size=... /dev/shm``, or ``--shm-size`` for Docker), or use smaller ring
    capacities.
    """


class RingTimeout(ShmError, TimeoutError):
    """A blocking ring call did not complete before its timeout.

    The peer is alive but not keeping up (or stuck). Raise the timeout, make the peer
    faster, or check that the peer is still reading/writing this ring.
    """
