"""``shmflow bench``: the built-in benchmark flows against their baselines, in one run.

For each flow of :data:`engine.tools.flows.BENCHMARKS` the command measures, interleaved
over ``--repeat`` rounds, the python-loop and mp.Queue baselines, Bytewax 0.21.1 (when
installed) and shmflow at each worker count, and prints a table like ``shmflow tune``'s
with the ratio of shmflow's median items/s to each baseline's.

``--json`` prints one document, schema version :data:`BENCH_SCHEMA_VERSION` (fields are
only added within a version)::

    {
      "schema_version": 1, "kind": "bench",
      "size": "small" | "full", "repeat": int, "worker_counts": [int],
      "machine": str, "cpu_count": int, "note": str,
      "flows": [
        {"name": str, "description": str, "items": int,
         "baselines": {                 # keys: "python_loop", "mp_queue", "bytewax"
           "python_loop": {"label": str, "status": "ok" | "not installed" | "failed: ...",
                           "items_per_s": float | null, "runs_items_per_s": [float]}, ...},
         "results": [                   # one per worker count: the rows of shmflow tune
           {..., "ratios": {"python_loop": float | null, "mp_queue": ..., "bytewax": ...}}],
         "recommendation": {"workers": int, "best_workers": int,
                            "share_of_best": float, "reason": str},
         "late_note": str | null}       # as shmflow tune's: late share differs by count
      ]
    }
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import EngineRuntimeError
from engine.runtime.summary import si
from engine.tools.args import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    UsageParser,
    parse_repeat,
)
from engine.tools.flows import BENCHMARKS, SIZES, Benchmark, machine, queue_baseline
from engine.tools.tune.measure import CountFigures, Run, fold_runs, measure_run
from engine.tools.tune.recommend import (
    Recommendation,
    default_worker_counts,
    parse_worker_counts,
    recommend,
    workers_text,
)
from engine.tools.tune.report import (
    RATE_NOTE,
    bytecode_note,
    late_note,
    note_line,
    progress_printer,
    render_table,
    row_cells,
    row_document,
    table_header,
)

__all__ = ["BENCH_SCHEMA_VERSION", "FlowResult", "main", "run_benchmark"]

BENCH_SCHEMA_VERSION = 1


BENCH_NOTE = "built-in flows end in counting sinks; baselines measured in the same run"

#: Baselines in column order: key -> (column title, label).
BASELINES = {
    "python_loop": ("vs loop", "python loop, 1 process"),
    "mp_queue": ("vs mp.Queue", "mp.Queue, 2 processes"),
    "bytewax": ("vs Bytewax", "Bytewax 0.21.1, 1 worker"),
}


@dataclass
class Baseline:
    """One baseline's runs (empty when it could not run; ``status`` says why)."""

    label: str
    status: str = "ok"
    runs_items_per_s: list[float] = field(default_factory=list)

    @property
    def items_per_s(self) -> float | None:
        return statistics.median(self.runs_items_per_s) if self.runs_items_per_s else None

    def cell(self) -> str:
        rate = self.items_per_s
        return f"{si(rate)}" if rate is not None else f"n/a ({self.status})"


@dataclass
class FlowResult:
    """One benchmark flow: its baselines and its shmflow rows."""

    benchmark: Benchmark
    items: int
    baselines: dict[str, Baseline]
    rows: list[CountFigures]
    recommendation: Recommendation

    def ratios(self, row: CountFigures) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key, baseline in self.baselines.items():
            rate = baseline.items_per_s
            out[key] = row.median / rate if rate else None
        return out

    def as_json(self) -> dict[str, Any]:
        baselines = {
            key: {**asdict(b), "items_per_s": b.items_per_s} for key, b in self.baselines.items()
        }
        return {
            "name": self.benchmark.name,
            "description": self.benchmark.description,
            "items": self.items,
            "baselines": baselines,
            "results": [{**row_document(row), "ratios": self.ratios(row)} for row in self.rows],
            "recommendation": asdict(self.recommendation),
            "late_note": late_note(self.rows),
        }


def _seconds(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _bytewax_runner(name: str, items: list[Any]) -> tuple[Callable[[], Any] | None, str]:
    try:
        from engine.tools.bytewax_flows import BENCHMARK_RUNNERS
    except ImportError:
        return None, "not installed"
    return BENCHMARK_RUNNERS[name](items), "ok"


def run_benchmark(
    benchmark: Benchmark,
    size: str,
    worker_counts: Sequence[int],
    *,
    repeat: int = 1,
    on_run: Callable[[int, int, Run], None] | None = None,
) -> FlowResult:
    """Measure one built-in flow and its baselines, ``repeat`` rounds interleaved."""
    items = benchmark.make_data(size)
    n = len(items)
    flow = benchmark.build(items)  # partitioning the data is not timed
    baselines = {key: Baseline(label) for key, (_, label) in BASELINES.items()}
    bytewax, baselines["bytewax"].status = _bytewax_runner(benchmark.name, items)
    runs: dict[int, list[Run]] = {w: [] for w in worker_counts}
    for round_index in range(repeat):
        loop_s = _seconds(lambda: benchmark.loop(items, {}))
        baselines["python_loop"].runs_items_per_s.append(n / loop_s)
        queue_s = queue_baseline(items, benchmark.loop, benchmark.batch_size)
        baselines["mp_queue"].runs_items_per_s.append(n / queue_s)
        if bytewax is not None:
            baselines["bytewax"].runs_items_per_s.append(n / _seconds(bytewax))
        for workers in worker_counts:
            run = measure_run(flow, workers)
            runs[workers].append(run)
            if on_run is not None:
                on_run(round_index, workers, run)
    rows = fold_runs(runs)
    return FlowResult(benchmark, n, baselines, rows, recommend({r.workers: r.median for r in rows}))


def format_flow(result: FlowResult) -> str:
    """One flow's block of the table, for people."""
    bm = result.benchmark
    base_cells = "; ".join(f"{b.label} {b.cell()}" for b in result.baselines.values())
    header = table_header(result.rows[0].workers) + [title for title, _ in BASELINES.values()]
    rows = []
    for row in result.rows:
        ratios = result.ratios(row)
        rows.append(
            row_cells(row)
            + [f"{ratios[k]:.2f}x" if ratios[k] is not None else "n/a" for k in BASELINES]
        )
    return (
        f"{bm.name}: {bm.description}; {result.items:,} items\n"
        f"  baselines, items/s: {base_cells}\n"
        f"{render_table(header, rows, indent='  ')}\n"
        f"  recommendation: {workers_text(result.recommendation.workers)} -- "
        f"{result.recommendation.reason}\n"
        + textwrap.indent(note_line(late_note(result.rows)), "  ")
    )


def _flow_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise UsageError(
            f"unknown flow(s) {', '.join(unknown) or repr(text)}; choose from "
            + ", ".join(BENCHMARKS)
        )
    return list(dict.fromkeys(names))


def build_parser(prog: str = "shmflow bench") -> argparse.ArgumentParser:
    parser = UsageParser(
        prog=prog,
        description="Run the built-in benchmark flows with their baselines in one run.",
    )
    parser.add_argument(
        "-w",
        "--workers",
        type=parse_worker_counts,
        default=None,
        help="worker counts, e.g. 1,2 (default 1, 2, 4, ... up to the CPU count)",
    )
    parser.add_argument(
        "--flows",
        type=_flow_names,
        default=list(BENCHMARKS),
        help="comma-separated flows (default all: " + ", ".join(BENCHMARKS) + ")",
    )
    parser.add_argument(
        "--size",
        choices=SIZES,
        default="full",
        help="small: a few seconds in all; full: millions of items (default)",
    )
    parser.add_argument("--repeat", type=parse_repeat, default=1, help="rounds (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON document only")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return parser


def run_bench(args: argparse.Namespace) -> int:
    """Run a parsed ``bench`` command; return the exit status."""
    counts = args.workers or default_worker_counts()
    results = []
    try:
        for name in args.flows:
            if not args.quiet:
                print(f"shmflow bench: {name} ({args.size})", file=sys.stderr, flush=True)
            result = run_benchmark(
                BENCHMARKS[name],
                args.size,
                counts,
                repeat=args.repeat,
                on_run=progress_printer(args.quiet),
            )
            results.append(result)
            if not args.json:
                if len(results) == 1:
                    warning = bytecode_note()
                    print(
                        f"shmflow bench ({args.size}) on {machine()}\n"
                        f"note: {BENCH_NOTE}\n{RATE_NOTE}; baselines: whole run\n"
                        + ("" if warning is None else f"note: {warning}\n")
                    )
                print(format_flow(result), flush=True)
    except (EngineRuntimeError, RuntimeError) as ex:
        print(f"shmflow bench: error: {ex}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("shmflow bench: interrupted; all workers stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        document = {
            "schema_version": BENCH_SCHEMA_VERSION,
            "kind": "bench",
            "size": args.size,
            "repeat": args.repeat,
            "worker_counts": counts,
            "machine": machine(),
            "cpu_count": os.cpu_count() or 1,
            "note": BENCH_NOTE,
            "flows": [r.as_json() for r in results],
        }
        print(json.dumps(document, indent=2, allow_nan=False))
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "shmflow bench") -> int:
    """Entry point of ``shmflow bench``; returns the exit status."""
    try:
        return run_bench(build_parser(prog).parse_args(argv))
    except UsageError as ex:
        print(f"{prog}: error: {ex}", file=sys.stderr)
        return EXIT_USAGE
