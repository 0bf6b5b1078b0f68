"""Recovery wired into the runtime: resume, continuation, GC, rescaling and the recovery
faults of FAULTS.md (rows 3, 8, 9, 10, 11, 13, 18), in every execution mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.testing import TestingSink, TestingSource, cluster_main, run_main
from recovery import (
    CorruptStoreError,
    FlowMismatchError,
    InconsistentPartitionsError,
    NoPartitionsError,
    RecoveryConfig,
    RecoveryStore,
    StoreFullError,
    StoreInUseError,
    init_db_dir,
)

ZERO = timedelta(0)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def store(tmp_path: Path) -> RecoveryConfig:
    init_db_dir(tmp_path / "store")
    return RecoveryConfig(tmp_path / "store")


def _running_sum(state: int | None, value: int) -> tuple[int, int]:
    total = (state or 0) + value
    return total, total


def _sum_flow(items: list[Any], out: list[Any], flow_id: str = "rec") -> Dataflow:
    flow = Dataflow(flow_id)
    s = op.input("inp", flow, TestingSource(items))
    op.output("out", op.stateful_map("sum", s, _running_sum), TestingSink(out))
    return flow


def _final(out: list[tuple[str, int]]) -> dict[str, int]:
    """The last running sum of each key, assuming each key's sums only grow."""
    final: dict[str, int] = {}
    for key, total in out:
        final[key] = max(final.get(key, total), total)
    return final


# -- resume -----------------------------------------------------------------------------------


def test_abort_resumes_replaying_only_unfinished_epochs(store: RecoveryConfig) -> None:
    items = [("a", 1), ("b", 10), ("a", 2), TestingSource.ABORT(), ("b", 20), ("a", 3)]
    out: list[Any] = []
    flow = _sum_flow(items, out)
    run_main(flow, epoch_interval=ZERO, recovery_config=store)
    assert out == [("a", 1), ("b", 10), ("a", 3)]
    run_main(flow, epoch_interval=ZERO, recovery_config=store)
    # Every batch was its own epoch and was committed: nothing is replayed.
    assert out == [("a", 1), ("b", 10), ("a", 3), ("b", 30), ("a", 6)]


def test_abort_with_long_epochs_replays_since_the_last_snapshot(store: RecoveryConfig) -> None:
    items = [("a", 1), ("a", 2), TestingSource.ABORT(), ("a", 3)]
    out: list[Any] = []
    flow = _sum_flow(items, out)
    run_main(flow, recovery_config=store)  # 10 s epochs: nothing closed before the abort
    assert out == [("a", 1), ("a", 3)]
    run_main(flow, recovery_config=store)
    # Replayed from the start (at-least-once), with the state of the start.
    assert out == [("a", 1), ("a", 3), ("a", 1), ("a", 3), ("a", 6)]


def test_resume_is_at_least_once_with_exact_state(entry_point, store: RecoveryConfig) -> None:
    items: list[Any] = [(f"k{i % 4}", i) for i in range(40)]
    items.insert(23, TestingSource.ABORT())
    out: list[Any] = []
    flow = _sum_flow(items, out)
    entry_point(flow, epoch_interval=ZERO, recovery_config=store)
    entry_point(flow, epoch_interval=ZERO, recovery_config=store)
    expected = Counter()
    for i in range(40):
        expected[f"k{i % 4}"] += i
    assert _final(out) == dict(expected)
    # Every item's effect is in the output: each running sum of the fault-free run shows.
    fault_free: list[Any] = []
    run_main(_sum_flow([(f"k{i % 4}", i) for i in range(40)], fault_free))
    assert set(fault_free) <= set(out)


def test_eof_continuation_resumes_after_the_eof(entry_point, store: RecoveryConfig) -> None:
    items = [("a", 1), ("b", 2), TestingSource.EOF(), ("a", 10), TestingSource.EOF(), ("b", 5)]
    out: list[Any] = []
    flow = _sum_flow(items, out)
    entry_point(flow, epoch_interval=ZERO, recovery_config=store)
    assert sorted(out) == [("a", 1), ("b", 2)]
    entry_point(flow, epoch_interval=ZERO, recovery_config=store)
    assert sorted(out) == [("a", 1), ("a", 11), ("b", 2)]
    entry_point(flow, epoch_interval=ZERO, recovery_config=store)
    assert sorted(out) == [("a", 1), ("a", 11), ("b", 2), ("b", 7)]


def test_rescaling_3_then_5_then_1_workers(store: RecoveryConfig) -> None:
    keys = [f"key{i}" for i in range(23)]
    chunks = [[(k, n) for n in range(1, 4) for k in keys] for _ in range(3)]
    items: list[Any] = []
    for chunk in chunks:
        items.extend(chunk)
        items.append(TestingSource.EOF())
    out: list[Any] = []
    flow = _sum_flow(items, out)
    for workers in (3, 5, 1):
        cluster_main(
            flow, [], 0, epoch_interval=ZERO, recovery_config=store, worker_count_per_proc=workers
        )
    assert _final(out) == {k: 18 for k in keys}  # (1 + 2 + 3) * 3 per key
    with RecoveryStore.open(store.db_dir) as opened:
        assert [e.worker_count for e in opened.executions()] == [3, 5, 1]


def test_a_store_written_with_crc32_keys_resumes_and_rescales_by_crc32(
    store: RecoveryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lmdb

    import recovery._store
    from recovery import DEFAULT_KEY_HASH, LEGACY_KEY_HASH, group_owner, key_group

    keys = [f"key{i}" for i in range(23)]
    # The two hashes disagree about where these keys live: routing a resumed run by the
    # wrong one would meet no state and restart the sums.
    assert any(
        group_owner(key_group(k, 1024, LEGACY_KEY_HASH), 1024, 3)
        != group_owner(key_group(k, 1024, DEFAULT_KEY_HASH), 1024, 3)
        for k in keys
    )
    items: list[Any] = []
    for _ in range(3):
        items.extend((k, n) for n in range(1, 4) for k in keys)
        items.append(TestingSource.EOF())
    out: list[Any] = []
    flow = _sum_flow(items, out)
    # A store as an older shmflow wrote it: CRC-32 placement, no key hash recorded.
    monkeypatch.setattr(recovery._store, "DEFAULT_KEY_HASH", LEGACY_KEY_HASH)
    cluster_main(flow, [], 0, epoch_interval=ZERO, recovery_config=store, worker_count_per_proc=2)
    monkeypatch.undo()
    env = lmdb.open(str(store.db_dir), subdir=True, max_dbs=16)
    with env.begin(write=True) as txn:
        meta = env.open_db(b"meta", txn=txn)
        txn.delete(b"key_hash", db=meta)
        txn.put(b"format", b"3", db=meta)  # what that shmflow wrote
    env.close()
    for workers in (3, 1):
        cluster_main(
            flow, [], 0, epoch_interval=ZERO, recovery_config=store, worker_count_per_proc=workers
        )
    assert _final(out) == {k: 18 for k in keys}
    with RecoveryStore.open(store.db_dir) as opened:
        assert opened.inspect()["key_hash"] == LEGACY_KEY_HASH


def test_backup_interval_delays_gc(tmp_path: Path) -> None:
    def snapshots_of(db: Path) -> int:
        with RecoveryStore.open(db) as opened:
            steps = opened.inspect()["steps"]
        return sum(step["snapshots"] for step in steps.values())

    counts = {}
    for name, backup in (("none", None), ("long", timedelta(hours=1))):
        db = tmp_path / name
        init_db_dir(db)
        items = [("a", i) for i in range(6)]
        config = RecoveryConfig(db, backup_interval=backup)
        run_main(
            _sum_flow(items, []), epoch_interval=timedelta(microseconds=1), recovery_config=config
        )
        counts[name] = snapshots_of(db)
    # Without a backup interval GC keeps only the newest snapshot per key and partition;
    # an hour of backup keeps every epoch's.
    assert counts["none"] == 2
    assert counts["long"] > counts["none"]


def test_store_garbage_collected_too_far_is_refused(store: RecoveryConfig) -> None:
    items = [("a", 1), TestingSource.ABORT(), ("a", 2)]
    flow = _sum_flow(items, [])
    run_main(flow, epoch_interval=ZERO, recovery_config=store)
    # Pretend a GC ran far beyond what the next resume needs (e.g. a misconfigured tool).
    with RecoveryStore.open(store.db_dir) as opened:
        env = opened._env()
        with env.env.begin(write=True) as txn:
            txn.put(b"gc_horizon", b"1000", db=env.dbs["meta"])
    with pytest.raises(InconsistentPartitionsError):
        run_main(flow, epoch_interval=ZERO, recovery_config=store)


# -- FAULTS rows ------------------------------------------------------------------------------


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("this state cannot be pickled")


def _unpicklable_from_3(state: Any, value: int) -> tuple[Any, int]:
    return (_Unpicklable() if value >= 3 else value), value


def _unpicklable_state_flow() -> Dataflow:
    flow = Dataflow("rec")
    s = op.input("inp", flow, TestingSource([("a", 1), ("a", 2), ("a", 3), ("a", 4)]))
    op.output("out", op.stateful_map("keep", s, _unpicklable_from_3), TestingSink([]))
    return flow


def test_row3_unpicklable_state_commits_nothing(store: RecoveryConfig) -> None:
    with pytest.raises(EngineRuntimeError) as info:
        run_main(_unpicklable_state_flow(), epoch_interval=ZERO, recovery_config=store)
    message = str(info.value)
    assert "rec.keep.stateful_batch" in message
    assert "'a'" in message
    assert "epoch 3" in message
    with RecoveryStore.open(store.db_dir) as opened:
        # Epochs 1 and 2 were committed; epoch 3 (the bad state) was not.
        assert opened.next_resume_epoch() == 3


def test_row3_unpicklable_state_in_worker_processes(store: RecoveryConfig) -> None:
    with pytest.raises(EngineRuntimeError) as info:
        cluster_main(
            _unpicklable_state_flow(),
            [],
            0,
            epoch_interval=ZERO,
            recovery_config=store,
            worker_count_per_proc=2,
        )
    message = str(info.value)
    assert "rec.keep.stateful_batch" in message and "'a'" in message and "epoch" in message
    with RecoveryStore.open(store.db_dir) as opened:
        assert opened.next_resume_epoch() <= 3  # nothing with the bad state committed


def test_row8_map_full_is_a_clear_error_and_keeps_the_last_commit(
    monkeypatch, store: RecoveryConfig
) -> None:
    import recovery._env as env_module

    monkeypatch.setattr(env_module, "DEFAULT_MAP_SIZE", 256 * 1024)
    big = "x" * 40_000
    items = [("a", "small"), *[(f"k{i}", big) for i in range(20)]]
    flow = Dataflow("rec")
    s = op.input("inp", flow, TestingSource(items, batch_size=1))
    op.output("out", op.stateful_map("keep", s, lambda st, v: (v, len(v))), TestingSink([]))
    with pytest.raises(EngineRuntimeError, match=r"(?i)map size|full") as info:
        run_main(flow, epoch_interval=ZERO, recovery_config=store)
    assert isinstance(info.value.__cause__, StoreFullError)
    with RecoveryStore.open(store.db_dir) as opened:
        assert opened.next_resume_epoch() > 1  # what was committed before is intact


def test_row9_store_of_another_flow_is_refused(entry_point, store: RecoveryConfig) -> None:
    run_main(_sum_flow([("a", 1)], [], flow_id="first"), recovery_config=store)
    with pytest.raises(FlowMismatchError) as info:
        entry_point(_sum_flow([("a", 1)], [], flow_id="second"), recovery_config=store)
    assert "first" in str(info.value) and "second" in str(info.value)


def test_row9_reshaped_flow_is_refused(store: RecoveryConfig) -> None:
    run_main(_sum_flow([("a", 1)], []), recovery_config=store)
    flow = Dataflow("rec")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    op.output("out", op.map_value("renamed", s, str), TestingSink([]))
    with pytest.raises(FlowMismatchError):
        run_main(flow, recovery_config=store)


def test_row10_corrupted_store_is_a_clear_error(entry_point, store: RecoveryConfig) -> None:
    run_main(_sum_flow([("a", 1)], []), recovery_config=store)
    data = Path(store.db_dir) / "data.mdb"
    data.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CorruptStoreError):
        entry_point(_sum_flow([("a", 1)], []), recovery_config=store)


def test_row10_missing_store_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(NoPartitionsError, match="init"):
        run_main(_sum_flow([("a", 1)], []), recovery_config=RecoveryConfig(tmp_path / "none"))


def test_row11_second_execution_on_a_store_is_refused(entry_point, store: RecoveryConfig) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from recovery import RecoveryStore
                with RecoveryStore.open({str(store.db_dir)!r}) as store:
                    with store.lock_for_execution():
                        print("locked", flush=True)
                        sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreInUseError, match=f"pid {holder.pid}"):
            entry_point(_sum_flow([("a", 1)], []), recovery_config=store)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()


def test_row18_long_keys_work(entry_point, store: RecoveryConfig) -> None:
    long_a, long_b = "a" * 10_000, "a" * 9_999 + "b"  # share a 9,999-char prefix
    items = [(long_a, 1), (long_b, 2), TestingSource.EOF(), (long_a, 3), (long_b, 4)]
    out: list[Any] = []
    flow = _sum_flow(items, out)
    entry_point(flow, epoch_interval=ZERO, recovery_config=store)
    entry_point(flow, epoch_interval=ZERO, recovery_config=store)
    assert _final(out) == {long_a: 4, long_b: 6}


def test_recovery_config_type_is_checked() -> None:
    with pytest.raises(TypeError, match="RecoveryConfig"):
        run_main(_sum_flow([("a", 1)], []), recovery_config="/tmp/store")  # type: ignore[arg-type]


def test_file_sink_output_is_effectively_once(
    entry_point, store: RecoveryConfig, tmp_path: Path
) -> None:
    from engine.connectors.files import FileSink

    lines = [f"line {i}" for i in range(30)]
    items: list[Any] = [("k", line) for line in lines]
    items.insert(17, TestingSource.ABORT())
    target = tmp_path / "out.txt"
    flow = Dataflow("files")
    s = op.input("inp", flow, TestingSource(items, batch_size=2))
    op.output("out", s, FileSink(target))
    entry_point(flow, epoch_interval=ZERO, recovery_config=store)
    assert target.read_text().splitlines() == lines[: len(target.read_text().splitlines())]
    entry_point(flow, epoch_interval=ZERO, recovery_config=store)
    assert target.read_text().splitlines() == lines  # no line lost, none written twice


# -- workers that finished early ----------------------------------------------------------------


class _FakeGc:
    def __init__(self) -> None:
        self.starts: list[Any] = []

    def start(self, before: Any = None) -> bool:
        self.starts.append(before)
        return True


class _FakeStore:
    def __init__(self) -> None:
        self.raised: list[tuple[int, list[int]]] = []

    def raise_finished_frontiers(self, execution_id: int, finished: list[int]) -> int:
        self.raised.append((execution_id, finished))
        return 0


def test_the_supervisor_raises_finished_workers_before_each_gc_while_others_run() -> None:
    """So that a supervisor killed mid-run leaves a resume epoch that the workers which
    had finished do not hold back (the end of a run raises them once more, see
    tests/engine/test_file_split.py)."""
    from types import SimpleNamespace

    from engine.runtime.plan import compile_plan
    from engine.runtime.snapshots import ExecutionInfo
    from engine.runtime.supervisor import ClusterOptions, _Cluster

    store = _FakeStore()
    execution = ExecutionInfo("unused", 7, 1, 16, 0)
    flow = _sum_flow([("a", 1)], [])
    cluster = _Cluster(compile_plan(flow), ClusterOptions(workers=3), execution=execution)
    try:
        cluster.store = store
        cluster._gc = gc = _FakeGc()
        cluster.workers = [SimpleNamespace(index=i, finished=False) for i in range(3)]
        cluster._collect_garbage()
        assert gc.starts == [None]  # nobody finished: a plain GC
        cluster.workers[2].finished = True
        cluster._next_gc = 0.0
        cluster._collect_garbage()
        assert gc.starts[-1] is not None
        gc.starts[-1]()  # what the GC's thread runs first
        assert store.raised == [(7, [2])]
        for w in cluster.workers:
            w.finished = True
        cluster._next_gc = 0.0
        cluster._collect_garbage()
        assert gc.starts[-1] is None  # all finished: the end of the run completes it
    finally:
        cluster.workers = []
        cluster.release()
