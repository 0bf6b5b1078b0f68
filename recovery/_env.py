"""Opening the LMDB environment of a store: once per process, checked, errors translated.

LMDB forbids opening one environment twice in a process (its fcntl locks belong to the
process, so closing one handle would drop the other's locks). Every ``RecoveryStore``
of one path in one process therefore shares one :class:`Environment`, reference
counted. Handles are keyed by pid as well: an environment is never used across
``fork``; a process opens its own.

Settings: no ``writemap`` (a full disk would be a SIGBUS instead of an error), a large
sparse map (the file only grows as pages are written), ``reader_check()`` on open to
clear reader slots of dead processes.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from recovery._codec import FORMAT_VERSION, READABLE_FORMATS
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
    except lmdb.Error as error:
        if isinstance(error, lmdb.DiskError) or _errno_of(error) in (errno.ENOSPC, errno.EDQUOT):
            msg = (
                f"disk full on {path}: free disk space (or quota) and run again; "
                "this commit was not written, the last committed epoch is intact"
            )
            raise StoreFullError(msg) from error
        raise RecoveryError(f"recovery store {path}: LMDB error: {error}") from error


def _errno_of(error: lmdb.Error) -> int | None:
    """The errno of an LMDB error (``code`` on the cffi binding, ``args[1]`` on the C one)."""
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return code
    return next((arg for arg in error.args[1:] if isinstance(arg, int)), None)


def _corrupt(path: Path, detail: str) -> CorruptStoreError:
    msg = (
        f"recovery store {path} is corrupted or truncated ({detail}); restore it from a "
        "backup or start afresh with a new store (python -m recovery init DIR)"
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
            max_dbs=len(SUB_DATABASES) + 1,
            max_readers=_MAX_READERS,
            lock=True,
        )
    except _CORRUPTION_ERRORS as error:
        raise _corrupt(path, str(error)) from error
    except lmdb.Error as error:
        raise _corrupt(path, f"LMDB cannot open it: {error}") from error


def _check_file_covers_pages(path: Path, env: lmdb.Environment) -> None:
    """A truncated data file would SIGBUS on first access: refuse it up front."""
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = (path / DATA_FILE_NAME).stat().st_size
    if size < needed:
        raise _corrupt(path, f"{DATA_FILE_NAME} has {size} bytes, its pages need {needed}")


def _open_sub_databases(path: Path, env: lmdb.Environment) -> dict[str, Any]:
    dbs: dict[str, Any] = {}
    for name in SUB_DATABASES:
        try:
            dbs[name] = env.open_db(name.encode(), create=False)
        except lmdb.NotFoundError:
            dbs[name] = None
    if dbs["meta"] is None:
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
        readable = " and ".join(str(f) for f in READABLE_FORMATS)
        msg = (
            f"recovery store {path} has format {version.decode(errors='replace')}, this "
            f"shmflow reads formats {readable}: use the shmflow that wrote it, or a new store"
        )
        raise RecoveryError(msg)
    return dbs


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
    path.mkdir(parents=True, exist_ok=True)
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
                max_dbs=len(SUB_DATABASES) + 1,
                max_readers=_MAX_READERS,
            )
        except lmdb.Error as error:
            raise _corrupt(path, f"LMDB cannot open it: {error}") from error
        try:
            with translate_errors(path, DEFAULT_MAP_SIZE):
                _check_file_covers_pages(path, env)
                return _initialise(env)
        finally:
            env.close()


def _initialise(env: lmdb.Environment) -> bool:
    """Create the sub-databases and write ``meta/format`` in one write transaction."""
    with env.begin(write=True) as txn:
        dbs = {name: env.open_db(name.encode(), txn=txn) for name in SUB_DATABASES}
        if txn.get(b"format", db=dbs["meta"]) is not None:
            return False
        txn.put(b"format", str(FORMAT_VERSION).encode(), db=dbs["meta"])
        return True
