"""Real-job benchmarks: a JSON-log window job and a one-file word count.

Every variant reads the same generated file (see :mod:`bench.jobs`) and must compute
the same result as the plain Python loop; that is checked, not assumed. Variants: the
loop (and ``collections.Counter`` for the word count), a ``multiprocessing.Pool(2)``
map-reduce over byte ranges, shmflow (``run_main`` in-process; ``run_flow`` on 1 and
2 worker processes), Bytewax 0.21.1 (``run_main``; 2 workers in one process; 2
processes) and Pathway 0.33 (1 and 2 threads). Bytewax and Pathway are skipped, with
the reason, when they are not installed (``pip install -e '.[bench]'``).

Run with pytest-benchmark on the small inputs (``pytest bench/bench_jobs.py``), or as a
script that measures every variant in one run, interleaving the variants across rounds,
and prints markdown tables of medians and ratios:

    python -m bench.bench_jobs --table [--size small|full] [--rounds R] [--only NAME]

``NAME`` is a job (``log``, ``words``) or variants (``shmflow-2w``, ``pathway``...; a
prefix selects several, commas separate several: ``pool,shmflow``); the loop is always
measured, as the reference.

What the seconds are: in-process variants, the call (flow built beforehand); ``run_flow``
and Pool, the call including starting the worker processes; Bytewax on 2 workers and
Pathway, run in subprocesses, the engine's run call inside them (interpreter start and
imports excluded; for Bytewax on 2 processes the slower process).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench import jobs
from bench._bytecode import compile_project

# -- variants ----------------------------------------------------------------------------------

Runner = Callable[[Path], tuple[float, Any]]
"""input file -> (seconds, results)."""


@dataclass(frozen=True)
class Variant:
    """One way of running a job."""

    name: str
    label: str
    run: Runner
    needs: str | None = None  # "bytewax" or "pathway": skipped when not installed


@dataclass(frozen=True)
class Job:
    """A job: how to write its input, how many lines per size, and its variants."""

    name: str
    title: str
    file_name: str
    write: Callable[[Path, int], None]
    lines: Callable[[jobs.JobSize], int]
    variants: tuple[Variant, ...]


def _timed(fn: Callable[[Path], Any]) -> Runner:
    def run(path: Path) -> tuple[float, Any]:
        started = time.perf_counter()
        results = fn(path)
        return time.perf_counter() - started, results

    return run


def _shmflow(
    build: Callable[..., Any],
    finish: Callable[[list[Any]], Any],
    workers: int | None,
    **options: Any,
) -> Runner:
    """``workers=None``: ``run_main`` in this process; else ``run_flow`` on that many."""

    def run(path: Path) -> tuple[float, Any]:
        from engine import run_flow
        from engine.testing import run_main

        out: list[Any] = []
        flow = build(jobs.shmflow_api(), path, out, **options)
        started = time.perf_counter()
        if workers is None:
            run_main(flow)
        else:
            run_flow(flow, workers=workers)
        return time.perf_counter() - started, finish(out)

    return run


def _bytewax_in_process(build: Callable[..., Any], finish: Callable[[list[Any]], Any]) -> Runner:
    def run(path: Path) -> tuple[float, Any]:
        from bytewax.testing import run_main

        out: list[Any] = []
        flow = build(jobs.bytewax_api(), path, out)
        started = time.perf_counter()
        run_main(flow)
        return time.perf_counter() - started, finish(out)

    return run


def _bytewax_cluster(job: str, processes: int, workers_per_process: int) -> Runner:
    def run(path: Path) -> tuple[float, Any]:
        return jobs.run_bytewax_cluster(job, path, processes, workers_per_process)

    return run


def _pathway(job: str, threads: int) -> Runner:
    def run(path: Path) -> tuple[float, Any]:
        return jobs.run_pathway(job, path, threads)

    return run


def _engine_variants(build: Callable[..., Any], finish: Callable[..., Any]) -> list[Variant]:
    return [
        Variant(
            "shmflow-run_main", "shmflow `run_main` (in-process)", _shmflow(build, finish, None)
        ),
        Variant("shmflow-1w", "shmflow `run_flow`, 1 worker process", _shmflow(build, finish, 1)),
        Variant("shmflow-2w", "shmflow `run_flow`, 2 worker processes", _shmflow(build, finish, 2)),
    ]


def _other_engines(
    job: str, build: Callable[..., Any], finish: Callable[..., Any]
) -> list[Variant]:
    return [
        Variant(
            "bytewax-1w", "Bytewax 0.21.1 `run_main`", _bytewax_in_process(build, finish), "bytewax"
        ),
        Variant(
            "bytewax-2w",
            "Bytewax 0.21.1, 1 process x 2 workers (`-w 2`)",
            _bytewax_cluster(job, 1, 2),
            "bytewax",
        ),
        Variant(
            "bytewax-2p",
            "Bytewax 0.21.1, 2 processes (`-p 2`)",
            _bytewax_cluster(job, 2, 1),
            "bytewax",
        ),
        Variant("pathway-1t", "Pathway 0.33.0, 1 thread", _pathway(job, 1), "pathway"),
        Variant("pathway-2t", "Pathway 0.33.0, 2 threads", _pathway(job, 2), "pathway"),
    ]


LOG = Job(
    name="log",
    title="JSON-log windows (json.loads + fromisoformat, 1-minute tumbling windows per path)",
    file_name="access.jsonl",
    write=jobs.write_access_log,
    lines=lambda size: size.log_lines,
    variants=(
        Variant("loop", "plain Python loop (dict)", _timed(jobs.log_loop)),
        Variant("pool", "`multiprocessing.Pool(2)` map-reduce", _timed(jobs.log_pool)),
        *_engine_variants(jobs.log_flow, jobs.log_results),
        Variant(
            "shmflow-2w-split",
            "shmflow `run_flow`, 2 workers, file read in byte ranges",
            _shmflow(jobs.log_flow, jobs.log_results, 2, split=True),
        ),
        *_other_engines("log", jobs.log_flow, jobs.log_results),
    ),
)

WORDS = Job(
    name="words",
    title="One-file word count (split, count per word; 10k vocabulary)",
    file_name="words.txt",
    write=jobs.write_words,
    lines=lambda size: size.word_lines,
    variants=(
        Variant("loop", "plain Python loop (dict)", _timed(jobs.words_loop)),
        Variant("counter", "`collections.Counter` per line", _timed(jobs.words_counter)),
        Variant("pool", "`multiprocessing.Pool(2)` map-reduce", _timed(jobs.words_pool)),
        *_engine_variants(jobs.words_flow, jobs.words_results),
        Variant(
            "shmflow-2w-redistribute",
            "shmflow `run_flow`, 2 workers, `redistribute` lines",
            _shmflow(jobs.words_flow, jobs.words_results, 2, redistribute=True),
        ),
        *_other_engines("words", jobs.words_flow, jobs.words_results),
    ),
)

JOBS = {job.name: job for job in (LOG, WORDS)}

#: (comparison, our variant, their variant): ratio = their seconds / our seconds.
RATIOS = [
    ("shmflow `run_main` vs plain loop", "shmflow-run_main", "loop"),
    ("shmflow 1 worker process vs plain loop", "shmflow-1w", "loop"),
    ("shmflow 2 workers vs plain loop", "shmflow-2w", "loop"),
    ("shmflow 2 workers vs Pool(2)", "shmflow-2w", "pool"),
    ("shmflow 2 workers (redistribute) vs Pool(2)", "shmflow-2w-redistribute", "pool"),
    ("shmflow `run_main` vs Bytewax `run_main`", "shmflow-run_main", "bytewax-1w"),
    ("shmflow 2 workers vs Bytewax 2 processes", "shmflow-2w", "bytewax-2p"),
    ("shmflow 2 workers vs Bytewax 2 workers in 1 process", "shmflow-2w", "bytewax-2w"),
    ("shmflow `run_main` vs Pathway 1 thread", "shmflow-run_main", "pathway-1t"),
    ("shmflow 2 workers vs Pathway 2 threads", "shmflow-2w", "pathway-2t"),
    ("shmflow 2 workers vs 1 worker process", "shmflow-2w", "shmflow-1w"),
    ("shmflow 2 workers, split file vs plain loop", "shmflow-2w-split", "loop"),
    ("shmflow 2 workers, split file vs Pool(2)", "shmflow-2w-split", "pool"),
    ("shmflow 2 workers (redistribute) vs 1 worker", "shmflow-2w-redistribute", "shmflow-1w"),
    ("Bytewax 2 processes vs Bytewax 1 worker", "bytewax-2p", "bytewax-1w"),
    ("Pathway 2 threads vs 1 thread", "pathway-2t", "pathway-1t"),
]  # fmt: skip


def missing(needs: str | None) -> str | None:
    """Why a variant cannot run here, or None."""
    if needs is None or importlib.util.find_spec(needs) is not None:
        return None
    return f"{needs} is not installed (pip install -e '.[bench]')"


def make_input(job: Job, directory: Path, size: jobs.JobSize) -> Path:
    path = directory / job.file_name
    job.write(path, job.lines(size))
    return path


# -- pytest-benchmark (small inputs) -------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """Job name -> (small input file, the loop's results)."""
    directory = tmp_path_factory.mktemp("jobs")
    made = {}
    for job in JOBS.values():
        path = make_input(job, directory, jobs.SIZES["small"])
        _, expected = job.variants[0].run(path)
        made[job.name] = (path, expected)
    return made


CASES = [(job.name, variant) for job in JOBS.values() for variant in job.variants]


@pytest.mark.parametrize(
    ("job_name", "variant"), CASES, ids=[f"{job}-{variant.name}" for job, variant in CASES]
)
def test_job(
    benchmark: Any, inputs: dict[str, tuple[Path, Any]], job_name: str, variant: Variant
) -> None:
    reason = missing(variant.needs)
    if reason is not None:
        pytest.skip(reason)
    path, expected = inputs[job_name]
    benchmark.group = job_name
    benchmark.extra_info["lines"] = JOBS[job_name].lines(jobs.SIZES["small"])
    _, results = benchmark.pedantic(variant.run, args=(path,), rounds=1, iterations=1)
    assert results == expected


def test_parallel_ceiling_is_a_speed_up_of_at_most_the_process_count(
    inputs: dict[str, tuple[Path, Any]],
) -> None:
    ceiling = jobs.parallel_ceiling(inputs["log"][0], processes=2, lines=2_000)
    assert 0.5 < ceiling <= 2.0


def test_only_selects_variants_by_comma_separated_prefixes() -> None:
    names = [v.name for v in _selected(JOBS["words"], "pool,shmflow-2w")]
    assert names == ["loop", "pool", "shmflow-2w", "shmflow-2w-redistribute"]
    assert _selected(JOBS["words"], "nothing") == []


# -- script mode: one run, one table per job ---------------------------------------------------


def machine() -> str:
    try:  # engine.tools is being reorganised: do not depend on where machine() lives
        from engine.tools.flows import machine as engine_machine

        return engine_machine()
    except (ImportError, AttributeError):
        return (
            f"{platform.machine()}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}"
        )


@dataclass
class Measured:
    variant: Variant
    seconds: list[float]
    skipped: str | None = None


def _selected(job: Job, only: str | None) -> list[Variant]:
    if only is None or only == job.name:
        return list(job.variants)
    prefixes = tuple(only.split(","))
    chosen = [v for v in job.variants if v.name == "loop" or v.name.startswith(prefixes)]
    return chosen if len(chosen) > 1 else []


def measure(job: Job, path: Path, variants: list[Variant], rounds: int) -> list[Measured]:
    """Median-ready seconds of each variant, rounds interleaved; results checked."""
    measured = [Measured(v, [], missing(v.needs)) for v in variants]
    expected: Any = None
    for round_index in range(rounds):
        for entry in measured:
            if entry.skipped is not None:
                continue
            gc.collect()
            seconds, results = entry.variant.run(path)
            if expected is None:
                expected = results  # the loop runs first
            elif round_index == 0 and results != expected:
                raise AssertionError(
                    f"{job.name}: {entry.variant.name} computed different results than the loop"
                )
            entry.seconds.append(seconds)
            print(
                f"  round {round_index + 1}/{rounds} {job.name} {entry.variant.name}: "
                f"{seconds:.3f} s",
                file=sys.stderr,
                flush=True,
            )
    return measured


def _rate(lines: int, seconds: float) -> str:
    rate = lines / seconds
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k"


def job_table(job: Job, lines: int, measured: list[Measured]) -> list[str]:
    medians = {m.variant.name: statistics.median(m.seconds) for m in measured if m.seconds}
    loop = medians["loop"]
    out = [
        "| variant | lines/s (median) | seconds median (min-max) | vs loop |",
        "|---|---:|---:|---:|",
    ]
    for entry in measured:
        if entry.skipped is not None:
            out.append(f"| {entry.variant.label} | skipped: {entry.skipped} | | |")
            continue
        median = medians[entry.variant.name]
        spread = f"{min(entry.seconds):.3f}-{max(entry.seconds):.3f}"
        out.append(
            f"| {entry.variant.label} | {_rate(lines, median)} | {median:.3f} ({spread}) "
            f"| {loop / median:.2f}x |"
        )
    ratios = [
        f"| {label} | {medians[theirs] / medians[ours]:.2f}x |"
        for label, ours, theirs in RATIOS
        if ours in medians and theirs in medians
    ]
    if ratios:
        out += ["", "| comparison (throughput ratio) | ratio |", "|---|---:|", *ratios]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="measure and print the tables")
    parser.add_argument("--size", choices=sorted(jobs.SIZES), default="full")
    parser.add_argument("--rounds", type=int, default=None, help="default: 3 full, 1 small")
    parser.add_argument(
        "--only", default=None, help="a job (log, words) or variant prefixes, comma-separated"
    )
    args = parser.parse_args(argv)
    if not args.table:
        parser.print_help()
        return 2
    size = jobs.SIZES[args.size]
    rounds = args.rounds or (3 if args.size == "full" else 1)
    print(compile_project())
    print(f"Machine: {machine()}")
    print(f"Size: {args.size}; {rounds} round(s), variants interleaved; medians.\n")
    with tempfile.TemporaryDirectory(prefix="shmflow-jobs-") as tmp:
        for job in JOBS.values():
            variants = _selected(job, args.only)
            if not variants:
                continue
            path = make_input(job, Path(tmp), size)
            lines = job.lines(size)
            megabytes = path.stat().st_size / 1e6
            print(f"### {job.title}: {lines:,} lines ({megabytes:.1f} MB)\n")
            if job.name == "log":
                ceiling = jobs.parallel_ceiling(path)
                print(
                    f"Parallel ceiling here: two processes parsing log lines at once are "
                    f"{ceiling:.2f}x one alone (2.00x on two idle cores).\n"
                )
            print("\n".join(job_table(job, lines, measure(job, path, variants, rounds))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
