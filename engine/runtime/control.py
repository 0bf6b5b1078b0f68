"""A worker's end of its control connection, without importing :mod:`multiprocessing`.

The supervisor holds a :class:`multiprocessing.connection.Connection` on its end of the
socket pair (it waits on many of them at once with ``multiprocessing.connection.wait``).
A worker needs only ``send`` and ``recv``; importing :mod:`multiprocessing.connection`
for them would cost every worker start ~15 ms on a small machine (it pulls in
``tempfile``, ``shutil``, ``bz2``, ``lzma``, ``socket``, ``subprocess``...), which a
one-second job pays on every worker. :class:`ControlConnection` speaks the same framing
on a plain file descriptor: a 4-byte big-endian signed length then the pickled message,
or ``-1`` then an 8-byte unsigned length for a message of 2 GiB or more.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from typing import Any

from engine.runtime.protocol import Claim, Grant, expect_from_supervisor

__all__ = ["ControlClaims", "ControlConnection"]

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")
_LONG_MARK = -1
#: Below this a header and its payload go out in one write (one syscall).
_JOIN_BELOW = 16384


class ControlConnection:
    """Blocking ``send``/``recv`` of pickled messages over file descriptor ``fd``.

    Owns ``fd``: :meth:`close` closes it. A peer that closed its end makes :meth:`recv`
    raise :class:`EOFError` and :meth:`send` raise :class:`OSError` (``EPIPE``).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def send(self, message: Any) -> None:
        """Pickle ``message`` whole, then write it (a message that cannot be pickled
        raises before anything is written)."""
        payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        size = len(payload)
        if size > 0x7FFFFFFF:
            self._write(_SHORT.pack(_LONG_MARK) + _LONG.pack(size))
            self._write(payload)
        elif size < _JOIN_BELOW:
            self._write(_SHORT.pack(size) + payload)
        else:
            self._write(_SHORT.pack(size))
            self._write(payload)

    def poll(self) -> bool:
        """Whether a message (or the end of the connection) is there to read now."""
        readable, _, _ = select.select([self._fd], [], [], 0)
        return bool(readable)

    def recv(self) -> Any:
        """The next message (blocks until it has come whole)."""
        (size,) = _SHORT.unpack(self._read(_SHORT.size))
        if size == _LONG_MARK:
            (size,) = _LONG.unpack(self._read(_LONG.size))
        return pickle.loads(self._read(size))

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def _read(self, size: int) -> bytes:
        chunks: list[bytes] = []
        while size:
            chunk = os.read(self._fd, min(size, 1 << 30))
            if not chunk:
                raise EOFError("the supervisor closed the control connection")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)  # one chunk: that bytes object itself, not a copy


class ControlClaims:
    """A worker's partition claims (:class:`~engine.runtime.ports.PartClaims`), answered
    by the supervisor over the control connection (:class:`Claim` -> :class:`Grant`)."""

    def __init__(self, conn: ControlConnection, worker_index: int) -> None:
        self._conn = conn
        self._worker_index = worker_index
        self._granted: dict[int, int] = {}

    def request(self, step_index: int) -> None:
        self._conn.send(Claim(step_index))

    def granted(self, step_index: int) -> int | None:
        while step_index not in self._granted and self._conn.poll():
            grant = expect_from_supervisor(self._conn.recv(), Grant, self._worker_index)
            self._granted[grant.step_index] = grant.index
        return self._granted.pop(step_index, None)
