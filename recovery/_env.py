"""Opening the LMDB environment of a store: once per process, checked, errors translated.

LMDB forbids opening one environment twice in a process (its fcntl locks belong to the
process, so closing one handle would drop the other's locks). Every ``RecoveryStore``
of one path in one process therefore shares one :class:`Environment`, reference
counted. Handles are keyed by pid as well: an environment is never used across
``fork``; a process opens its own.

Settings: no ``writemap`` (a full disk would be a SIGBUS instead of an error), a large
sparse map (the file only grows as pages are written), ``reader_check()`` on open to
clear reader slots of dead processes. Files are created private (``recovery._access``).

Damaged files: before LMDB maps ``data.mdb``, the file must hold at least both meta
pages; after LMDB validated the meta pages (magic, version, page size) the file must
cover every page the committed meta claims, since touching a page beyond the end of a
mapped file is a SIGBUS, except pages LMDB lists as free: a transaction that freed
pages it had just taken from the end of the file commits without writing them, and
they are never read (the free list is checked with ``read()``, never ``mmap``). LMDB
0.9 refuses page numbers beyond the committed end and checks page types as it walks
(``MDB_CORRUPTED``/``MDB_PAGE_NOTFOUND``); records that LMDB returns but that do not
decode as this package's layout are reported as corruption too. All of those become
:class:`CorruptStoreError`. LMDB keeps no checksums: a flipped bit inside a stored
value is invisible to it (a state then fails to unpickle with an error naming step,
key and epoch, or loads changed).
``python -m recovery verify DIR`` checks every page without handing the file to LMDB.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from recovery._access import (
    FILE_MODE,
    make_private_dir,
    tighten_store_files,
    warn_if_shared,
)
from recovery._codec import FORMAT_VERSION, INDEXED_FORMAT, READABLE_FORMATS, RecordDecodeError
from recovery.errors import (
    CorruptStoreError,
    MissingPartitionsError,
    NoPartitionsError,
    RecoveryError,
    StoreFullError,
)

__all__ = [
    "DATA_FILE_NAME",
    "DEFAULT_MAP_SIZE",
    "INDEX_DATABASE",
    "SUB_DATABASES",
    "Environment",
    "create_environment",
    "open_environment",
    "release_environment",
    "translate_errors",
]

#: 1 TiB of address space on 64-bit (sparse: costs nothing until written), 1 GiB on 32.
DEFAULT_MAP_SIZE = (1 << 40) if sys.maxsize > 2**32 else (1 << 30)
#: Named sub-databases of a store, in creation order (``meta`` last marks completion).
SUB_DATABASES = ("executions", "frontiers", "snapshots", "meta")
#: The GC index (``recovery/_codec.py``): created with a new store; a store of an older
#: format has none until its first execution or GC builds it, so ``dbs`` holds None.
INDEX_DATABASE = "written"
_MAX_DBS = len(SUB_DATABASES) + 2
DATA_FILE_NAME = "data.mdb"
_MAX_READERS = 1024
#: Smallest valid data file: two meta pages of the smallest page size LMDB uses here.
_MIN_DATA_FILE = 2 * 4096
_CORRUPTION_ERRORS = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.InvalidError,
    lmdb.VersionMismatchError,
    lmdb.BadValsizeError,
    lmdb.PanicError,
)
#: Free bytes below which an I/O error while writing is taken for a full disk.
_NEARLY_FULL = 1 << 20
#: Raised while decoding a record LMDB returned: the bytes are not in our layout.
_DECODE_ERRORS = (
    UnicodeDecodeError,
    struct.error,
    json.JSONDecodeError,
    IndexError,
    RecordDecodeError,
)


@dataclass
class Environment:
    """One process's handle on a store's LMDB environment and its sub-databases."""

    path: Path
    env: lmdb.Environment
    map_size: int
    dbs: dict[str, Any]
    pid: int = field(default_factory=os.getpid)
    refs: int = 1


_open_environments: dict[tuple[int, str], Environment] = {}
_registry_lock = threading.Lock()


def _registry_key(path: Path) -> tuple[int, str]:
    return os.getpid(), os.path.realpath(path)


@contextmanager
def translate_errors(path: Path, map_size: int) -> Iterator[None]:
    """Turn LMDB's full/corrupt errors into :class:`StoreFullError`/:class:`CorruptStoreError`."""
    try:
        yield
    except lmdb.MapFullError as error:
        msg = (
            f"recovery store {path} is full: its LMDB map of {map_size} bytes is used up; "
            "raise map size (RecoveryStore.open(..., map_size=...)) or GC the store; "
            "this commit was not written, the last committed epoch is intact"
        )
        raise StoreFullError(msg) from error
    except _CORRUPTION_ERRORS as error:
        raise _corrupt(path, str(error)) from error
    except _DECODE_ERRORS as error:
        detail = f"a record does not decode: {type(error).__name__}: {error}"
        raise _corrupt(path, detail) from error
    except lmdb.Error as error:
        if _is_disk_full(path, error):
            msg = (
                f"disk full on {path}{_space_report(path)}: free disk space (or quota) there, "
                "or copy the store directory to a bigger disk, and run again; this commit "
                "was not written, the last committed epoch is intact"
            )
            raise StoreFullError(msg) from error
        raise RecoveryError(f"recovery store {path}: LMDB error: {error}") from error


def _is_disk_full(path: Path, error: lmdb.Error) -> bool:
    """Whether a write failed for want of space.

    LMDB reports a short write (what a full disk gives it mid-commit) as EIO, not
    ENOSPC: EIO with (almost) no space left on the store's filesystem counts as full.
    """
    code = _errno_of(error)
    if isinstance(error, lmdb.DiskError) or code in (errno.ENOSPC, errno.EDQUOT):
        return True
    if code != errno.EIO and os.strerror(errno.EIO) not in str(error):
        return False
    try:
        return shutil.disk_usage(path).free < _NEARLY_FULL
    except OSError:
        return False


def _space_report(path: Path) -> str:
    """`` (N free of M; data.mdb is K)`` for a disk-full message, or ``""``."""
    try:
        usage = shutil.disk_usage(path)
        data_size = (path / DATA_FILE_NAME).stat().st_size
    except OSError:
        return ""
    return (
        f" ({_bytes(usage.free)} free of {_bytes(usage.total)}; "
        f"{DATA_FILE_NAME} is {_bytes(data_size)})"
    )


def _bytes(count: int) -> str:
    """``count`` bytes, with MiB when that reads better.

    >>> _bytes(512), _bytes(3 * 2**20)
    ('512 bytes', '3145728 bytes (3.0 MiB)')
    """
    return f"{count} bytes" if count < 2**20 else f"{count} bytes ({count / 2**20:.1f} MiB)"


def _errno_of(error: lmdb.Error) -> int | None:
    """The errno of an LMDB error (``code`` on the cffi binding, ``args[1]`` on the C one)."""
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return code
    return next((arg for arg in error.args[1:] if isinstance(arg, int)), None)


def _corrupt(path: Path, detail: str) -> CorruptStoreError:
    msg = (
        f"recovery store {path} is corrupted or truncated ({path / DATA_FILE_NAME}: "
        f"{detail}); `python -m recovery verify {path}` lists the damage; restore it from "
        "a backup or start afresh with a new store (python -m recovery init DIR)"
    )
    return CorruptStoreError(msg)


def _no_store(path: Path, detail: str) -> NoPartitionsError:
    msg = (
        f"no recovery store at {path} ({detail}); create one with "
        f"`python -m recovery init {path}` (or recovery.init_db_dir)"
    )
    return NoPartitionsError(msg)


def _lmdb_open(path: Path, map_size: int) -> lmdb.Environment:
    try:
        return lmdb.open(
            str(path),
            map_size=map_size,
            subdir=True,
            create=False,
            writemap=False,
            max_dbs=_MAX_DBS,
            max_readers=_MAX_READERS,
            lock=True,
            mode=FILE_MODE,
        )
    except _CORRUPTION_ERRORS as error:
        raise _corrupt(path, str(error)) from error
    except lmdb.Error as error:
        raise _corrupt(path, f"LMDB cannot open it: {error}") from error


def _check_file_covers_pages(path: Path, env: lmdb.Environment) -> None:
    """A truncated data file would SIGBUS on first access: refuse it up front.

    The read transaction keeps writers from reusing the pages of the snapshot it sees
    (and so of any newer one) while the free list is read from the file.
    """
    with env.begin():
        needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        size = (path / DATA_FILE_NAME).stat().st_size
        if size < needed and not _missing_pages_are_free(path / DATA_FILE_NAME):
            raise _corrupt(path, f"{DATA_FILE_NAME} has {size} bytes, its pages need {needed}")


def _missing_pages_are_free(data_file: Path) -> bool:
    """Whether every page the committed meta claims beyond the end of ``data_file`` is free.

    Reads the meta and the free list with py-lmdb's offline verifier (``read()``, never
    ``mmap``; the free list is a few pages), the file's size after the meta: every page
    a meta refers to was written before it. Should that private reader change, the
    verifier's public full walk decides instead (slower, same answer).
    """
    from lmdb import verify as lmdb_verify

    try:
        with open(data_file, "rb") as file:
            checker = lmdb_verify._Verifier(file, os.fstat(file.fileno()).st_size)
            checker.detect_engine()
            checker.load_metas()
            checker.filesize = os.fstat(file.fileno()).st_size
            pages = checker.next_pgno
            checker.live, checker.free = bytearray(pages), bytearray(pages)
            free_db = checker.meta.free
            checker._verify_tree("freeDB", free_db, lmdb_verify._cmp_int, None, is_free=True)
            for txnid, idl in checker.free_records:
                checker._decode_idl(txnid, idl)
    except lmdb_verify.VerifyError:
        return False
    except (AttributeError, TypeError):  # pragma: no cover - py-lmdb changed its reader
        return not lmdb_verify.verify(str(data_file), subdir=False)
    first_missing = checker.filesize // checker.psize
    return not checker.errors and all(checker.free[first_missing:pages])


def _open_sub_databases(path: Path, env: lmdb.Environment) -> dict[str, Any]:
    dbs: dict[str, Any] = {}
    for name in SUB_DATABASES:
        try:
            dbs[name] = env.open_db(name.encode(), create=False)
        except lmdb.NotFoundError:
            dbs[name] = None
    if dbs["meta"] is None:
        if _has_records(env):  # shmflow's own sub-databases unreachable: damage?
            detail = "shmflow's meta sub-database is missing: a damaged store, or not one"
            raise _corrupt(path, detail)
        raise _no_store(path, "an LMDB environment without shmflow's meta sub-database")
    missing = [name for name, db in dbs.items() if db is None]
    if missing:
        msg = (
            f"recovery store {path} lacks its sub-database(s) {', '.join(missing)}: it was "
            "damaged or written by another tool; start afresh with a new store"
        )
        raise MissingPartitionsError(msg)
    with env.begin(db=dbs["meta"]) as txn:
        version = txn.get(b"format")
    if version is None:
        raise _no_store(path, "initialisation never completed")
    if version not in {str(f).encode() for f in READABLE_FORMATS}:
        *older, newest = (str(f) for f in READABLE_FORMATS)
        readable = f"{', '.join(older)} and {newest}" if older else newest
        msg = (
            f"recovery store {path} has format {version.decode(errors='replace')}, this "
            f"shmflow reads formats {readable}: use the shmflow that wrote it, or a new store"
        )
        raise RecoveryError(msg)
    dbs[INDEX_DATABASE] = _open_index(env)
    if dbs[INDEX_DATABASE] is None and int(version) >= INDEXED_FORMAT:
        msg = (
            f"recovery store {path} (format {int(version)}) lacks its sub-database "
            f"{INDEX_DATABASE}: it was damaged or written by another tool; start afresh "
            "with a new store"
        )
        raise MissingPartitionsError(msg)
    return dbs


def _open_index(env: lmdb.Environment) -> Any:
    """The GC index sub-database, or None when the store has none yet."""
    try:
        return env.open_db(INDEX_DATABASE.encode(), create=False)
    except lmdb.NotFoundError:
        return None


def _has_records(env: lmdb.Environment) -> bool:
    """Whether the main database holds anything (an initialised store's sub-db names)."""
    with env.begin() as txn:
        return txn.stat()["entries"] > 0


def open_environment(db_dir: str | os.PathLike[str], map_size: int | None = None) -> Environment:
    """This process's handle on the initialised store in ``db_dir`` (shared, counted).

    ``map_size`` applies when this process is the first to open the store (tests pass a
    small one to provoke :class:`StoreFullError`); it never shrinks below the data.
    """
    path = Path(db_dir)
    key = _registry_key(path) if path.exists() else None
    with _registry_lock:
        if key is not None and key in _open_environments:
            handle = _open_environments[key]
            with translate_errors(path, handle.map_size):
                handle.env.reader_check()  # a process may have died since the first open
            handle.refs += 1
            return handle
        data_file = path / DATA_FILE_NAME
        if not data_file.is_file():
            raise _no_store(path, f"{data_file} does not exist")
        size = data_file.stat().st_size
        if size < _MIN_DATA_FILE:
            raise _corrupt(path, f"{DATA_FILE_NAME} has only {size} bytes")
        map_size = DEFAULT_MAP_SIZE if map_size is None else map_size
        env = _lmdb_open(path, map_size)
        tighten_store_files(path)
        try:
            with translate_errors(path, map_size):
                env.reader_check()
                _check_file_covers_pages(path, env)
                dbs = _open_sub_databases(path, env)
        except BaseException:
            env.close()
            raise
        assert key is not None
        handle = Environment(path=path, env=env, map_size=map_size, dbs=dbs)
        _open_environments[key] = handle
        return handle


def release_environment(handle: Environment) -> None:
    """Drop one reference to ``handle``; the last one closes the environment."""
    with _registry_lock:
        handle.refs -= 1
        if handle.refs > 0:
            return
        key = (handle.pid, os.path.realpath(handle.path))
        if _open_environments.get(key) is handle:
            del _open_environments[key]
        if handle.pid == os.getpid():
            handle.env.close()


def create_environment(db_dir: str | os.PathLike[str]) -> bool:
    """Create (or complete) the store in ``db_dir``; return whether it was new.

    Safe to call on an initialised store (it changes nothing) and while it is open.
    """
    path = Path(db_dir)
    if not make_private_dir(path):
        warn_if_shared(path)
    data_file = path / DATA_FILE_NAME
    if data_file.exists() and data_file.stat().st_size < _MIN_DATA_FILE:
        raise _corrupt(path, f"{DATA_FILE_NAME} has only {data_file.stat().st_size} bytes")
    with _registry_lock:
        if _registry_key(path) in _open_environments:
            return False
        try:
            env = lmdb.open(
                str(path),
                map_size=DEFAULT_MAP_SIZE,
                subdir=True,
                create=True,
                writemap=False,
                max_dbs=_MAX_DBS,
                max_readers=_MAX_READERS,
                mode=FILE_MODE,
            )
        except lmdb.Error as error:
            raise _corrupt(path, f"LMDB cannot open it: {error}") from error
        tighten_store_files(path)
        try:
            with translate_errors(path, DEFAULT_MAP_SIZE):
                _check_file_covers_pages(path, env)
                return _initialise(env)
        finally:
            env.close()


def _initialise(env: lmdb.Environment) -> bool:
    """Create the sub-databases (and GC index) and write ``meta/format`` in one transaction."""
    with env.begin(write=True) as txn:
        dbs = {name: env.open_db(name.encode(), txn=txn) for name in SUB_DATABASES}
        if txn.get(b"format", db=dbs["meta"]) is not None:
            return False  # an older store gets its GC index from its next execution or GC
        env.open_db(INDEX_DATABASE.encode(), txn=txn)
        txn.put(b"format", str(FORMAT_VERSION).encode(), db=dbs["meta"])
        return True
