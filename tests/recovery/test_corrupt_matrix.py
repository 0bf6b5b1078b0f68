"""Every way a store's files get damaged: opens and verifies fine, or one clear error.

Each damaged copy is used by two fresh interpreters: one opens it and does what an
execution does (inspect, load state, begin an execution), one runs ``python -m recovery
verify DIR``. Each must exit 0, or exit 2 with one ``recovery.errors`` message naming
the data file (or the store) and what to do; never die by a signal (a segfault or
SIGBUS would show as a negative return code), never an uncaught traceback.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from recovery import RecoveryStore, init_db_dir
from recovery.cli import EXIT_ERROR
from tests.recovery._procs import run_interpreter, run_python

PAGE = 4096
STEP = "flow.count"
#: Offset of LMDB 0.9's meta record in a meta page (after the 16-byte page header).
META = 16
#: Offsets in a meta record (64-bit LMDB 0.9).
MAGIC, VERSION, FREE_DB, MAIN_DB = 0, 4, 24, 72
LAST_PAGE, TXNID = 120, 128
DB_ROOT = 40  # offset of md_root in an MDB_db record

USE_LIKE_AN_EXECUTION = """
import sys
from recovery import RecoveryError, RecoveryStore
try:
    with RecoveryStore.open(sys.argv[1]) as store:
        store.inspect()
        store.load_keyed_states("flow.count", range(16), 4)
        store.load_partition_states("flow.inp", 4)
        with store.lock_for_execution():
            store.begin_execution("flow", "fp", worker_count=1, key_groups=16)
except RecoveryError as error:
    print(f"{type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(2)
print("opened")
"""


@pytest.fixture(scope="module")
def intact_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with three epochs of small and overflow-page (> 1 page) states."""
    store_dir = tmp_path_factory.mktemp("corrupt") / "intact"
    init_db_dir(store_dir)
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("flow", "fp", worker_count=1, key_groups=16)
        writer = store.epoch_writer(1, 0)
        for epoch in (1, 2, 3):
            keyed = [
                ("flow.count", f"key-{i}", epoch, "v" * (20 + i % 5 * 900)) for i in range(400)
            ]
            partitions = [("flow.inp", "part-0", epoch, epoch * 10)]
            writer.commit_epoch(epoch + 1, keyed, partitions)
    return store_dir


def _meta(data: bytearray, page: int, field: int) -> int:
    return page * PAGE + META + field


def _committed_meta_page(data: bytearray) -> int:
    txnids = [struct.unpack_from("<Q", data, _meta(data, p, TXNID))[0] for p in (0, 1)]
    return 0 if txnids[0] > txnids[1] else 1


def _put_u64(field: int, value: int, page: str = "committed") -> Callable[[bytearray], None]:
    def damage(data: bytearray) -> None:
        committed = _committed_meta_page(data)
        pages = {"committed": [committed], "other": [1 - committed], "both": [0, 1]}[page]
        for p in pages:
            struct.pack_into("<Q", data, _meta(data, p, field), value)

    return damage


def _put_u32(field: int, value: int, page: str = "both") -> Callable[[bytearray], None]:
    def damage(data: bytearray) -> None:
        for p in [0, 1] if page == "both" else [_committed_meta_page(data)]:
            struct.pack_into("<I", data, _meta(data, p, field), value)

    return damage


def _flip_bits(seed: int, count: int, start: int, stop: int | None = None) -> Callable:
    def damage(data: bytearray) -> None:
        rng = random.Random(seed)
        for _ in range(count):
            position = rng.randrange(start, len(data) if stop is None else stop)
            data[position] ^= 1 << rng.randrange(8)

    return damage


def _page_headers(seed: int, count: int) -> Callable[[bytearray], None]:
    """Overwrite bytes of page headers and node offsets of random non-meta pages."""

    def damage(data: bytearray) -> None:
        rng = random.Random(seed)
        for _ in range(count):
            page = rng.randrange(2, len(data) // PAGE)
            data[page * PAGE + rng.randrange(0, 64)] = rng.randrange(256)

    return damage


def _truncate(size: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(store_dir: Path) -> None:
        data = store_dir / "data.mdb"
        os.truncate(data, size(data.stat().st_size))

    return damage


def _in_data(damage: Callable[[bytearray], None]) -> Callable[[Path], None]:
    def apply(store_dir: Path) -> None:
        path = store_dir / "data.mdb"
        data = bytearray(path.read_bytes())
        damage(data)
        path.write_bytes(bytes(data))

    return apply


def _delete(name: str) -> Callable[[Path], None]:
    return lambda store_dir: (store_dir / name).unlink()


def _garbage(size: int) -> Callable[[Path], None]:
    return lambda store_dir: (store_dir / "data.mdb").write_bytes(
        random.Random(size).randbytes(size)
    )


def _unknown_format(store_dir: Path) -> None:
    import lmdb

    with lmdb.open(str(store_dir), max_dbs=5) as env:
        meta = env.open_db(b"meta")
        with env.begin(write=True) as txn:
            txn.put(b"format", b"99", db=meta)


#: How each case must end: "ok" (both exit 0), "corrupt" (both report the damage),
#: "format" (both refuse the unknown format), "either" (0, or a clear error).
CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated to 0 bytes": (_truncate(lambda size: 0), "corrupt"),
    "truncated to 1 byte": (_truncate(lambda size: 1), "corrupt"),
    "truncated inside meta page 0": (_truncate(lambda size: 100), "corrupt"),
    "truncated after meta page 0": (_truncate(lambda size: PAGE), "corrupt"),
    "truncated 1 byte short of both meta pages": (_truncate(lambda size: 2 * PAGE - 1), "corrupt"),
    "truncated to both meta pages": (_truncate(lambda size: 2 * PAGE), "corrupt"),
    "truncated after 3 pages": (_truncate(lambda size: 3 * PAGE), "corrupt"),
    "truncated to half": (_truncate(lambda size: size // 2 // PAGE * PAGE), "corrupt"),
    "truncated by the last page": (_truncate(lambda size: size - PAGE), "corrupt"),
    "truncated by 1 byte": (_truncate(lambda size: size - 1), "corrupt"),
    "garbage, 64 KiB": (_garbage(64 * 1024), "corrupt"),
    "garbage, 1 page": (_garbage(PAGE), "corrupt"),
    "zeroed meta pages": (
        _in_data(lambda d: d.__setitem__(slice(0, 2 * PAGE), bytes(2 * PAGE))),
        "corrupt",
    ),
    "bad magic in both metas": (_in_data(_put_u32(MAGIC, 0xDEADBEEF)), "corrupt"),
    "bad data version in both metas": (_in_data(_put_u32(VERSION, 7)), "corrupt"),
    "odd page size in both metas": (_in_data(_put_u32(FREE_DB, 1000)), "corrupt"),
    "last page beyond the file": (_in_data(_put_u64(LAST_PAGE, 10**7)), "corrupt"),
    "last page before the data": (_in_data(_put_u64(LAST_PAGE, 3)), "corrupt"),
    "main root beyond the end": (_in_data(_put_u64(MAIN_DB + DB_ROOT, 10**6)), "corrupt"),
    "main root on a wrong page": (_in_data(_put_u64(MAIN_DB + DB_ROOT, 5)), "corrupt"),
    "free-list root beyond the end": (_in_data(_put_u64(FREE_DB + DB_ROOT, 10**8)), "corrupt"),
    "older meta damaged": (_in_data(_put_u64(MAIN_DB + DB_ROOT, 10**6, page="other")), "either"),
    "bits flipped in the meta pages": (_in_data(_flip_bits(1, 8, 0, 2 * PAGE)), "either"),
    "page headers overwritten (a)": (_in_data(_page_headers(2, 4)), "either"),
    "page headers overwritten (b)": (_in_data(_page_headers(3, 16)), "either"),
    "page headers overwritten (c)": (_in_data(_page_headers(4, 64)), "either"),
    "bits flipped in data pages (a)": (_in_data(_flip_bits(5, 1, 2 * PAGE)), "either"),
    "bits flipped in data pages (b)": (_in_data(_flip_bits(6, 64, 2 * PAGE)), "either"),
    "bits flipped in data pages (c)": (_in_data(_flip_bits(7, 1024, 2 * PAGE)), "either"),
    "lock.mdb deleted": (_delete("lock.mdb"), "ok"),
    "lock.mdb garbage": (lambda d: (d / "lock.mdb").write_bytes(b"\xff" * 8192), "either"),
    "execution.lock deleted": (_delete("execution.lock"), "ok"),
    "unknown format version": (_unknown_format, "format"),
}


def _check(name: str, outcome: str, child: object, what: str) -> None:
    returncode, stderr = child.returncode, child.stderr  # type: ignore[attr-defined]
    assert returncode >= 0, f"{what} on {name!r} died by signal {-returncode}: {stderr}"
    assert "Segmentation fault" not in stderr and "Traceback" not in stderr, stderr
    assert returncode in (0, EXIT_ERROR), f"{what} on {name!r}: status {returncode}: {stderr}"
    if outcome == "ok":
        assert returncode == 0, f"{what} on {name!r} failed: {stderr}"
    elif outcome == "corrupt":
        assert returncode == EXIT_ERROR, f"{what} accepted {name!r}"
        assert "data.mdb" in stderr and "restore it from a backup" in stderr, stderr
    elif outcome == "format":
        assert returncode == EXIT_ERROR, f"{what} accepted {name!r}"
        assert "has format 99" in stderr and "use the shmflow that wrote it" in stderr, stderr
    elif returncode:
        assert "recovery store" in stderr, stderr
        assert stderr.count("\n") <= 1, f"not one line: {stderr}"


@pytest.mark.parametrize("name", list(CASES))
def test_damaged_store_opens_or_fails_clearly(
    intact_store: Path, tmp_path: Path, name: str
) -> None:
    damage, outcome = CASES[name]
    store_dir = tmp_path / "store"
    shutil.copytree(intact_store, store_dir)
    (store_dir / "execution.lock").touch()
    damage(store_dir)
    user = run_python(USE_LIKE_AN_EXECUTION, str(store_dir))
    _check(name, outcome, user, "opening")
    verify = run_interpreter("-m", "recovery", "verify", str(store_dir))
    _check(name, outcome, verify, "verify")
    if verify.returncode == 0:
        assert "no problem found" in verify.stdout


def test_verify_reports_what_an_intact_store_holds(intact_store: Path) -> None:
    verify = run_interpreter("-m", "recovery", "verify", str(intact_store))
    assert verify.returncode == 0, verify.stderr
    assert "format 4" in verify.stdout
    assert "(1 executions, 1203 snapshots), no problem found" in verify.stdout
