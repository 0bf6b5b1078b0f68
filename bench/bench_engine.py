"""Engine benchmarks: one worker in-process, N worker processes, start-up.

Run with pytest-benchmark (``pytest bench/bench_engine.py --benchmark-only``) or as a
script that measures everything in one run and prints a markdown table of medians and
ratios against the baselines measured in the same run:

    python -m bench.bench_engine --table [--rounds 3] [--bytewax] [--flows passthrough,...]

``--bytewax`` adds Bytewax 0.21.1 running the same flows (install the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from bench import flows
from bench._bytecode import compile_project
from engine import run_flow
from engine.testing import run_main
from engine.tools.flows import machine

# -- pytest-benchmark ------------------------------------------------------------------------

SINGLE = sorted(flows.FLOWS)
K = TypeVar("K")


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return {name: make() for name, (make, _, _) in flows.FLOWS.items()}


@pytest.mark.parametrize("name", SINGLE)
def test_single_worker(benchmark: Any, data: dict[str, Any], name: str) -> None:
    _, build, _ = flows.FLOWS[name]
    items = data[name]
    flow = build(items)
    benchmark.group = name
    benchmark.extra_info["items"] = len(items)
    benchmark.pedantic(lambda: run_main(flow), rounds=3, iterations=1)


@pytest.mark.parametrize("name", SINGLE)
def test_baseline(benchmark: Any, data: dict[str, Any], name: str) -> None:
    _, _, baseline = flows.FLOWS[name]
    items = data[name]
    benchmark.group = name
    benchmark.extra_info["items"] = len(items)
    benchmark.pedantic(lambda: baseline(items), rounds=3, iterations=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_cpu_bound(benchmark: Any, workers: int) -> None:
    items = flows.ints(200_000)
    benchmark.group = "cpu_bound"
    benchmark.pedantic(
        lambda: run_flow(flows.cpu_flow(items), workers=workers), rounds=2, iterations=1
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_wordcount_cluster(benchmark: Any, workers: int) -> None:
    items = flows.words(2_000_000)
    benchmark.group = "wordcount_cluster"
    benchmark.pedantic(
        lambda: run_flow(flows.count_final_flow(items), workers=workers), rounds=2, iterations=1
    )


def test_startup_two_workers(benchmark: Any) -> None:
    benchmark.group = "startup"
    benchmark.pedantic(lambda: run_flow(flows.empty_flow(), workers=2), rounds=5, iterations=1)


# -- script mode: one run, one table -----------------------------------------------------------


def _median_time(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _bytewax_runner(name: str) -> Callable[[Any], Callable[[], Any]] | None:
    try:
        from bench import bytewax_flows
    except ImportError:
        return None
    return bytewax_flows.RUNNERS.get(name)


def _interleaved_medians(runs: dict[K, Callable[[], Any]], rounds: int) -> dict[K, float]:
    """Median seconds of each run, the runs taking turns round by round.

    On a shared, noisy machine a slow spell then hits every contender alike instead of
    whichever happened to be measured during it.
    """
    times: dict[K, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(ts) for name, ts in times.items()}


def single_worker_table(
    rounds: int, with_bytewax: bool, names: list[str] | None = None
) -> list[str]:
    header = "| flow | items | baseline items/s | shmflow items/s | shmflow / baseline |"
    rule = "|---|---:|---:|---:|---:|"
    if with_bytewax:
        header += " Bytewax 0.21.1 items/s | shmflow / Bytewax |"
        rule += "---:|---:|"
    lines = [header, rule]
    for name in names or SINGLE:
        make, build, baseline = flows.FLOWS[name]
        items = make()
        flow = build(items)  # partitioning the data is not part of the measurement
        runs: dict[str, Callable[[], Any]] = {
            "baseline": functools.partial(baseline, items),
            "shmflow": functools.partial(run_main, flow),
        }
        runner = _bytewax_runner(name) if with_bytewax else None
        if runner is not None:
            runs["bytewax"] = runner(items)  # its flow is built outside the timing
        medians = _interleaved_medians(runs, rounds)
        base, ours = medians["baseline"], medians["shmflow"]
        n = len(items)
        row = (
            f"| {name} | {n:,} | {n / base / 1e6:.2f} M | {n / ours / 1e6:.2f} M "
            f"| {base / ours:.0%} |"
        )
        if with_bytewax:
            theirs = medians.get("bytewax")
            if theirs is None:
                row += " n/a | n/a |"
            else:
                row += f" {n / theirs / 1e6:.2f} M | {theirs / ours:.1f}x |"
        lines.append(row)
        print(row, file=sys.stderr, flush=True)
    return lines


def cluster_table(rounds: int, with_bytewax: bool) -> list[str]:
    lines = [
        "| flow | items | 1 worker items/s | 2 workers items/s | speed-up 2 vs 1 |",
        "|---|---:|---:|---:|---:|",
    ]
    # Each worker generates its own partitions' input (GeneratedSource), so shipping a
    # big list of input items to the workers is not part of what is measured.
    from engine.tools.flows import (
        GeneratedSource,
        generated_event,
        generated_int,
        generated_word,
    )

    cases: list[tuple[str, Any, Callable[[Any], Any]]] = [
        (
            "cpu_bound (~20 us/item)",
            GeneratedSource(generated_int, 200_000, partitions=8, batch_size=1_000),
            flows.cpu_flow,
        ),
        (
            "wordcount_count_final",
            GeneratedSource(generated_word, 2_000_000),
            flows.count_final_flow,
        ),
        (
            "wordcount_stateful_map",
            GeneratedSource(generated_word, 2_000_000),
            flows.stateful_map_flow,
        ),
        ("window_sum", GeneratedSource(generated_event, 1_000_000), flows.window_flow),
    ]
    for name, items, build in cases:
        flow = build(items)
        times = _interleaved_medians(
            {w: functools.partial(run_flow, flow, workers=w) for w in (1, 2)}, rounds
        )
        n = items.n
        row = (
            f"| {name} | {n:,} | {n / times[1] / 1e6:.2f} M | {n / times[2] / 1e6:.2f} M "
            f"| {times[1] / times[2]:.2f}x |"
        )
        lines.append(row)
        print(row, file=sys.stderr, flush=True)
    startup = _median_time(lambda: run_flow(flows.empty_flow(), workers=2), max(rounds, 5))
    lines.append("")
    lines.append(f"Start and stop of an empty 2-worker cluster: {startup * 1000:.0f} ms (median).")
    summary = run_flow(
        flows.count_final_flow(GeneratedSource(generated_word, 2_000_000)), workers=2
    )
    lines.append(
        f"Word count on 2 workers moved {summary.items_exchanged:,} pre-aggregated "
        f"(word, count) pairs between workers for {summary.items_in:,} input words."
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", action="store_true", help="measure and print the tables")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bytewax", action="store_true", help="add Bytewax 0.21.1 columns")
    parser.add_argument("--only", choices=["single", "cluster"], default=None)
    parser.add_argument(
        "--flows",
        type=lambda text: text.split(","),
        default=None,
        help=f"comma-separated one-worker flows (default all: {','.join(SINGLE)})",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.flows or ()) - set(SINGLE))
    if unknown:
        parser.error(f"unknown flows {', '.join(unknown)}; choose from {', '.join(SINGLE)}")
    if not args.table:
        parser.print_help()
        return 2
    print(compile_project())
    print(f"Machine: {machine()}\n")
    if args.only in (None, "single"):
        print("One worker, in-process (`run_main`), same data as the baseline:\n")
        print("\n".join(single_worker_table(args.rounds, args.bytewax, args.flows)) + "\n")
    if args.only in (None, "cluster"):
        print("Worker processes (`engine.run_flow`), 1 vs 2 workers:\n")
        print("\n".join(cluster_table(args.rounds, args.bytewax)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
