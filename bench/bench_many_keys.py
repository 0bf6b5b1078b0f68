"""Many keys: a stateful step holding millions of keys, with recovery on.

    python -m bench.bench_many_keys --keys 5000000          # the table (results_many_keys.md)
    python -m pytest bench/bench_many_keys.py               # pytest-benchmark, small sizes

The flow (:func:`many_keys_flow`): a source of 2 partitions gives every one of ``keys``
distinct keys a count twice (two full passes: those epochs touch all keys), then
``hot_rounds`` paced rounds touch only the first ``hot_keys`` keys (later epochs touch
few); a ``stateful_map`` keeps the count of each key; 2 workers, recovery on.

What the table reports, each against a baseline measured in the same run:

1. **Commit time per epoch.** The run summary has only each worker's total commit time
   and count, plus the largest epoch-close latency (which bounds the largest commit):
   exposing each commit's time would need a runtime change (a per-commit histogram or
   maximum in ``engine/runtime/metrics.py``). So each commit's time is measured through
   the store API by replaying the same commits (2 processes, one ``EpochWriter`` each,
   as the workers do); the same replay on a store without the GC index shows what the
   index costs; pickling a plain dict of all keys is the floor.
2. **GC time per call**, on copies of one store: the GC of this shmflow (incremental
   or scan, as it picks), the previous GC (:func:`full_scan_gc`: scan the whole store,
   delete in one transaction) and, for the big GC, the incremental method forced.
3. **Resume time**: a whole run (its summary's commit figures), then a run whose
   worker 1 is killed with SIGKILL in the middle of the hot rounds, then resumed: the
   resumed run's ``workers_ready_s`` (start until both workers loaded their keys),
   ``begin_execution`` alone (it discards what workers wrote past the resume epoch,
   found by the GC index; baseline: the previous full scan for them) and
   ``load_keyed_states`` alone (baseline: ``pickle.loads`` of a dict of all keys).
4. Store size and RSS (workers from the summary, this process from ``getrusage``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import platform
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lmdb
import psutil
import pytest

import engine.operators as op
from engine import run_flow
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.inputs import FixedPartitionedSource, StatefulSourcePartition
from engine.runtime.summary import ClusterStatus, RunSummary
from engine.tools.flows import CountingSink
from recovery import (
    RecoveryConfig,
    RecoveryStore,
    init_db_dir,
    owned_groups,
)

FLOW_ID = "many_keys"
#: The state of the count step, as the store names it.
STATE_STEP = f"{FLOW_ID}.count.stateful_batch"
#: The input step (its partitions' read positions are in the store too).
INPUT_STEP = f"{FLOW_ID}.inp"
PARTITIONS = 2
WORKERS = 2


def key_name(i: int) -> str:
    """The state key of key number ``i``."""
    return f"key-{i:08d}"


# -- the flow ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """How many keys and rounds: ``full_passes`` over all ``keys``, then hot rounds."""

    keys: int
    full_passes: int = 2
    hot_keys: int = 1_000
    hot_rounds: int = 10
    #: Seconds between hot rounds (so they fall in different epochs).
    pace_s: float = 0.2
    batch_size: int = 50_000

    def expected_states(self) -> dict[str, int]:
        """The count of every key after the whole input."""
        states = dict.fromkeys(map(key_name, range(self.keys)), self.full_passes)
        for i in range(min(self.hot_keys, self.keys)):
            states[key_name(i)] += self.hot_rounds
        return states

    def cold_batches(self, partition: int) -> int:
        """Batches of one full pass over ``partition``'s keys."""
        size = len(range(partition, self.keys, PARTITIONS))
        return -(-size // self.batch_size)


class _ManyKeysPartition(StatefulSourcePartition[tuple[str, int], int]):
    def __init__(self, shape: Shape, index: int, position: int | None) -> None:
        self.shape = shape
        self.cold = range(index, shape.keys, PARTITIONS)
        self.hot = range(index, min(shape.hot_keys, shape.keys), PARTITIONS)
        self.cold_batches = shape.cold_batches(index)
        self.position = position or 0  # batches returned so far
        self._awake: datetime | None = None

    def next_batch(self) -> list[tuple[str, int]]:
        shape = self.shape
        size = shape.batch_size
        full = self.cold_batches * shape.full_passes
        if self.position < full:
            batch = self.position % self.cold_batches
            indexes = self.cold[batch * size : (batch + 1) * size]
        elif self.position < full + shape.hot_rounds:
            indexes = self.hot
            self._awake = datetime.now(UTC) + timedelta(seconds=shape.pace_s)
        else:
            raise StopIteration
        self.position += 1
        return [(key_name(i), 1) for i in indexes]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self.position


class ManyKeysSource(FixedPartitionedSource[tuple[str, int], int]):
    """Two partitions of keys: full passes over every key, then paced hot rounds."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape

    def list_parts(self) -> list[str]:
        return [f"part-{i}" for i in range(PARTITIONS)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _ManyKeysPartition:
        return _ManyKeysPartition(self.shape, int(for_part.rsplit("-", 1)[1]), resume_state)


def _count(state: int | None, value: int) -> tuple[int, int]:
    total = (state or 0) + value
    return total, total


def many_keys_flow(shape: Shape) -> Dataflow:
    """The benchmark flow: a count per key over :class:`ManyKeysSource`."""
    flow = Dataflow(FLOW_ID)
    items = op.input("inp", flow, ManyKeysSource(shape))
    op.output("out", op.stateful_map("count", items, _count), CountingSink())
    return flow


def stored_states(db_dir: Path) -> dict[str, Any]:
    """Every key's state as a resume would load it (both workers' groups)."""
    with RecoveryStore.open(db_dir) as store:
        resume = store.next_resume_epoch()
        groups = store.executions()[-1].key_groups
        states: dict[str, Any] = {}
        for worker in range(WORKERS):
            states |= store.load_keyed_states(
                STATE_STEP, owned_groups(worker, groups, WORKERS), resume
            )
    return states


def hot_rounds_done(store: RecoveryStore, shape: Shape) -> int:
    """Hot rounds every partition has durably read (-1 before the hot rounds)."""
    positions = store.load_partition_states(INPUT_STEP, store.next_resume_epoch())
    done = [
        positions.get(f"part-{p}", 0) - shape.cold_batches(p) * shape.full_passes
        for p in range(PARTITIONS)
    ]
    return min(min(done), shape.hot_rounds) if min(done) >= 0 else -1


class KillAt:
    """An ``on_status`` callback that SIGKILLs worker 1 once ``rounds`` hot rounds are durable."""

    def __init__(self, db_dir: Path, shape: Shape, rounds: int) -> None:
        self.store = RecoveryStore.open(db_dir)
        self.shape = shape
        self.rounds = rounds
        self.killed = False

    def __call__(self, status: ClusterStatus) -> None:
        if self.killed or hot_rounds_done(self.store, self.shape) < self.rounds:
            return
        workers = [
            child
            for child in psutil.Process().children()
            if "worker_main" in " ".join(child.cmdline())
        ]
        workers.sort(key=lambda child: child.create_time())
        workers[-1].send_signal(signal.SIGKILL)
        self.killed = True

    def close(self) -> None:
        self.store.close()


def run_many_keys(
    db_dir: Path,
    shape: Shape,
    *,
    epoch_interval: timedelta,
    kill_after_rounds: int | None = None,
) -> RunSummary | None:
    """Run the flow on 2 workers with recovery on.

    With ``kill_after_rounds``, a worker is killed with SIGKILL once that many hot rounds
    are durable, and None is returned (the run fails, as it must).
    """
    flow = many_keys_flow(shape)
    config = RecoveryConfig(db_dir)
    if kill_after_rounds is None:
        return run_flow(
            flow, workers=WORKERS, epoch_interval=epoch_interval, recovery_config=config
        )
    killer = KillAt(db_dir, shape, kill_after_rounds)
    try:
        run_flow(
            flow,
            workers=WORKERS,
            epoch_interval=epoch_interval,
            recovery_config=config,
            on_status=killer,
        )
    except EngineRuntimeError as error:
        if not killer.killed or "killed by signal 9" not in str(error):
            raise
        return None
    finally:
        killer.close()
    raise AssertionError("the run ended before a worker could be killed")


# -- the previous GC and discard, as baselines ---------------------------------------------


def full_scan_gc(db_dir: Path, horizon: int) -> tuple[int, float]:
    """The GC before the GC index: scan every snapshot, delete in one transaction.

    The same rule (keep each key's newest snapshot at or before ``horizon``); returns
    how many snapshots it deleted and how long its write transaction took (workers'
    commits wait that long). Works on the store's LMDB files directly.
    """
    with lmdb.open(str(db_dir), max_dbs=8, map_size=1 << 40) as env:
        snapshots = env.open_db(b"snapshots")
        doomed: list[bytes] = []
        with env.begin() as txn:
            current, newest = b"", None
            for key in txn.cursor(db=snapshots).iternext(keys=True, values=False):
                ident = key[:-8]
                if ident != current:
                    current, newest = ident, None
                if int.from_bytes(key[-8:], "big") <= horizon:
                    if newest is not None:
                        doomed.append(newest)
                    newest = key
        started = time.perf_counter()
        with env.begin(write=True) as txn:
            for key in doomed:
                txn.delete(key, db=snapshots)
        return len(doomed), time.perf_counter() - started


def full_scan_discard(db_dir: Path, resume: int) -> int:
    """How ``begin_execution`` found an abandoned future before the GC index.

    Reads every snapshot key (deleting the few it finds is left out); returns how
    many are at or after ``resume``.
    """
    with lmdb.open(str(db_dir), max_dbs=8, map_size=1 << 40) as env, env.begin() as txn:
        cursor = txn.cursor(db=env.open_db(b"snapshots", txn=txn))
        return sum(
            1
            for key in cursor.iternext(keys=True, values=False)
            if int.from_bytes(key[-8:], "big") >= resume
        )


# -- commit replay through the store API ---------------------------------------------------


def _replay_worker(
    db_dir: str, worker: int, shape: Shape, hot_epochs: int, results: Any, barrier: Any
) -> None:
    """One worker's commits: its keys at epochs 1..full_passes, its hot keys after.

    Workers close epochs together (the flow's exchange keeps them in step): a barrier
    before each commit does the same here.
    """
    own = range(worker, shape.keys, WORKERS)
    hot = range(worker, min(shape.hot_keys, shape.keys), WORKERS)
    timings: list[tuple[int, int, float]] = []
    with RecoveryStore.open(db_dir) as store:
        writer = store.epoch_writer(1, worker)
        epoch = 1
        for count in [own] * shape.full_passes + [hot] * hot_epochs:
            snapshots = [(STATE_STEP, key_name(i), epoch, epoch) for i in count]
            barrier.wait()
            started = time.perf_counter()
            writer.commit_epoch(epoch + 1, snapshots)
            timings.append((epoch, len(snapshots), time.perf_counter() - started))
            epoch += 1
    results.put((worker, timings))


def replay_commits(db_dir: Path, shape: Shape, hot_epochs: int) -> list[tuple[int, int, float]]:
    """Commit like the flow's 2 workers (2 processes at once); (epoch, keys, seconds) each."""
    with RecoveryStore.open(db_dir) as store, store.lock_for_execution():
        store.begin_execution(FLOW_ID, "replay", worker_count=WORKERS, state_steps={STATE_STEP})
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    barrier = context.Barrier(WORKERS)
    processes = [
        context.Process(
            target=_replay_worker, args=(str(db_dir), w, shape, hot_epochs, results, barrier)
        )
        for w in range(WORKERS)
    ]
    for process in processes:
        process.start()
    timings = [t for _ in processes for t in results.get(timeout=3600)[1]]
    for process in processes:
        process.join()
        assert process.exitcode == 0, f"replay worker exited with {process.exitcode}"
    return timings


def commit_hot_epoch(db_dir: Path, shape: Shape, epoch: int) -> None:
    """Both workers commit ``epoch`` for the hot keys (so the durable frontier moves)."""
    with RecoveryStore.open(db_dir) as store:
        for worker in range(WORKERS):
            hot = range(worker, min(shape.hot_keys, shape.keys), WORKERS)
            store.epoch_writer(1, worker).commit_epoch(
                epoch + 1, [(STATE_STEP, key_name(i), epoch, epoch) for i in hot]
            )


def drop_gc_index(db_dir: Path) -> None:
    """Make a store look like one of the previous format (no GC index, format 2)."""
    with lmdb.open(str(db_dir), max_dbs=8, map_size=1 << 40) as env, env.begin(write=True) as txn:
        txn.drop(env.open_db(b"written", txn=txn), delete=True)
        txn.put(b"format", b"2", db=env.open_db(b"meta", txn=txn))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def _fresh(root: Path, name: str) -> Path:
    path = root / name
    init_db_dir(path)
    return path


def _store_bytes(db_dir: Path) -> int:
    return (db_dir / "data.mdb").stat().st_size


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    (target / "execution.lock").unlink(missing_ok=True)
    return target


# -- the table -----------------------------------------------------------------------------


def _size(count: float) -> str:
    return f"{count / 2**20:,.0f} MiB"


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} | {max(values):.3f} | {len(values)}"


def _pickle_seconds(keys: int) -> tuple[float, float]:
    """Seconds to pickle and to unpickle a plain dict of ``keys`` keys (the floors)."""
    states = {key_name(i): 2 for i in range(keys)}
    started = time.perf_counter()
    data = pickle.dumps(states, protocol=5)
    dumps_s = time.perf_counter() - started
    states.clear()
    started = time.perf_counter()
    pickle.loads(data)
    return dumps_s, time.perf_counter() - started


def _commit_section(root: Path, shape: Shape, hot_epochs: int) -> tuple[Path, list[str]]:
    """Commit times through the store API, with and without the GC index; the pickle floor."""
    replayed = _fresh(root, "replay")
    timings = replay_commits(replayed, shape, hot_epochs)
    plain = _fresh(root, "replay-plain")
    drop_gc_index(plain)
    plain_timings = replay_commits(plain, shape, hot_epochs)
    shutil.rmtree(plain)
    dumps_s, _ = _pickle_seconds(shape.keys)
    lines = [
        f"### Commit time per epoch ({WORKERS} workers committing at once, through the store API)",
        "",
        "| commit | keys per worker | median s | max s | commits |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, rows in (("with GC index", timings), ("without GC index", plain_timings)):
        big = [seconds for epoch, _, seconds in rows if epoch <= shape.full_passes]
        small = [seconds for epoch, _, seconds in rows if epoch > shape.full_passes]
        lines.append(f"| all keys, {label} | {shape.keys // WORKERS:,} | {_stats(big)} |")
        lines.append(f"| hot keys, {label} | {shape.hot_keys // WORKERS:,} | {_stats(small)} |")
    lines += [
        f"| baseline: `pickle.dumps` of a dict of all {shape.keys:,} keys | {shape.keys:,} "
        f"| {dumps_s:.3f} | | 1 |",
        "",
        f"Replayed store: {_size(_store_bytes(replayed))} on disk before GC.",
        "",
    ]
    return replayed, lines


def _gc_row(label: str, result: Any, seconds: float) -> str:
    return (
        f"| {label} | {result.method} | {result.deleted_snapshots:,} | {result.keys_visited:,} "
        f"| {result.transactions} | {result.longest_transaction_s:.3f} | {seconds:.3f} |"
    )


def _gc_section(root: Path, replayed: Path, shape: Shape, hot_epochs: int) -> list[str]:
    """GC per call on copies of the replayed store: this GC vs the previous one."""
    lines = [
        "### GC time per call (copies of the replayed store)",
        "",
        "| GC call | method | deleted | keys read | write txns | longest txn s | seconds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    frontier = shape.full_passes + hot_epochs + 1
    ours, forced, old = (_copy(replayed, root / name) for name in ("gc-new", "gc-inc", "gc-old"))
    with RecoveryStore.open(ours) as store:
        result, seconds = _timed(store.gc)
    lines.append(_gc_row("first GC (every key written twice since)", result, seconds))
    with RecoveryStore.open(forced) as store:
        result, seconds = _timed(lambda: store.gc(method="incremental"))
    lines.append(_gc_row("first GC, incremental forced", result, seconds))
    shutil.rmtree(forced)
    (deleted, txn_s), seconds = _timed(lambda: full_scan_gc(old, frontier - 1))
    lines.append(
        f"| first GC, previous GC (full scan) | scan | {deleted:,} | all | 1 | {txn_s:.3f} "
        f"| {seconds:.3f} |"
    )
    ours_s, old_s = [], []
    for _ in range(5):  # one more hot epoch each time, then GC
        for path in (ours, old):
            commit_hot_epoch(path, shape, frontier)
        frontier += 1
        with RecoveryStore.open(ours) as store:
            result, seconds = _timed(store.gc)
        ours_s.append(seconds)
        started = time.perf_counter()
        deleted, txn_s = full_scan_gc(old, frontier - 1)
        old_s.append(time.perf_counter() - started)
    lines.append(_gc_row("later GC (one hot epoch since), median of 5", result, median(ours_s)))
    lines.append(
        f"| later GC, previous GC (full scan), median of 5 | scan | {deleted:,} | all | 1 "
        f"| {txn_s:.3f} | {median(old_s):.3f} |"
    )
    with RecoveryStore.open(ours) as store:
        remaining = store.inspect()["steps"][STATE_STEP]["snapshots"]
    lines.append(f"\nStore after GC: {_size(_store_bytes(ours))} on disk, {remaining:,} snapshots.")
    shutil.rmtree(ours)
    shutil.rmtree(old)
    return lines


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def _flow_section(root: Path, shape: Shape, epoch_interval: timedelta) -> list[str]:
    """The real flow: a whole run; then a run with a worker killed, resumed; resume alone."""
    full_dir = _fresh(root, "flow")
    full, full_s = _timed(lambda: run_many_keys(full_dir, shape, epoch_interval=epoch_interval))
    assert full is not None
    assert stored_states(full_dir) == shape.expected_states()
    full_bytes = _store_bytes(full_dir)
    shutil.rmtree(full_dir)
    store_dir = _fresh(root, "killed")
    run_many_keys(
        store_dir, shape, epoch_interval=epoch_interval, kill_after_rounds=shape.hot_rounds // 2
    )
    stopped = _copy(store_dir, root / "stopped")
    with RecoveryStore.open(stopped) as store:
        resume = store.next_resume_epoch()
    abandoned, discard_s = _timed(lambda: full_scan_discard(stopped, resume))
    with RecoveryStore.open(stopped) as store, store.lock_for_execution():
        _, begin_s = _timed(
            lambda: store.begin_execution(
                FLOW_ID, "fp", worker_count=WORKERS, state_steps={STATE_STEP, INPUT_STEP}
            )
        )
    shutil.rmtree(stopped)
    resumed, resumed_s = _timed(
        lambda: run_many_keys(store_dir, shape, epoch_interval=epoch_interval)
    )
    assert resumed is not None
    assert stored_states(store_dir) == shape.expected_states()  # as the whole run
    with RecoveryStore.open(store_dir) as store:
        resume = store.next_resume_epoch()
        groups = store.executions()[-1].key_groups
        loads = []
        for _ in range(3):
            loaded, seconds = _timed(
                lambda: sum(
                    len(
                        store.load_keyed_states(
                            STATE_STEP, owned_groups(w, groups, WORKERS), resume
                        )
                    )
                    for w in range(WORKERS)
                )
            )
            loads.append(seconds)
    assert loaded == shape.keys, (loaded, shape.keys)
    _, loads_s = _pickle_seconds(shape.keys)
    assert resumed.workers_ready_s is not None
    return [
        "",
        "### The flow: a whole run; a run with a worker killed in the hot rounds, resumed",
        "",
        *_run_lines("whole run", full, full_s),
        f"  (store afterwards: {_size(full_bytes)} on disk)",
        *_run_lines("resumed run (after SIGKILL of worker 1)", resumed, resumed_s),
        "",
        "| resume | seconds |",
        "|---|---:|",
        f"| resumed run: start until both workers had loaded their keys (`workers_ready_s`) "
        f"| {resumed.workers_ready_s:.2f} |",
        f"| `begin_execution` on a copy of the killed run's store (discards {abandoned:,} "
        f"snapshots past the resume epoch, found by the GC index) | {begin_s:.3f} |",
        f"| baseline: the previous `begin_execution`'s scan for them (every key) "
        f"| {discard_s:.3f} |",
        f"| `load_keyed_states` of all {shape.keys:,} keys, one process, median of 3 "
        f"| {median(loads):.2f} |",
        f"| baseline: `pickle.loads` of a dict of all {shape.keys:,} keys | {loads_s:.2f} |",
        "",
        f"Store after the runs: {_size(_store_bytes(store_dir))} on disk. This process "
        "(supervisor, replay parent, baselines): max RSS "
        f"{_size(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}.",
    ]


def table(shape: Shape, hot_epochs: int, epoch_interval: timedelta) -> list[str]:
    """The results table (markdown lines)."""
    with tempfile.TemporaryDirectory(prefix="bench-many-keys-") as tmp:
        root = Path(tmp)
        replayed, lines = _commit_section(root, shape, hot_epochs)
        lines += _gc_section(root, replayed, shape, hot_epochs)
        shutil.rmtree(replayed)
        lines += _flow_section(root, shape, epoch_interval)
    return lines


def _run_lines(label: str, summary: RunSummary, wall_s: float) -> list[str]:
    workers = summary.per_worker
    commits = sum(w.commits for w in workers)
    commit_s = sum(w.commit_s for w in workers)
    latency = max((w.epoch_close_latency_max_s or 0.0) for w in workers)
    rss = max(w.max_rss_bytes for w in workers)
    return [
        f"- {label}: {wall_s:.1f} s, {summary.items_in:,} items, last epoch "
        f"{summary.last_epoch}; {commits} commits taking {commit_s:.2f} s in all "
        f"(mean {commit_s / max(commits, 1):.3f} s), largest epoch-close latency "
        f"{latency:.2f} s; worker max RSS {_size(rss)}"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keys", type=int, default=5_000_000)
    parser.add_argument("--hot-keys", type=int, default=1_000)
    parser.add_argument("--hot-rounds", type=int, default=10)
    parser.add_argument("--hot-epochs", type=int, default=10, help="hot epochs of the replay")
    parser.add_argument("--epoch-interval", type=float, default=1.0, metavar="S")
    parser.add_argument("--pace", type=float, default=1.0, metavar="S", help="between hot rounds")
    args = parser.parse_args(argv)
    shape = Shape(
        keys=args.keys, hot_keys=args.hot_keys, hot_rounds=args.hot_rounds, pace_s=args.pace
    )
    started = time.perf_counter()
    lines = table(shape, args.hot_epochs, timedelta(seconds=args.epoch_interval))
    print(
        f"## Many keys: {args.keys:,} keys, {WORKERS} workers, recovery on\n\n"
        f"Python {platform.python_version()}, lmdb {lmdb.__version__}; "
        f"`python -m bench.bench_many_keys {' '.join(argv or sys.argv[1:])}` "
        f"({time.perf_counter() - started:.0f} s)\n"
    )
    print("\n".join(lines))
    return 0


# -- pytest-benchmark ----------------------------------------------------------------------

SMALL = Shape(keys=100_000, hot_keys=500, hot_rounds=4, pace_s=0.1)


def test_commit_all_keys(benchmark: Any, tmp_path: Path) -> None:
    counter = iter(range(100))

    def commit() -> None:
        store_dir = _fresh(tmp_path, f"c{next(counter)}")
        with RecoveryStore.open(store_dir) as store:
            store.begin_execution(FLOW_ID, "fp", worker_count=1)
            snapshots = [(STATE_STEP, key_name(i), 1, 1) for i in range(SMALL.keys)]
            store.epoch_writer(1, 0).commit_epoch(2, snapshots)

    benchmark.group = "many_keys_commit"
    benchmark.pedantic(commit, rounds=3, iterations=1)


@pytest.mark.parametrize("method", ["ours", "previous"])
def test_gc_after_a_hot_epoch(benchmark: Any, tmp_path: Path, method: str) -> None:
    """A GC with one few-key epoch pending, on a store of SMALL.keys keys."""
    store_dir = _fresh(tmp_path, "gc")
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution(FLOW_ID, "fp", worker_count=1)
        writer = store.epoch_writer(1, 0)
        writer.commit_epoch(2, [(STATE_STEP, key_name(i), 1, 1) for i in range(SMALL.keys)])
        store.gc()
    epochs = iter(range(2, 100))

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        epoch = next(epochs)
        with RecoveryStore.open(store_dir) as store:
            hot = [(STATE_STEP, key_name(i), epoch, epoch) for i in range(SMALL.hot_keys)]
            store.epoch_writer(1, 0).commit_epoch(epoch + 1, hot)
        return (epoch,), {}

    def gc(epoch: int) -> None:
        if method == "previous":
            full_scan_gc(store_dir, epoch)
        else:
            with RecoveryStore.open(store_dir) as store:
                store.gc()

    benchmark.group = "many_keys_gc"
    benchmark.pedantic(gc, setup=setup, rounds=5, iterations=1)


def test_flow_many_keys(benchmark: Any, tmp_path: Path) -> None:
    counter = iter(range(100))

    def run() -> None:
        store_dir = _fresh(tmp_path, f"f{next(counter)}")
        run_many_keys(store_dir, SMALL, epoch_interval=timedelta(seconds=0.5))

    benchmark.group = "many_keys_flow"
    benchmark.pedantic(run, rounds=1, iterations=1)


if __name__ == "__main__":
    sys.exit(main())
