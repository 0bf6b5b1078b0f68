"""Incremental GC: the GC index written with every commit, the two ways GC uses it, stores
of the previous format, commits during a chunked GC, and the background GC thread."""

from __future__ import annotations

import random
import select
import subprocess
import tempfile
import textwrap
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recovery import (
    TOMBSTONE,
    BackgroundGc,
    MissingPartitionsError,
    RecoveryError,
    RecoveryStore,
    gc_plan,
    init_db_dir,
    key_group,
    verify_store,
)
from recovery._codec import PARTITION_GROUP, name_component
from recovery.cli import main
from tests.recovery._procs import CHILD_TIMEOUT_S, start_python

STEP = "flow.count"
SOURCE = "flow.inp"
GROUPS = 16
LONG_KEY = "k" * 300  # digested in the store

#: (step, key, is a partition) of one snapshotted thing.
Thing = tuple[str, str, bool]


def ident(thing: Thing) -> bytes:
    """The store's ident (snapshot key without its epoch) of ``thing``."""
    step, key, partition = thing
    raw = key.encode()
    group = PARTITION_GROUP if partition else key_group(key, GROUPS)
    return name_component(step.encode()) + group.to_bytes(4, "big") + name_component(raw)


def contents(store: RecoveryStore) -> dict[bytes, list[int]]:
    """Every ident in the store with the epochs of its snapshots."""
    handle = store._env()
    found: dict[bytes, list[int]] = {}
    with handle.env.begin() as txn:
        for key in txn.cursor(db=handle.dbs["snapshots"]).iternext(values=False):
            found.setdefault(key[:-8], []).append(int.from_bytes(key[-8:], "big"))
    return found


def as_contents(model: dict[Thing, set[int]]) -> dict[bytes, list[int]]:
    return {ident(thing): sorted(epochs) for thing, epochs in model.items() if epochs}


def commit(writer: Any, frontier: int, writes: Iterable[tuple[Thing, int, Any]]) -> None:
    """Commit ``(thing, epoch, state)`` writes, keyed and partition ones apart."""
    keyed, partitions = [], []
    for (step, key, partition), epoch, state in writes:
        (partitions if partition else keyed).append((step, key, epoch, state))
    writer.commit_epoch(frontier, keyed, partitions)


def apply_gc(model: dict[Thing, set[int]], frontier: int, backup: int) -> int:
    """The full-scan rule (``gc_plan``) on the model; return how many it deletes."""
    plan = gc_plan(model, frontier, backup)
    for thing, doomed in plan.items():
        model[thing] -= set(doomed)
    return sum(len(doomed) for doomed in plan.values())


def as_previous_format(store_dir: Path) -> None:
    """Make a closed store look like one of format 2: no GC index (its key hash stays:
    its snapshots were placed by it)."""
    with lmdb.open(str(store_dir), max_dbs=8) as env, env.begin(write=True) as txn:
        txn.drop(env.open_db(b"written", txn=txn), delete=True)
        txn.put(b"format", b"2", db=env.open_db(b"meta", txn=txn))


# -- the incremental GC deletes exactly what the full-scan rule deletes -----------------------

THINGS: list[Thing] = [
    (STEP, "a", False),
    (STEP, "b", False),
    (STEP, "c", False),
    (STEP, LONG_KEY, False),
    ("flow." + "s" * 250, "a", False),  # a digested step id
    (SOURCE, "part-0", True),
]
COMMIT = st.tuples(
    st.just("commit"),
    st.dictionaries(st.sampled_from(range(len(THINGS))), st.booleans(), max_size=6),
    st.integers(1, 3),  # epochs in this commit
)
GC = st.tuples(
    st.just("gc"),
    st.integers(0, 3),  # how far behind the durable frontier
    st.integers(0, 3),  # backup epochs
    st.sampled_from([None, "incremental", "scan"]),
    st.integers(1, 4),  # chunk_keys: many small transactions
)


@settings(max_examples=150, deadline=None)
@given(history=st.lists(st.one_of(COMMIT, GC), max_size=24))
def test_incremental_gc_deletes_exactly_what_the_full_scan_rule_deletes(
    history: list[tuple[Any, ...]],
) -> None:
    model: dict[Thing, set[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        init_db_dir(tmp)
        with RecoveryStore.open(tmp) as store:
            store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
            writer = store.epoch_writer(1, 0)
            frontier = 1
            for step in history:
                if step[0] == "commit":
                    _, chosen, span = step
                    writes = [
                        (THINGS[i], epoch, TOMBSTONE if dead else (i, epoch))
                        for epoch in range(frontier, frontier + span)
                        for i, dead in chosen.items()
                    ]
                    commit(writer, frontier + span, writes)
                    for thing, epoch, _ in writes:
                        model.setdefault(thing, set()).add(epoch)
                    frontier += span
                else:
                    _, behind, backup, method, chunk = step
                    cluster_frontier = max(1, frontier - behind)
                    result = store.gc(cluster_frontier, backup, chunk_keys=chunk, method=method)
                    assert result.deleted_snapshots == apply_gc(model, cluster_frontier, backup)
                    assert contents(store) == as_contents(model)
                    assert result.remaining_snapshots == sum(map(len, model.values()))
            store.gc()
            apply_gc(model, frontier, 0)
            assert contents(store) == as_contents(model)
            assert all(len(epochs) == 1 for epochs in contents(store).values())
        report = verify_store(tmp)  # the index is consistent with the snapshots
        assert report.index_records == 0


def test_gc_leaves_the_newest_state_or_tombstone_of_every_key(store: RecoveryStore) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    writer.commit_epoch(2, [(STEP, "a", 1, 1), (STEP, "t", 1, 1), (STEP, LONG_KEY, 1, 1)])
    writer.commit_epoch(3, [(STEP, "a", 2, 2), (STEP, "t", 2, TOMBSTONE)])
    writer.commit_epoch(4, [(STEP, LONG_KEY, 3, TOMBSTONE), (STEP, "a", 3, 3)])
    for method in ("incremental", "scan"):
        result = store.gc(method=method)
        assert result.method == method
    assert contents(store) == {
        ident((STEP, "a", False)): [3],
        ident((STEP, "t", False)): [2],
        ident((STEP, LONG_KEY, False)): [3],
    }
    assert store.load_keyed_states(STEP, range(GROUPS), 4) == {"a": 3}
    assert store.inspect()["steps"][STEP]["tombstones"] == 2


def test_a_commit_at_or_before_the_gc_horizon_is_refused(store: RecoveryStore) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    for epoch in range(1, 5):
        writer.commit_epoch(epoch + 1, [(STEP, "a", epoch, epoch)])
    store.gc()  # horizon 4
    with pytest.raises(ValueError, match=r"epoch 3: the store .* garbage-collected up to epoch 4"):
        writer.commit_epoch(6, [(STEP, "a", 3, "late"), (STEP, "b", 5, 5)])
    assert store.cluster_frontier(1) == 5  # nothing of the refused commit was written
    writer.commit_epoch(6, [(STEP, "b", 5, 5)])
    assert store.load_keyed_states(STEP, range(GROUPS), 6) == {"a": 4, "b": 5}


# -- GC work does not grow with untouched keys --------------------------------------------------


def _store_with(path: Path, untouched: int, touched: int, hot_epochs: int) -> RecoveryStore:
    init_db_dir(path)
    store = RecoveryStore.open(path)
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    everything = [(STEP, f"u{i}", 1, i) for i in range(untouched)]
    writer.commit_epoch(2, everything + [(STEP, f"t{i}", 1, i) for i in range(touched)])
    store.gc()  # handles the first epoch, whatever the store's size
    for epoch in range(2, 2 + hot_epochs):
        writer.commit_epoch(epoch + 1, [(STEP, f"t{i}", epoch, epoch) for i in range(touched)])
    return store


def test_gc_work_follows_what_was_written_not_the_store_size(tmp_path: Path) -> None:
    small = _store_with(tmp_path / "small", untouched=0, touched=100, hot_epochs=3)
    big = _store_with(tmp_path / "big", untouched=50_000, touched=100, hot_epochs=3)
    try:
        # The big store's GC picks the incremental way by itself; a store of only
        # the keys written would rather scan (that is cheaper there), so it is told.
        results = [small.gc(method="incremental"), big.gc()]
        for result in results:
            assert result.method == "incremental"
            assert result.deleted_snapshots == 300  # epochs 1..3 of each touched key
        work = [(r.records_visited, r.keys_visited, r.transactions) for r in results]
        assert work[0] == work[1]  # 50,000 more keys in the store: not one more visited
        assert results[1].keys_visited <= 100 * 4 * 3  # a few keys per key written since
        assert contents(big)[ident((STEP, "t7", False))] == [4]
        # The same GC as a scan reads every key of the store:
        again = _store_with(tmp_path / "again", untouched=50_000, touched=100, hot_epochs=3)
        try:
            scanned = again.gc(method="scan")
        finally:
            again.close()
        assert scanned.deleted_snapshots == 300
        assert scanned.keys_visited >= 50_000
    finally:
        small.close()
        big.close()


def test_gc_scans_when_most_keys_were_written(store: RecoveryStore) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    for epoch in (1, 2):
        writer.commit_epoch(epoch + 1, [(STEP, f"k{i}", epoch, epoch) for i in range(5000)])
    result = store.gc(chunk_keys=500)
    assert (result.method, result.deleted_snapshots, result.remaining_snapshots) == (
        "scan",
        5000,
        5000,
    )
    assert result.transactions > 5  # bounded transactions, then the records
    assert store.inspect()["gc_index_records"] == 0


# -- stores of the previous format --------------------------------------------------------------


def _fill(store: RecoveryStore, model: dict[Thing, set[int]], epochs: range) -> None:
    writer = store.epoch_writer(store.executions()[-1].execution_id, 0)
    for epoch in epochs:
        chosen = [t for i, t in enumerate(THINGS) if (i + epoch) % 3]
        commit(writer, epoch + 1, [(thing, epoch, epoch) for thing in chosen])
        for thing in chosen:
            model.setdefault(thing, set()).add(epoch)


def test_a_store_of_the_previous_format_gets_its_index_from_the_first_gc(store_dir: Path) -> None:
    model: dict[Thing, set[int]] = {}
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
        _fill(store, model, range(1, 8))
    as_previous_format(store_dir)
    with RecoveryStore.open(store_dir) as store:
        report = store.inspect()
        assert (report["format"], report["gc_index_records"]) == (2, None)
        result = store.gc(backup_epochs=2)  # frontier 8: horizon 5
        assert result.method == "build-index"
        assert result.deleted_snapshots == apply_gc(model, 8, 2)
        assert contents(store) == as_contents(model)
        assert store.inspect()["format"] == 4  # indexed, and it records its key hash
        _fill(store, model, range(8, 12))
        result = store.gc(method="incremental")  # the index now names what was written
        assert result.method == "incremental"
        assert result.deleted_snapshots == apply_gc(model, 12, 0)
        assert contents(store) == as_contents(model)
    assert verify_store(store_dir).format == 4


def test_a_store_of_the_previous_format_gets_its_index_at_its_next_execution(
    store_dir: Path,
) -> None:
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("flow", "fp", worker_count=2, key_groups=GROUPS)
        ahead, behind = store.epoch_writer(1, 0), store.epoch_writer(1, 1)
        for epoch in range(1, 6):
            ahead.commit_epoch(epoch + 1, [(STEP, "a", epoch, epoch)])
        behind.commit_epoch(3, [(STEP, "b", 1, "b1"), (STEP, "b", 2, "b2")])
    as_previous_format(store_dir)
    with RecoveryStore.open(store_dir) as store:
        second = store.begin_execution("flow", "fp", worker_count=1, state_steps={STEP})
        assert second.resume_epoch == 3
        report = store.inspect()
        assert (report["format"], report["steps"][STEP]["newest_epoch"]) == (4, 2)
        assert report["gc_index_records"] > 0
        assert store.load_keyed_states(STEP, range(GROUPS), 3) == {"a": 2, "b": "b2"}
        store.epoch_writer(2, 0).commit_epoch(5, [(STEP, "a", 4, "a4")])
        assert store.gc(method="incremental").deleted_snapshots == 3  # a1, a2 and b1
        assert store.load_keyed_states(STEP, range(GROUPS), 5) == {"a": "a4", "b": "b2"}
    verify_store(store_dir)


def test_the_command_line_tells_when_a_gc_built_the_index(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
        store.epoch_writer(1, 0).commit_epoch(3, [(STEP, "a", 1, 1), (STEP, "a", 2, 2)])
    as_previous_format(store_dir)
    assert main(["inspect", str(store_dir)]) == 0
    assert "(no GC index yet: the next execution or gc builds it" in capsys.readouterr().out
    assert main(["gc", str(store_dir)]) == 0
    assert capsys.readouterr().out == (
        "gc: compacted up to epoch 2: deleted 1 snapshots, 1 remain "
        "(built the store's GC index: one full scan)\n"
    )
    assert main(["inspect", str(store_dir)]) == 0
    assert "GC horizon: epoch 2 (0 GC index records to visit)" in capsys.readouterr().out


def test_a_store_short_of_free_pages_only_opens(store_dir: Path) -> None:
    """LMDB may commit pages it took from the end of the file and freed unwritten.

    A new execution discarding what a worker wrote ahead does that here (the deletes
    copy pages, then merge them away): the file ends before the committed meta's last
    page, but the missing pages are free, so the store is sound and must open.
    """
    rng = random.Random(10)
    steps = {"flow.abort", SOURCE}
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("flow", "fp", worker_count=2, state_steps=steps)
        behind, ahead = store.epoch_writer(1, 0), store.epoch_writer(1, 1)
        for epoch in range(1, 56):
            parts = [(SOURCE, f"range-{p:02d}", epoch, rng.randint(0, 10**6)) for p in range(8)]
            keyed = [("flow.abort", f"k{rng.randint(0, 5)}", epoch, "x" * rng.randint(1, 200))]
            ahead.commit_epoch(epoch + 1, keyed, parts)
            if epoch < 4:
                behind.commit_epoch(epoch + 1, [], [(SOURCE, "range-99", epoch, 5)])
        store.gc()
        store.begin_execution("flow", "fp", worker_count=3, state_steps=steps)  # discards
        env = store._env().env
        claimed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    assert (store_dir / "data.mdb").stat().st_size < claimed  # the case under test
    with RecoveryStore.open(store_dir) as store:  # opened afresh: the file is checked
        assert store.load_partition_states(SOURCE, 4) == {
            **{f"range-{p:02d}": ANY for p in range(8)},
            "range-99": 5,
        }
    assert verify_store(store_dir).executions == 2


def test_verify_finds_a_snapshot_the_index_does_not_name(store_dir: Path) -> None:
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
        store.epoch_writer(1, 0).commit_epoch(3, [(STEP, "a", 1, 1), (STEP, "a", 2, 2)])
    with lmdb.open(str(store_dir), max_dbs=8) as env, env.begin(write=True) as txn:
        txn.drop(env.open_db(b"written", txn=txn), delete=False)  # emptied, still there
    with pytest.raises(RecoveryError, match="not named by the GC index"):
        verify_store(store_dir)


def test_verify_finds_a_damaged_index_record(store_dir: Path) -> None:
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
        store.epoch_writer(1, 0).commit_epoch(2, [(STEP, "a", 1, 1)])
    with lmdb.open(str(store_dir), max_dbs=8) as env, env.begin(write=True) as txn:
        written = env.open_db(b"written", txn=txn)
        key, value = next(iter(txn.cursor(db=written)))
        txn.put(key, value[:-1], db=written)  # the last ident cut short
    with pytest.raises(RecoveryError, match=r"GC index record .* ends inside an ident"):
        verify_store(store_dir)


@pytest.mark.parametrize("store_format", [b"3", b"4"])
def test_an_indexed_format_store_without_its_index_is_refused(
    store_dir: Path, store_format: bytes
) -> None:
    with lmdb.open(str(store_dir), max_dbs=8) as env, env.begin(write=True) as txn:
        txn.drop(env.open_db(b"written", txn=txn), delete=True)
        txn.put(b"format", store_format, db=env.open_db(b"meta", txn=txn))
    expected = rf"format {store_format.decode()}.* lacks its sub-database written"
    with pytest.raises(MissingPartitionsError, match=expected):
        RecoveryStore.open(store_dir)


# -- commits during a chunked GC ----------------------------------------------------------------

#: A worker in its own process. "paced": commits one epoch per line read on stdin
#: ("go"; "stop" ends it). "free": commits as fast as it can until STOP_FILE exists.
WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from recovery import RecoveryStore
    store_dir, worker, mode, stop_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    with RecoveryStore.open(store_dir) as store:
        writer = store.epoch_writer(1, worker)
        epoch = 3
        while epoch < 3000:
            if mode == "paced" and sys.stdin.readline().strip() != "go":
                break
            if mode == "free" and Path(stop_file).exists():
                break
            snapshots = [("flow.count", f"w{worker}-{i}", epoch, epoch) for i in range(300)]
            writer.commit_epoch(epoch + 1, snapshots)
            print(epoch, flush=True)
            epoch += 1
    """
)
PREFILL = 10_000


def _read_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], CHILD_TIMEOUT_S)
    assert ready, "a worker process did not answer in time"
    return process.stdout.readline().strip()


class _OneCommitPerTransaction:
    """Passed as ``cancel``: between two GC transactions, the paced worker commits once."""

    def __init__(self, paced: subprocess.Popen[str]) -> None:
        self.paced = paced
        self.last_epoch = 2

    def is_set(self) -> bool:
        assert self.paced.stdin is not None
        self.paced.stdin.write("go\n")
        self.paced.stdin.flush()
        self.last_epoch = int(_read_line(self.paced))
        return False


@pytest.mark.parametrize("method", ["incremental", "scan"])
def test_commits_of_other_processes_during_a_chunked_gc_lose_nothing(
    store_dir: Path, tmp_path: Path, method: str
) -> None:
    model: dict[Thing, set[int]] = {}
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("flow", "fp", worker_count=2, key_groups=GROUPS)
        for worker in (0, 1):
            writer = store.epoch_writer(1, worker)
            for epoch in (1, 2):
                keys = [f"w{worker}-{i}" for i in range(PREFILL)]
                writer.commit_epoch(epoch + 1, [(STEP, k, epoch, epoch) for k in keys])
                for key in keys:
                    model.setdefault((STEP, key, False), set()).add(epoch)
    stop_file = tmp_path / "stop"
    paced = start_python(WORKER, str(store_dir), "0", "paced", str(stop_file))
    free = start_python(WORKER, str(store_dir), "1", "free", str(stop_file))
    try:
        pacer = _OneCommitPerTransaction(paced)
        with RecoveryStore.open(store_dir) as store:
            free_before = int(_read_line(free))  # the free worker is committing
            result = store.gc(chunk_keys=500, cancel=pacer, method=method)
            free_after = int(_read_line(free))
        assert result.complete and result.method == method
        assert result.transactions > 20  # chunked
        assert free_after > free_before  # it committed while the GC ran
        assert paced.stdin is not None
        paced.stdin.write("stop\n")
        paced.stdin.flush()
        stop_file.touch()
        outputs = [p.communicate(timeout=CHILD_TIMEOUT_S) for p in (paced, free)]
        assert paced.returncode == free.returncode == 0, outputs
    finally:
        for process in (paced, free):
            if process.poll() is None:
                process.kill()
                process.wait()
    with RecoveryStore.open(store_dir) as store:  # each worker's last epoch: frontier - 1
        last = {w: f - 1 for w, f in store.inspect()["executions"][0]["frontiers"].items()}
    assert last[0] == pacer.last_epoch
    for worker, final in last.items():
        for epoch in range(3, final + 1):
            for i in range(300):
                model[(STEP, f"w{worker}-{i}", False)].add(epoch)
    expected = {
        key: max(epochs) for (_, key, _), epochs in model.items()
    }  # the state of a key is the epoch it was last written at
    with RecoveryStore.open(store_dir) as store:
        frontier = max(last.values()) + 1
        assert store.load_keyed_states(STEP, range(GROUPS), frontier) == expected
        store.gc()  # nothing else running: now exactly the full-scan rule
        apply_gc(model, store.next_resume_epoch(), 0)
        assert contents(store) == as_contents(model)
    verify_store(store_dir)


# -- the background GC --------------------------------------------------------------------------


def test_background_gc_runs_one_gc_at_a_time_off_the_caller(
    store: RecoveryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    writer.commit_epoch(2, [(STEP, "a", 1, 1)])
    writer.commit_epoch(3, [(STEP, "a", 2, 2)])
    entered, release = threading.Event(), threading.Event()
    real_gc = RecoveryStore.gc

    def blocked_gc(self: RecoveryStore, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(CHILD_TIMEOUT_S)
        return real_gc(self, *args, **kwargs)

    monkeypatch.setattr(RecoveryStore, "gc", blocked_gc)
    background = BackgroundGc(store)
    assert background.start()  # returns while the GC is blocked
    assert entered.wait(CHILD_TIMEOUT_S) and background.running
    assert not background.start()  # one at a time
    release.set()
    assert background.wait(CHILD_TIMEOUT_S)
    background.close(timeout=CHILD_TIMEOUT_S)
    assert background.finished == 1 and not background.running
    assert background.last_result is not None
    assert background.last_result.deleted_snapshots == 1
    assert not background.start()  # closed: no new GC


def test_background_gc_reports_its_error(
    store: RecoveryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_gc(self: RecoveryStore, *args: Any, **kwargs: Any) -> Any:
        raise RecoveryError("disk on fire")

    monkeypatch.setattr(RecoveryStore, "gc", failing_gc)
    background = BackgroundGc(store)
    assert background.start()
    assert background.wait(CHILD_TIMEOUT_S)
    with pytest.raises(RecoveryError, match="disk on fire"):
        background.start()  # the next start raises the previous GC's error
    assert background.start()
    own = RuntimeError("the run failed")
    background.close(timeout=CHILD_TIMEOUT_S, failing=own)  # a note, not a new error
    assert any("background GC failed: RecoveryError: disk on fire" in n for n in own.__notes__)
    again = BackgroundGc(store)
    again.start()
    with pytest.raises(RecoveryError, match="disk on fire"):
        again.close(timeout=CHILD_TIMEOUT_S)


def test_background_gc_runs_before_first_in_its_thread(store: RecoveryStore) -> None:
    """What raises finished workers' frontiers runs first, so that the GC compacts
    what those workers' frontiers held back."""
    store.begin_execution("flow", "fp", worker_count=2, key_groups=GROUPS)
    slow, fast = store.epoch_writer(1, 0), store.epoch_writer(1, 1)
    slow.commit_epoch(2, [(STEP, "a", 1, 1)])  # worker 0 finished at epoch 1
    fast.commit_epoch(3, [(STEP, "b", 1, 1)])
    fast.commit_epoch(4, [(STEP, "b", 2, 2)])
    fast.commit_epoch(5, [(STEP, "b", 3, 3)])
    threads: list[str] = []

    def before() -> None:
        threads.append(threading.current_thread().name)
        store.raise_finished_frontiers(1, [0])

    background = BackgroundGc(store)
    assert background.start(before=before)
    assert background.wait(CHILD_TIMEOUT_S)
    background.close(timeout=CHILD_TIMEOUT_S)
    assert threads == ["shmflow-gc"]
    assert store.cluster_frontier(1) == 5
    assert background.last_result is not None
    assert background.last_result.deleted_snapshots == 2  # b@1 and b@2, behind epoch 4


def test_background_gc_reports_an_error_of_before(store: RecoveryStore) -> None:
    def before() -> None:
        raise RecoveryError("no space left")

    background = BackgroundGc(store)
    assert background.start(before=before)
    with pytest.raises(RecoveryError, match="no space left"):
        background.close(timeout=CHILD_TIMEOUT_S)


def test_closing_the_background_gc_stops_it_between_transactions(store: RecoveryStore) -> None:
    store.begin_execution("flow", "fp", worker_count=1, key_groups=GROUPS)
    writer = store.epoch_writer(1, 0)
    model: dict[Thing, set[int]] = {}
    for epoch in (1, 2, 3):
        writer.commit_epoch(epoch + 1, [(STEP, f"k{i}", epoch, i) for i in range(3000)])
        for i in range(3000):
            model.setdefault((STEP, f"k{i}", False), set()).add(epoch)
    background = BackgroundGc(store, chunk_keys=1)  # thousands of transactions
    background.start()
    background.close(timeout=CHILD_TIMEOUT_S)
    assert background.last_result is not None and not background.last_result.complete
    partial = contents(store)  # part done, every key still has its newest snapshot
    assert all(epochs[-1] == 3 for epochs in partial.values()) and len(partial) == 3000
    result = store.gc()  # goes on from there
    assert result.complete
    apply_gc(model, 4, 0)
    assert contents(store) == as_contents(model)
