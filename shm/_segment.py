"""Named shared-memory segments: files in ``/dev/shm`` mapped with ``mmap``.

Ownership, plainly:

* ``Segment.create(...)`` makes a new file and maps it. The creating process is the
  segment's **owner**; it is the only one that may ``unlink()`` it (remove its name).
* ``Segment.attach(spec)`` maps an existing segment by its :class:`SegmentSpec` (small,
  picklable; send it to another process). An attached handle never unlinks.
* ``close()`` unmaps this process's view (idempotent). The memory stays alive until
  every process closed it *and* the owner unlinked the name.

This module deliberately does not use :mod:`multiprocessing.shared_memory`: on Python
3.11 its resource tracker unlinks a segment when *any* process that attached to it exits
(killing it under the other processes' feet) and spawns an extra tracker process. Plain
``os.open`` + ``mmap`` has neither problem.

Names are ``shmflow-<creator pid>-<run id>-<tag>`` so segments left behind by a crashed
run can be found and removed with :func:`cleanup_stale`. Every segment starts with a
64-byte header recording the creator's pid and process start time, so a reused pid is not
mistaken for the (dead) creator.

On a machine shared with other users (``/dev/shm`` is world-writable):

* a segment is readable and writable by its owner only (mode 0600, set with ``fchmod``
  whatever the umask), so another user can neither read the batches nor write into them;
* :func:`new_run_id` is 128 bits from :mod:`secrets`, so another user cannot predict a
  segment's name and create it first;
* creation uses ``O_EXCL`` (which also refuses a symlink): a name that exists already,
  e.g. pre-created by another user, is refused with :class:`~shm.errors.ShmError` naming
  its owner, never opened; ``attach`` refuses a segment owned by another user;
* :func:`cleanup_stale` leaves other users' segments alone.

Space is reserved at creation with ``posix_fallocate``: a too-small ``/dev/shm`` fails
right there with :class:`~shm.errors.ShmFull`, never with SIGBUS in the middle of a run.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import struct
from dataclasses import dataclass
from types import TracebackType

from shm.errors import ShmError, ShmFull

__all__ = [
    "DEFAULT_SEGMENT_DIR",
    "SEGMENT_DIR_ENV",
    "SEGMENT_PREFIX",
    "Segment",
    "SegmentSpec",
    "cleanup_stale",
    "new_run_id",
    "segment_directory",
]

#: Every segment name starts with this; the test suite and ``cleanup_stale`` rely on it.
SEGMENT_PREFIX = "shmflow-"
#: Where segments live unless a directory is given explicitly.
DEFAULT_SEGMENT_DIR = "/dev/shm"
#: Environment variable overriding :data:`DEFAULT_SEGMENT_DIR` (tests, odd systems).
SEGMENT_DIR_ENV = "SHMFLOW_SHM_DIR"
#: Bytes at the start of every segment holding :data:`_HEADER`; user data follows.
HEADER_SIZE = 64

_MAGIC = b"SHMFLSEG"
_VERSION = 1
# magic, version, header size, creator pid, creator start token, usable size
_HEADER = struct.Struct("<8sIIQQQ")
#: Segment files are readable and writable by their owner only.
_MODE = 0o600
_RUN_ID_RE = re.compile(r"^[0-9A-Za-z]+$")
_TAG_RE = re.compile(r"^[0-9A-Za-z_.-]+$")
_NAME_RE = re.compile(r"^shmflow-(\d+)-([0-9A-Za-z]+)-([0-9A-Za-z_.-]+)$")


#: Random bytes in a run id: enough that nobody can guess the names of a run's segments.
_RUN_ID_BYTES = 16


def new_run_id() -> str:
    """Return a fresh unguessable run id (32 hex digits from the OS's CSPRNG).

    The run id is the part of a segment name that another local user cannot predict;
    pass your own only where names need not be secret (tests). ``os.urandom`` is what
    :func:`secrets.token_hex` reads; importing :mod:`secrets` (and ``hmac``, ``random``)
    would cost every worker ~3 ms of start-up.
    """
    return os.urandom(_RUN_ID_BYTES).hex()


def segment_directory(directory: str | None = None) -> str:
    """Return the directory segments live in: ``directory``, ``$SHMFLOW_SHM_DIR`` or /dev/shm."""
    if directory is not None:
        return directory
    return os.environ.get(SEGMENT_DIR_ENV) or DEFAULT_SEGMENT_DIR


def process_start_token(pid: int) -> int | None:
    """Return a token identifying the process ``pid`` (its start time), or None if gone.

    Zombies count as gone. Two processes that ever had the same pid have different
    tokens, so a token recorded earlier detects pid reuse.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except FileNotFoundError:
        return None
    except OSError:
        return _psutil_start_token(pid)
    # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _psutil_start_token(pid: int) -> int | None:
    import psutil  # only where /proc cannot be read: keeps it out of every worker's start-up

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return int(process.create_time() * 100)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return 0


_OWN_START_TOKEN: dict[int, int] = {}


def own_start_token() -> int:
    """Return :func:`process_start_token` of the calling process (cached per pid)."""
    pid = os.getpid()
    token = _OWN_START_TOKEN.get(pid)
    if token is None:
        token = process_start_token(pid) or 0
        _OWN_START_TOKEN[pid] = token
    return token


@dataclass(frozen=True)
class SegmentSpec:
    """Everything another process needs to attach to a segment. Picklable."""

    name: str
    #: Usable bytes (excluding the segment header).
    size: int
    directory: str

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.name)


class Segment:
    """A named, preallocated, memory-mapped shared file. See the module docstring.

    Usable memory is ``mmap[data_offset : data_offset + size]``.
    """

    data_offset = HEADER_SIZE

    def __init__(self, spec: SegmentSpec, mapping: mmap.mmap, *, owner: bool) -> None:
        self._spec = spec
        self._mmap: mmap.mmap | None = mapping
        self._owner = owner
        self._unlinked = False

    # -- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        size: int,
        *,
        run_id: str | None = None,
        tag: str = "seg",
        directory: str | None = None,
    ) -> Segment:
        """Create, preallocate and map a new segment with ``size`` usable bytes.

        The caller owns it and must eventually ``unlink()`` it. The file is private to
        this user (mode 0600). Raises :class:`ShmFull` when the directory lacks space,
        :class:`ShmError` when the name exists (whoever made it: it is never opened).
        """
        if size < 0:
            raise ValueError(f"segment size must be >= 0, got {size}")
        run_id = new_run_id() if run_id is None else run_id
        if not _RUN_ID_RE.match(run_id):
            raise ValueError(f"run id must be letters/digits only, got {run_id!r}")
        if not _TAG_RE.match(tag):
            raise ValueError(f"segment tag may hold letters, digits, '_', '.', '-'; got {tag!r}")
        directory = segment_directory(directory)
        name = f"{SEGMENT_PREFIX}{os.getpid()}-{run_id}-{tag}"
        spec = SegmentSpec(name=name, size=size, directory=directory)
        total = HEADER_SIZE + size
        try:
            fd = os.open(spec.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _MODE)
        except FileExistsError:
            raise _exists_error(spec.path) from None
        try:
            try:
                os.fchmod(fd, _MODE)  # the mode given to open() was masked by the umask
                _preallocate(fd, total, directory)
                mapping = mmap.mmap(fd, total)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spec.path)
            raise
        _HEADER.pack_into(
            mapping, 0, _MAGIC, _VERSION, HEADER_SIZE, os.getpid(), own_start_token(), size
        )
        return cls(spec, mapping, owner=True)

    @classmethod
    def attach(cls, spec: SegmentSpec) -> Segment:
        """Map an existing segment. The handle does not own it (never unlinks)."""
        try:
            fd = os.open(spec.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ShmError(
                f"shared-memory segment {spec.path} does not exist (already unlinked, or "
                "its creator died and it was cleaned up); attach while the creator holds it"
            ) from None
        try:
            stat = os.fstat(fd)
            if stat.st_uid != os.geteuid():
                raise ShmError(
                    f"segment {spec.path} belongs to uid {stat.st_uid}, not to this user "
                    f"(uid {os.geteuid()}): it was not created by this run's owner; refusing "
                    "to attach. Remove it (as its owner or root) and start the run again"
                )
            actual = stat.st_size
            if actual != HEADER_SIZE + spec.size:
                raise ShmError(
                    f"segment {spec.path} is {actual} bytes, expected "
                    f"{HEADER_SIZE + spec.size}: the spec does not belong to this segment"
                )
            mapping = mmap.mmap(fd, actual)
        finally:
            os.close(fd)
        magic = _HEADER.unpack_from(mapping, 0)[0]
        if magic != _MAGIC:
            mapping.close()
            raise ShmError(f"{spec.path} is not a shmflow segment (bad magic {magic!r})")
        return cls(spec, mapping, owner=False)

    # -- properties ---------------------------------------------------------------------

    @property
    def spec(self) -> SegmentSpec:
        return self._spec

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def size(self) -> int:
        """Usable bytes."""
        return self._spec.size

    @property
    def is_owner(self) -> bool:
        return self._owner

    @property
    def closed(self) -> bool:
        return self._mmap is None

    @property
    def mmap(self) -> mmap.mmap:
        """The mapping (header included); raises :class:`ShmError` after ``close()``."""
        if self._mmap is None:
            raise ShmError(f"segment {self.name} is closed in this process; attach it again")
        return self._mmap

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        """Unmap this process's view. Idempotent; never removes the name.

        If some object still exports the memory (a live memoryview/ndarray), the mapping
        is dropped and unmapped by the garbage collector once that object goes.
        """
        mapping, self._mmap = self._mmap, None
        if mapping is not None:
            with contextlib.suppress(BufferError):
                mapping.close()

    def unlink(self) -> None:
        """Remove the segment's name (owner only). Idempotent for the owner.

        Processes that still map it keep working; the memory is freed when the last one
        closes.
        """
        if not self._owner:
            raise ShmError(
                f"segment {self.name} was attached, not created, by this process; "
                "only its creator unlinks it"
            )
        if not self._unlinked:
            self._unlinked = True
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._spec.path)

    def __enter__(self) -> Segment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close; the owner also unlinks."""
        self.close()
        if self._owner:
            self.unlink()

    def __repr__(self) -> str:
        role = "owner" if self._owner else "attached"
        return f"<Segment {self.name} size={self.size} {role}{' closed' if self.closed else ''}>"


def _exists_error(path: str) -> ShmError:
    """The error for a segment name that exists: ours (a reused tag) or another user's."""
    try:
        owner = os.lstat(path).st_uid
    except FileNotFoundError:
        owner = os.geteuid()
    if owner != os.geteuid():
        return ShmError(
            f"shared-memory segment {path} already exists and belongs to uid {owner}, not "
            f"to this user (uid {os.geteuid()}): another user created it first; refusing "
            "to use it. Remove it (as that user or root) or choose another segment "
            f"directory (${SEGMENT_DIR_ENV})"
        )
    return ShmError(
        f"shared-memory segment {path} already exists; "
        "give each segment of a run a distinct tag (or a new run id)"
    )


def _preallocate(fd: int, total: int, directory: str) -> None:
    """Reserve ``total`` bytes for ``fd`` now, or raise :class:`ShmFull`."""
    stats = os.statvfs(directory)
    available = stats.f_bavail * stats.f_frsize
    if total > available:
        raise _shm_full(total, available, directory)
    try:
        os.posix_fallocate(fd, 0, total)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            stats = os.statvfs(directory)
            raise _shm_full(total, stats.f_bavail * stats.f_frsize, directory) from error
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        # A filesystem without fallocate: size the file; the statvfs check above is
        # the best early warning we can give there.
        os.ftruncate(fd, total)


def _shm_full(needed: int, available: int, directory: str) -> ShmFull:
    return ShmFull(
        f"not enough shared memory in {directory}: needed {needed} bytes "
        f"({needed / 2**20:.1f} MiB), available {available} bytes "
        f"({available / 2**20:.1f} MiB). Free space there (stale segments: "
        "shm.cleanup_stale()), raise the tmpfs size (mount -o remount,size=... "
        f"{directory}; Docker: --shm-size), or use a smaller ring capacity."
    )


def parse_segment_name(name: str) -> tuple[int, str, str] | None:
    """Split a segment name into (creator pid, run id, tag); None if not one of ours."""
    match = _NAME_RE.match(name)
    if match is None:
        return None
    return int(match.group(1)), match.group(2), match.group(3)


def _creator_alive(path: str, pid: int) -> bool:
    token = process_start_token(pid)
    if token is None:
        return False
    try:
        with open(path, "rb") as segment_file:
            header = segment_file.read(_HEADER.size)
    except (FileNotFoundError, PermissionError):
        return True  # gone already, or not ours to read: nothing to clean
    if len(header) < _HEADER.size:
        return True  # being created right now by a live process with this pid
    magic, _version, _header_size, creator_pid, creator_token, _size = _HEADER.unpack(header)
    if magic != _MAGIC or creator_pid != pid or creator_token == 0:
        return True  # cannot tell: assume the live process with this pid made it
    return creator_token == token


def _ours_to_clean(path: str) -> bool:
    """Whether this process may sweep ``path``: a file of this user (root: anyone's)."""
    euid = os.geteuid()
    try:
        return euid == 0 or os.lstat(path).st_uid == euid
    except FileNotFoundError:
        return False


def cleanup_stale(run_id: str | None = None, *, directory: str | None = None) -> list[str]:
    """Remove segments whose creator process is gone; return the removed names.

    ``run_id`` limits the sweep to one run. Segments of live processes are never
    touched; a dead creator's pid reused by another process is recognised by the
    start time recorded in the segment header. Segments of other users are skipped
    (root sweeps everyone's).
    """
    directory = segment_directory(directory)
    removed = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    for name in names:
        parsed = parse_segment_name(name)
        if parsed is None:
            continue
        pid, name_run_id, _tag = parsed
        if run_id is not None and name_run_id != run_id:
            continue
        path = os.path.join(directory, name)
        if not _ours_to_clean(path) or _creator_alive(path, pid):
            continue
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.unlink(path)
            removed.append(name)
    return removed
