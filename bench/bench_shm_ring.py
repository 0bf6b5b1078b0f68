"""Throughput of the shm ring vs multiprocessing.Queue and Pipe, producer and consumer
in two processes.

pytest-benchmark::

    python -m pytest bench/bench_shm_ring.py --benchmark-only

One run of every case printing a markdown table of medians and ratios against
multiprocessing.Queue (about a minute)::

    python -m bench.bench_shm_ring --table
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `shm` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest

from bench._shm_workers import TRANSPORTS, WORKLOADS, Case, memcpy_round
from engine.tools.flows import machine

ROUNDS = 3


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_throughput(benchmark: Any, transport: str, workload: str) -> None:
    with Case(transport, workload) as case:
        case.run_round()  # warm-up: imports, page faults, first allocations
        benchmark.pedantic(case.run_round, rounds=ROUNDS, iterations=1)
    median = benchmark.stats.stats.median
    spec = WORKLOADS[workload]
    benchmark.extra_info["items_per_s"] = spec.items_per_round / median
    benchmark.extra_info["bytes_per_s"] = spec.bytes_per_round() / median
    benchmark.extra_info["messages_per_round"] = spec.messages


@pytest.mark.parametrize("workload", [w for w, spec in WORKLOADS.items() if spec.shape == "array"])
def test_memcpy_reference(benchmark: Any, workload: str) -> None:
    """One in-process copy of an array workload's bytes: what the ring is held against."""
    spec = WORKLOADS[workload]
    benchmark.pedantic(memcpy_round, args=(spec,), rounds=ROUNDS, iterations=1)
    benchmark.extra_info["bytes_per_s"] = spec.bytes_per_round() / benchmark.stats.stats.median


def measure(workload: str, rounds: int) -> dict[str, float]:
    """Median seconds per round of every transport for ``workload``.

    The transports' rounds are interleaved (queue, pipe, ring, queue, ...) after one
    warm-up each, so that load from elsewhere on the machine hits all of them alike.
    Array workloads also time ``"memcpy"``: one in-process copy of the same bytes.
    """
    spec = WORKLOADS[workload]
    with contextlib.ExitStack() as stack:
        cases = [stack.enter_context(Case(transport, workload)) for transport in TRANSPORTS]
        for case in cases:
            case.run_round()
        timings: dict[str, list[float]] = {transport: [] for transport in TRANSPORTS}
        if spec.shape == "array":
            timings["memcpy"] = []
        for _ in range(rounds):
            for case in cases:
                timings[case.transport].append(case.run_round())
            if spec.shape == "array":
                timings["memcpy"].append(memcpy_round(spec))
    return {transport: statistics.median(times) for transport, times in timings.items()}


def table(rounds: int) -> str:
    lines = [
        f"Machine: {machine()}",
        "",
        f"Median of {rounds} rounds per transport after one warm-up, rounds of the three "
        "transports interleaved; ratio = throughput / multiprocessing.Queue throughput "
        "in the same run. Arrays: `memcpy` is one in-process `np.copyto` of the same "
        "bytes, and `vs memcpy` the ring's bytes/s over it.",
        "",
        "| workload | transport | median s/round | items/s | MB/s | vs Queue | vs memcpy |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        spec = WORKLOADS[workload]
        payload = spec.bytes_per_round()
        medians = measure(workload, rounds)
        for transport, seconds in medians.items():
            ratio = medians["queue"] / seconds
            copy = medians.get("memcpy")
            of_copy = f"{copy / seconds:.2f}x" if copy is not None else ""
            lines.append(
                f"| {workload} | {transport} | {seconds:.4f} | "
                f"{spec.items_per_round / seconds:,.0f} | {payload / seconds / 1e6:,.1f} | "
                f"{ratio:.2f}x | {of_copy} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="run all cases, print a table")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    if not args.table:
        parser.print_help()
        return
    print(table(args.rounds))


if __name__ == "__main__":
    main()
