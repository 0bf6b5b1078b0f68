"""The execution lock: an exclusive ``flock`` on ``execution.lock`` beside LMDB's files.

LMDB lets any number of processes write one environment, so two executions on one store
would interleave their commits. The supervisor of an execution holds this lock for the
whole execution. The kernel releases a ``flock`` when its holder dies, even by SIGKILL,
so a crashed execution never leaves a stale lock behind. The holder writes its pid and
start time into the file so a refused execution can say who holds the store.

The file descriptor is not inheritable: worker processes never hold the lock. The file
is private to its owner (mode 0600) and never opened through a symlink. Taking the lock
logs a warning if other users can enter the store directory (``recovery._access``).
"""

from __future__ import annotations

import errno
import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from recovery._access import FILE_MODE, warn_if_shared
from recovery.errors import RecoveryError, StoreInUseError

__all__ = ["LOCK_FILE_NAME", "ExecutionLock"]

#: Name of the lock file inside the store directory.
LOCK_FILE_NAME = "execution.lock"
_HOLDER_INFO_MAX = 256


class ExecutionLock:
    """Holds the store's execution lock until :meth:`release` (or the ``with`` exit).

    Create it with :meth:`acquire` (or ``RecoveryStore.lock_for_execution()``).
    ``pid`` and ``since`` describe this holder.
    """

    def __init__(self, path: Path, fd: int, since: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.since = since
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, db_dir: str | os.PathLike[str]) -> ExecutionLock:
        """Take the lock of the store in ``db_dir`` or raise :class:`StoreInUseError`."""
        path = Path(db_dir) / LOCK_FILE_NAME
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, FILE_MODE)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            msg = (
                f"{path} is a symbolic link, which a store never has (someone replaced the "
                "lock file); refusing to follow it. Remove it and check who can write to "
                f"{path.parent}"
            )
            raise RecoveryError(msg) from None
        try:
            _make_private(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, _HOLDER_INFO_MAX, 0).decode("utf-8", "replace")
            os.close(fd)
            raise _in_use_error(Path(db_dir), holder) from None
        except BaseException:
            os.close(fd)
            raise
        warn_if_shared(Path(db_dir))
        since = datetime.now(UTC).isoformat(timespec="seconds")
        record = f"{os.getpid()} {since}\n".encode()
        os.pwrite(fd, record, 0)  # write before truncating: a reader never sees it empty
        os.ftruncate(fd, len(record))
        return cls(path, fd, since)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> ExecutionLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __reduce__(self) -> str:
        msg = "an ExecutionLock belongs to the process that took it and cannot be pickled"
        raise TypeError(msg)

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"ExecutionLock({str(self.path)!r}, pid={self.pid}, since={self.since}, {state})"


def _make_private(fd: int) -> None:
    """Mode 0600 for a lock file this user owns (open's mode was masked by the umask)."""
    info = os.fstat(fd)
    if info.st_uid == os.geteuid() and info.st_mode & 0o777 != FILE_MODE:
        os.fchmod(fd, FILE_MODE)


def _in_use_error(db_dir: Path, holder: str) -> StoreInUseError:
    parts = holder.split()
    pid = int(parts[0]) if parts and parts[0].isdigit() else None
    since = parts[1] if len(parts) > 1 else None
    who = f"pid {pid} since {since}" if pid is not None else "another process (pid unknown)"
    msg = (
        f"recovery store {db_dir} in use by {who}: wait for that execution to finish or "
        "stop it (a killed execution frees the store by itself), or use another store"
    )
    return StoreInUseError(msg, pid=pid, since=since)
