"""Recovery benchmarks: the cost of snapshots, and how fast a big store resumes.

    python -m bench.bench_recovery --table

1. Word count (2,000,000 words, 10,000-word vocabulary) on 2 workers with 1-second
   epochs, recovery on vs off, in the same run.
2. Resume time of a store holding 1,000,000 keys: a `stateful_map` flow first fills the
   store, then a resumed run on 2 workers loads every key (time to the end of a run with
   no new input, start-up included, and the load alone).
3. Snapshot write throughput: keys committed per second in one epoch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import engine.operators as op
from engine import run_flow
from engine.dataflow import Dataflow
from engine.tools.flows import CountingSink, GeneratedSource, count_final_flow, words
from recovery import RecoveryConfig, RecoveryStore, init_db_dir, owned_groups

ONE_SECOND = timedelta(seconds=1)


def _median(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _fresh_store(root: Path, name: str) -> RecoveryConfig:
    path = root / name
    init_db_dir(path)
    return RecoveryConfig(path)


def wordcount_overhead(rounds: int) -> tuple[float, float]:
    """Seconds per run (median) without and with recovery, 2 workers, 1 s epochs."""
    flow = count_final_flow(words(2_000_000))
    with tempfile.TemporaryDirectory() as root:
        stores = iter([_fresh_store(Path(root), f"wc{i}") for i in range(rounds)])
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):  # interleaved, so machine drift hits both alike
            for recovery in (False, True):
                store = next(stores) if recovery else None
                started = time.perf_counter()
                run_flow(flow, workers=2, epoch_interval=ONE_SECOND, recovery_config=store)
                times[recovery].append(time.perf_counter() - started)
    return statistics.median(times[False]), statistics.median(times[True])


def _key_item(i: int) -> tuple[str, int]:
    return f"key-{i:07d}", i


def _keys_flow(keys: int) -> Dataflow:
    """A stateful_map touching ``keys`` keys once each (input generated in the workers)."""
    flow = Dataflow("many_keys")
    s = op.input("inp", flow, GeneratedSource(_key_item, keys, partitions=4, batch_size=50_000))
    op.output("out", op.stateful_map("keep", s, lambda st, v: (v, None)), CountingSink())
    return flow


def resume_time(keys: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as root:
        store = _fresh_store(Path(root), "keys")
        flow = _keys_flow(keys)
        started = time.perf_counter()
        run_flow(flow, workers=2, epoch_interval=timedelta(seconds=60), recovery_config=store)
        fill = time.perf_counter() - started
        started = time.perf_counter()
        # Resumes after the end of the input: every worker loads its keys, then stops.
        summary = run_flow(flow, workers=2, recovery_config=store)
        resumed = time.perf_counter() - started
        assert summary.workers_ready_s is not None
        with RecoveryStore.open(store.db_dir) as opened:
            resume_epoch = opened.next_resume_epoch()
            key_groups = opened.executions()[-1].key_groups
            started = time.perf_counter()
            loaded = 0
            for worker in range(2):
                loaded += len(
                    opened.load_keyed_states(
                        "many_keys.keep.stateful_batch",
                        owned_groups(worker, key_groups, 2),
                        resume_epoch,
                    )
                )
            load = time.perf_counter() - started
            started = time.perf_counter()
            opened.gc()  # what the end of every execution does (a scan of the store)
            gc = time.perf_counter() - started
        assert loaded == keys
    return {
        "fill_s": fill,
        "resume_s": summary.workers_ready_s,
        "resumed_run_s": resumed,
        "load_s": load,
        "gc_s": gc,
    }


def snapshot_throughput(keys: int, *, again: bool = False) -> float:
    """Keys per second of one worker committing ``keys`` snapshots in one epoch.

    With ``again`` the same keys were committed in the epoch before (a job whose keys
    change every epoch) and the second commit is timed.
    """
    with tempfile.TemporaryDirectory() as root:
        store_config = _fresh_store(Path(root), "tp")
        with RecoveryStore.open(store_config.db_dir) as store:
            with store.lock_for_execution():
                execution = store.begin_execution("tp", "fingerprint", 1)
            writer = store.epoch_writer(execution.execution_id, 0)
            names = [f"key-{i}" for i in range(keys)]
            epoch = 1
            if again:
                writer.commit_epoch(2, [("tp.step", k, 1, i) for i, k in enumerate(names)])
                epoch = 2
            snapshots = [("tp.step", k, epoch, i) for i, k in enumerate(names)]
            started = time.perf_counter()
            writer.commit_epoch(epoch + 1, snapshots)
            return keys / (time.perf_counter() - started)


# -- pytest-benchmark ------------------------------------------------------------------------


@pytest.mark.parametrize("recovery", [False, True])
def test_wordcount_recovery(benchmark: Any, recovery: bool, tmp_path: Path) -> None:
    flow = count_final_flow(words(2_000_000))
    counter = iter(range(100))

    def run() -> None:
        store = _fresh_store(tmp_path, f"s{next(counter)}") if recovery else None
        run_flow(flow, workers=2, epoch_interval=ONE_SECOND, recovery_config=store)

    benchmark.group = "wordcount_recovery"
    benchmark.pedantic(run, rounds=2, iterations=1)


def test_snapshot_throughput(benchmark: Any) -> None:
    benchmark.extra_info["keys_per_s"] = benchmark.pedantic(
        lambda: snapshot_throughput(100_000), rounds=2, iterations=1
    )


# -- script -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if not args.table:
        parser.print_help()
        return 2
    off, on = wordcount_overhead(args.rounds)
    n = 2_000_000
    print("| word count, 2 workers, 1 s epochs | seconds (median) | items/s |")
    print("|---|---:|---:|")
    print(f"| recovery off | {off:.2f} | {n / off / 1e6:.2f} M |")
    print(f"| recovery on | {on:.2f} | {n / on / 1e6:.2f} M |")
    print(f"\nThroughput lost to recovery: {1 - off / on:.1%}\n")
    times = resume_time(args.keys)
    print(
        f"Store of {args.keys:,} keys (filled in {times['fill_s']:.1f} s): resume time on 2 "
        f"workers, from the run's start until both workers had loaded their keys, "
        f"{times['resume_s']:.2f} s. The whole resumed run took "
        f"{times['resumed_run_s']:.2f} s, including the end-of-execution GC scan "
        f"({times['gc_s']:.2f} s); loading all keys in one process: {times['load_s']:.2f} s."
    )
    sizes = (10_000, 100_000, 1_000_000)
    for again, what in ((False, "new keys"), (True, "keys committed the epoch before")):
        rates = [snapshot_throughput(k, again=again) for k in sizes]
        print(
            f"Snapshot writes, one commit of {what}: "
            + ", ".join(
                f"{k:,} keys at {r / 1e3:,.0f} k keys/s" for k, r in zip(sizes, rates, strict=True)
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
