"""``verify_store``: check a store's files, pages first, without trusting them to LMDB.

Two passes, in this order:

1. **Pages.** py-lmdb's offline verifier (pure Python, lmdb >= 3.0) walks every page of
   ``data.mdb`` with ``read()``, never ``mmap``: a truncated, overwritten or hostile
   file cannot crash the caller. It checks both meta pages, that every reachable page
   is sound and reachable once, key order, counters and the free list.
2. **Records.** Only a structurally sound file is then opened with LMDB, and every
   record is decoded as this package's layout (``recovery/_codec.py``): meta, format
   version, executions, frontiers, each snapshot key and value header, and each GC
   index record; every snapshot after the GC horizon must be named by the index (else
   GC would never compact it, nor a resume discard it as an abandoned future).

Pickled states are not unpickled (that would run their classes' code); LMDB keeps no
checksums, so a flipped bit inside a state is found only when it is loaded.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from recovery._codec import (
    PARTITION_GROUP,
    RecordDecodeError,
    component_length,
    decode_value,
    split_idents,
)
from recovery._env import DATA_FILE_NAME
from recovery._lock import ExecutionLock
from recovery._store import RecoveryStore
from recovery.errors import CorruptStoreError, NoPartitionsError, RecoveryError

__all__ = ["VerifyReport", "verify_store"]

_PROBLEMS_SHOWN = 5


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_store` checked in a sound store."""

    path: Path
    format: int
    data_bytes: int
    executions: int
    snapshots: int
    #: GC index records checked (None: a store of an older format, without an index).
    index_records: int | None = None


def verify_store(db_dir: str | os.PathLike[str]) -> VerifyReport:
    """Check every page and record of the store in ``db_dir``; return what was checked.

    Takes the store's execution lock while it runs (a live execution changes pages
    under the verifier): :class:`StoreInUseError` if an execution holds it. Raises
    :class:`CorruptStoreError` naming the data file and the first problems found,
    :class:`NoPartitionsError` when there is no data file, :class:`RecoveryError` for a
    store of a format this shmflow does not read.
    """
    path = Path(db_dir)
    data_file = path / DATA_FILE_NAME
    if not data_file.is_file():
        msg = (
            f"no recovery store at {path} ({data_file} does not exist); create one with "
            f"`python -m recovery init {path}`"
        )
        raise NoPartitionsError(msg)
    with ExecutionLock.acquire(path):
        _raise_problems(path, _page_problems(path))
        with RecoveryStore.open(path) as store:
            report = store.inspect()
            named, problems = _index_problems(store, report["key_groups"])
            snapshots, more = _snapshot_problems(
                store, report["key_groups"], named, report["gc_horizon"]
            )
        _raise_problems(path, problems + more)
    return VerifyReport(
        path=path,
        format=report["format"],
        data_bytes=report["data_bytes"],
        executions=len(report["executions"]),
        snapshots=snapshots,
        index_records=report["gc_index_records"],
    )


def _page_problems(path: Path) -> list[str]:
    try:
        from lmdb import verify as lmdb_verify
    except ImportError as error:  # pragma: no cover - lmdb < 3.0
        raise RecoveryError("verifying a store needs lmdb >= 3.0 (pip install -U lmdb)") from error
    try:
        problems: list[str] = lmdb_verify.verify(str(path))
    except lmdb_verify.VerifyError as error:
        problems = [str(error)]
    except OSError as error:
        problems = [f"cannot read it: {error}"]
    return problems


def _index_problems(
    store: RecoveryStore, key_groups: int | None
) -> tuple[set[int] | None, list[str]]:
    """Check every GC index record; return what they name (hashes of snapshot keys).

    None for a store without an index. Hashes keep the set small (a collision could
    only hide a missing entry, with odds of about n**2 / 2**64).
    """
    index = store._index_db()
    if index is None:
        return None, []
    handle = store._env()
    named: set[int] = set()
    problems: list[str] = []
    with store._errors(), handle.env.begin() as txn:
        for key, value in txn.cursor(db=index):
            key = bytes(key)
            where = f"GC index record {key.hex()}"
            if len(key) != 16:
                problems.append(f"{where}: {len(key)} bytes, not epoch and sequence (16)")
                continue
            try:
                idents = split_idents(bytes(value))
            except (RecordDecodeError, IndexError) as error:
                problems.append(f"{where}: {error}")
                continue
            epoch = key[:8]
            for ident in idents:
                problem = _snapshot_problem(ident + epoch, b"", key_groups)
                if problem is not None:
                    problems.append(f"{where}: ident {ident[:40].hex()}...: {problem}")
                named.add(hash(ident + epoch))
    return named, problems


def _snapshot_problems(
    store: RecoveryStore, key_groups: int | None, named: set[int] | None, horizon: int
) -> tuple[int, list[str]]:
    """Count the snapshots; list keys/values not in the layout, or missing from the index."""
    handle = store._env()
    problems: list[str] = []
    count = 0
    with store._errors(), handle.env.begin() as txn:
        for key, value in txn.cursor(db=handle.dbs["snapshots"]):
            count += 1
            key = bytes(key)
            problem = _snapshot_problem(key, bytes(value), key_groups)
            if (
                problem is None
                and named is not None
                and int.from_bytes(key[-8:], "big") > horizon
                and hash(key) not in named
            ):
                problem = f"after the GC horizon {horizon} but not named by the GC index"
            if problem is not None:
                problems.append(f"snapshot key {key[:40].hex()}...: {problem}")
    return count, problems


def _snapshot_problem(key: bytes, value: bytes, key_groups: int | None) -> str | None:
    step_end = component_length(key, 0)
    if len(key) < step_end + 4 + 1 + 8:
        return f"{len(key)} bytes, too short for step, group, key and epoch"
    group = int.from_bytes(key[step_end : step_end + 4], "big")
    if group != PARTITION_GROUP and (key_groups is None or group >= key_groups):
        return f"key group {group} outside the store's {key_groups} groups"
    if step_end + 4 + component_length(key, step_end + 4) + 8 != len(key):
        return "its components do not add up to its length"
    try:
        decode_value(value)
    except (ValueError, IndexError, struct.error) as error:
        return f"its value's name header does not decode ({error})"
    return None


def _raise_problems(path: Path, problems: list[str]) -> None:
    if not problems:
        return
    shown = "; ".join(problems[:_PROBLEMS_SHOWN])
    hidden = len(problems) - _PROBLEMS_SHOWN
    more = f" (and {hidden} more)" if hidden > 0 else ""
    msg = (
        f"recovery store {path} is corrupted: {path / DATA_FILE_NAME}: {shown}{more}; "
        "restore it from a backup or start afresh with a new store"
    )
    raise CorruptStoreError(msg)
