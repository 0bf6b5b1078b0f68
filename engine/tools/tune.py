"""``shmflow tune``: run a flow at several worker counts and recommend one.

The tuner runs the flow (:func:`tune`) at each worker count, ``repeat`` times,
interleaved (``for r in range(repeat): for w in counts: run``) so that drift of a busy
machine hits every count alike. Each run reads the whole input, or runs ``duration``
seconds (start-up included) and is then stopped.

Throughput (``items/s``) is items read from the sources per second **once items flow**:
from the first live status (every 0.5 s) that saw items read, to the end of the run.
Starting N fresh interpreters takes a fraction of a second per worker, which would
otherwise decide the result for short runs although it hardly matters for a long job.
A run too short to tell is measured whole; the whole-run rate is in the JSON as
``overall_items_per_s``.

**Sinks are not written.** Unless ``real_sinks=True`` (``--real-sinks``), every
``output`` step's sink is swapped for one that counts and drops items
(:func:`with_counting_sinks`; a partitioned sink is replaced by a counting partitioned
sink with the same partitions and routing, so the exchange before it still happens) and
inspectors are silenced. The flow's files, topics or lists are never touched.

The recommendation (:func:`recommend`) is the smallest worker count whose median
throughput is within 5% of the best median. One exception: when the busiest step runs
before any exchange (on the worker that read the item), no more workers than the flow
has input partitions can share it (:func:`input_limit`), and the tuner does not
recommend more than that, whatever noise and start-up effects measure above it.

``--json`` prints one document, schema version :data:`TUNE_SCHEMA_VERSION`. Fields are
only added within one version, never renamed or removed::

    {
      "schema_version": 1, "kind": "tune",
      "flow": str (flow id), "import_str": str,
      "sinks": "counting" | "real", "note": str | null (the dry-sinks note),
      "worker_counts": [int], "repeat": int, "duration_s": float | null,
      "cpu_count": int,
      "results": [                       # one per worker count, ascending
        {"workers": int,
         "items_per_s": {"median": float, "min": float, "max": float},
         "runs_items_per_s": [float],    # in run order
         "overall_items_per_s": float,   # median, start-up included
         "items_in": int, "wall_time_s": float,   # of the median run
         "running_since_s": float | null,  # of the median run; null: measured whole
         "speedup": float,               # median / median of the smallest count, scaled
         "efficiency": float,            # speedup / (workers / smallest count)
         "cpu_percent_per_worker": float,  # mean over workers and runs, % of one core
         "peak_rss_bytes": int,          # max over workers and runs
         "ring_full_waits": int,         # median over runs (backpressure)
         "bottleneck_step": str | null}  # most busy time summed over runs
      ],
      "recommendation": {"workers": int, "best_workers": int,
                         "share_of_best": float, "reason": str}
    }
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.inputs import FixedPartitionedSource
from engine.outputs import FixedPartitionedSink
from engine.run import (
    UsageError,
    UsageParser,
    _positive_int,
    load_flow,
    parse_interval,
    whole_number,
)
from engine.runtime.summary import RunSummary, si
from engine.tools.flows import CountingPartitionedSink, CountingSink

__all__ = [
    "DRY_SINKS_NOTE",
    "TUNE_SCHEMA_VERSION",
    "CountFigures",
    "InputLimit",
    "Recommendation",
    "Run",
    "TuneResult",
    "default_worker_counts",
    "input_limit",
    "main",
    "parse_repeat",
    "parse_worker_counts",
    "recommend",
    "tune",
    "with_counting_sinks",
    "workers_text",
]

TUNE_SCHEMA_VERSION = 1
#: Median throughputs within this fraction of the best count as "as good".
TOLERANCE = 0.05
DRY_SINKS_NOTE = "sinks replaced by counting sinks; pass --real-sinks to write to them"
REAL_SINKS_NOTE = "--real-sinks: the flow's sinks were written by every run"
RATE_NOTE = (
    "items/s: items read from the sources per second once they flow (start-up excluded; "
    "whole run when too short to tell)"
)
PLOT_MISSING = (
    "--plot needs matplotlib, which is not installed; install it with "
    "pip install 'shmflow[plot]' (or pip install matplotlib)"
)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


# -- dry sinks -----------------------------------------------------------------------------


def _ignore_inspection(step_id: str, item: Any, epoch: int, worker_index: int) -> None:
    """The inspector of a dry run: items are still relayed, but nothing is printed."""


def _counting_stand_in(sink: Any) -> Any:
    if isinstance(sink, FixedPartitionedSink):
        return CountingPartitionedSink(sink.list_parts(), sink.part_fn)
    return CountingSink()


def with_counting_sinks(flow: Dataflow) -> Dataflow:
    """A copy of ``flow`` whose sinks count and drop items and whose inspectors are silent.

    Every other step (sources, user functions, exchanges) is the same object as in
    ``flow``; ``flow`` itself is not changed.

    >>> import engine.operators as op
    >>> from engine.testing import TestingSink, TestingSource, run_main
    >>> out = []
    >>> flow = Dataflow("f")
    >>> op.output("out", op.input("inp", flow, TestingSource([1, 2])), TestingSink(out))
    >>> run_main(with_counting_sinks(flow))
    >>> out
    []
    """
    clone = Dataflow(flow.flow_id)
    clone._step_ids.update(flow._step_ids)
    for step in flow.core_steps:
        config = dict(step.config)
        if step.kind == "output":
            config["sink"] = _counting_stand_in(config["sink"])
        elif step.kind == "inspect_debug":
            config["inspector"] = _ignore_inspection
        clone._core_steps.append(dataclasses.replace(step, config=config))
    return clone


# -- worker counts and the recommendation ----------------------------------------------------


def default_worker_counts(cpu_count: int | None = None) -> list[int]:
    """1, 2, 4, ... up to the CPU count, and the CPU count itself.

    >>> default_worker_counts(6)
    [1, 2, 4, 6]
    >>> default_worker_counts(1)
    [1]
    """
    limit = max(1, cpu_count if cpu_count is not None else (os.cpu_count() or 1))
    counts = []
    n = 1
    while n < limit:
        counts.append(n)
        n *= 2
    counts.append(limit)
    return counts


def parse_worker_counts(text: str) -> list[int]:
    """Parse ``"1,2,4"`` into sorted distinct positive counts.

    >>> parse_worker_counts("4, 1,2,2")
    [1, 2, 4]
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UsageError(f"--workers {text!r} names no worker count (example: 1,2,4)")
    return sorted({_positive_int(p) for p in parts})


def workers_text(n: int) -> str:
    """``"1 worker"``, ``"2 workers"``."""
    return f"{n} worker" if n == 1 else f"{n} workers"


@dataclass(frozen=True)
class Recommendation:
    """The worker count to use and why."""

    workers: int
    #: The count with the best median throughput.
    best_workers: int
    #: Median throughput of ``workers`` over that of ``best_workers`` (1.0 when equal).
    share_of_best: float
    reason: str


def recommend(
    medians: Mapping[int, float],
    tolerance: float = TOLERANCE,
    limit: InputLimit | None = None,
) -> Recommendation:
    """The smallest worker count whose median throughput is within ``tolerance`` of the best.

    ``medians`` maps worker counts to median items/s. With a ``limit`` (see
    :func:`input_limit`), counts above ``limit.workers`` are not recommended: they cannot
    share the flow's busiest step, so what they measure above it is start-up and noise.

    >>> r = recommend({1: 100.0, 2: 190.0, 4: 195.0})
    >>> r.workers, r.best_workers
    (2, 4)
    >>> r.reason
    '2 workers reach 97% of the best throughput (4 workers); more workers add less than 5%'
    >>> recommend({1: 100.0, 2: 90.0}).reason
    '1 worker gives the best throughput; more workers do not make it faster (2 workers: 90%)'
    """
    if not medians:
        msg = "recommend() needs at least one worker count"
        raise ValueError(msg)
    if limit is not None and min(medians) <= limit.workers < max(medians):
        return _limited(medians, tolerance, limit)
    counts = sorted(medians)
    best = max(counts, key=lambda w: (medians[w], -w))
    best_rate = medians[best]
    if not best_rate > 0:
        reason = f"no items were read at any worker count; {workers_text(counts[0])} is enough"
        return Recommendation(counts[0], counts[0], 1.0, reason)
    chosen = next(w for w in counts if medians[w] >= (1 - tolerance) * best_rate)
    share = medians[chosen] / best_rate
    if len(counts) == 1:
        reason = f"only {workers_text(chosen)} measured"
    elif chosen < best:
        reason = (
            f"{workers_text(chosen)} reach{'es' if chosen == 1 else ''} {share:.0%} of the best "
            f"throughput ({workers_text(best)}); more workers add less than {tolerance:.0%}"
        )
    elif chosen == counts[0]:
        larger = counts[counts.index(chosen) + 1]
        reason = (
            f"{workers_text(chosen)} give{'s' if chosen == 1 else ''} the best throughput; more "
            f"workers do not make it faster ({workers_text(larger)}: "
            f"{medians[larger] / best_rate:.0%})"
        )
    else:
        smaller = counts[counts.index(chosen) - 1]
        reason = (
            f"{workers_text(chosen)} give the best throughput; {workers_text(smaller)} reach"
            f"{'es' if smaller == 1 else ''} only {medians[smaller] / best_rate:.0%} of it"
        )
    return Recommendation(chosen, best, share, reason)


def _limited(medians: Mapping[int, float], tolerance: float, limit: InputLimit) -> Recommendation:
    within = recommend({w: m for w, m in medians.items() if w <= limit.workers}, tolerance)
    best = max(medians, key=lambda w: (medians[w], -w))
    above = sorted(w for w in medians if w > limit.workers)
    reference = medians[within.workers]
    measured = ", ".join(
        f"{workers_text(w)} {medians[w] / reference:.0%}" if reference > 0 else workers_text(w)
        for w in above
    )
    parts = "partition" if limit.partitions == 1 else "partitions"
    reason = (
        f"the busiest step ({limit.step_id}) runs before any exchange, on the worker(s) "
        f"reading the flow's {limit.partitions} input {parts}, so more than "
        f"{workers_text(limit.workers)} cannot share it (measured anyway: {measured})"
    )
    if len([w for w in medians if w <= limit.workers]) > 1:
        reason = f"{within.reason}; {reason}"
    share = medians[within.workers] / medians[best] if medians[best] > 0 else 1.0
    return Recommendation(within.workers, best, share, reason)


@dataclass(frozen=True)
class InputLimit:
    """At most ``workers`` workers can share the step ``step_id`` (see :func:`input_limit`)."""

    workers: int
    step_id: str
    partitions: int


def input_limit(flow: Dataflow, step_id: str | None) -> InputLimit | None:
    """The worker limit of a flow whose busiest step runs before any exchange.

    Such a step runs on the worker that read the item, so no more workers can share it
    than the flow has input partitions upstream of it. Returns None when the step
    (or something before it) exchanges items, or reads a dynamic source (one
    partition per worker), or cannot be found.

    >>> import engine.operators as op
    >>> from engine.tools.flows import CountingSink, ListSource
    >>> flow = Dataflow("f")
    >>> nums = op.map("work", op.input("inp", flow, ListSource([1, 2], 1)), abs)
    >>> op.output("out", nums, CountingSink())
    >>> input_limit(flow, "f.work.flat_map_batch")
    InputLimit(workers=1, step_id='work', partitions=1)
    """
    from engine.runtime.plan import compile_plan

    plan = compile_plan(flow)
    by_id = {step.step_id: step for step in plan.steps}
    if step_id not in by_id:
        return None
    upstream, todo = set(), [by_id[step_id]]
    while todo:
        step = todo.pop()
        if step.step_id in upstream:
            continue
        upstream.add(step.step_id)
        if step.exchange is not None:
            return None
        todo.extend(plan.producer(up) for up in step.ups)
    partitions = 0
    for sid in upstream:
        source = getattr(by_id[sid].config, "source", None)
        if source is None:
            continue
        if not isinstance(source, FixedPartitionedSource):
            return None
        partitions += len(source.list_parts())
    if partitions == 0:
        return None
    return InputLimit(partitions, _short_step(step_id).rsplit(".", 1)[0], partitions)


# -- measuring -----------------------------------------------------------------------------


#: A run's running rate needs at least this much wall time after its first items.
MIN_RUNNING_WINDOW_S = 0.25


def running_rate(
    statuses: Sequence[tuple[float, float]], items_in: int, wall_time_s: float
) -> tuple[float, float] | None:
    """Items/s from the first status that saw items read to the end of the run.

    ``statuses`` are ``(elapsed_s, items_in_per_s)`` of the run's live status calls
    (each rate covers the span since the previous call, the first since the start), so
    their sum of rate x span is the number of items read by then. Returns ``(rate,
    since_s)``, or None when the run was too short to see a status with items in it
    followed by :data:`MIN_RUNNING_WINDOW_S` of running.

    >>> running_rate([(0.5, 0.0), (1.0, 200.0), (1.5, 400.0)], items_in=900, wall_time_s=2.0)
    (800.0, 1.0)
    >>> running_rate([(0.5, 0.0)], items_in=900, wall_time_s=0.9) is None
    True
    """
    seen = 0.0
    previous = 0.0
    for elapsed, rate in statuses:
        seen += rate * (elapsed - previous)
        previous = elapsed
        if seen >= 1:
            window = wall_time_s - elapsed
            if window < MIN_RUNNING_WINDOW_S:
                return None
            return (items_in - round(seen)) / window, elapsed
    return None


@dataclass
class Run:
    """One run of a flow at one worker count."""

    summary: RunSummary
    #: Items read per second once items flowed (start-up excluded); see :func:`running_rate`.
    items_per_s: float
    #: Items read per second of the whole run, start-up included.
    overall_items_per_s: float
    #: When the running window began, in seconds after the start (None: the whole run).
    running_since_s: float | None


def measure_run(
    flow: Dataflow,
    workers: int,
    *,
    duration: timedelta | None = None,
    epoch_interval: timedelta | None = None,
) -> Run:
    """Run ``flow`` once on ``workers`` workers; stop it after ``duration`` if given."""
    from engine.runtime.supervisor import run_flow

    statuses: list[tuple[float, float]] = []
    stop = threading.Event()
    timer = None
    if duration is not None:
        timer = threading.Timer(duration.total_seconds(), stop.set)
        timer.daemon = True
        timer.start()
    try:
        summary = run_flow(
            flow,
            workers=workers,
            epoch_interval=epoch_interval,
            on_status=lambda s: statuses.append((s.elapsed_s, s.items_in_per_s)),
            stop=stop,
        )
    finally:
        if timer is not None:
            timer.cancel()
    if summary.running_items_per_s is not None and summary.input_started_s is not None:
        # Exact: the workers report when they first read input.
        return Run(
            summary, summary.running_items_per_s, summary.items_per_s, summary.input_started_s
        )
    running = running_rate(statuses, summary.items_in, summary.wall_time_s)
    if running is None:
        return Run(summary, summary.items_per_s, summary.items_per_s, None)
    return Run(summary, running[0], summary.items_per_s, running[1])


@dataclass
class CountFigures:
    """The runs at one worker count, folded into the figures of one table row."""

    workers: int
    runs: list[Run]
    speedup: float = 1.0
    efficiency: float = 1.0

    @property
    def rates(self) -> list[float]:
        return [r.items_per_s for r in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def median_run(self) -> Run:
        ordered = sorted(self.runs, key=lambda r: r.items_per_s)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def summaries(self) -> list[RunSummary]:
        return [r.summary for r in self.runs]

    @property
    def cpu_percent_per_worker(self) -> float:
        values = [w.cpu_percent for r in self.summaries for w in r.per_worker]
        return statistics.fmean(values) if values else 0.0

    @property
    def peak_rss_bytes(self) -> int:
        return max((w.max_rss_bytes for r in self.summaries for w in r.per_worker), default=0)

    @property
    def ring_full_waits(self) -> int:
        return int(statistics.median(r.ring_full_waits for r in self.summaries))

    @property
    def bottleneck_step(self) -> str | None:
        busy: dict[str, float] = {}
        for run in self.summaries:
            for step in run.steps:
                busy[step.step_id] = busy.get(step.step_id, 0.0) + step.busy_s
        step_id = max(busy, key=lambda s: busy[s], default=None)
        return step_id if step_id is not None and busy[step_id] > 0 else None

    def as_json(self) -> dict[str, Any]:
        rates = self.rates
        median = self.median_run
        return {
            "workers": self.workers,
            "items_per_s": {"median": self.median, "min": min(rates), "max": max(rates)},
            "runs_items_per_s": rates,
            "overall_items_per_s": statistics.median(r.overall_items_per_s for r in self.runs),
            "items_in": median.summary.items_in,
            "wall_time_s": median.summary.wall_time_s,
            "running_since_s": median.running_since_s,
            "speedup": self.speedup,
            "efficiency": self.efficiency,
            "cpu_percent_per_worker": self.cpu_percent_per_worker,
            "peak_rss_bytes": self.peak_rss_bytes,
            "ring_full_waits": self.ring_full_waits,
            "bottleneck_step": self.bottleneck_step,
        }


def fold_runs(runs: Mapping[int, list[Run]]) -> list[CountFigures]:
    """Table rows (ascending worker counts) with speed-up and efficiency filled in.

    Speed-up is relative to the smallest count measured (normally 1 worker); efficiency
    is speed-up over the ratio of worker counts.
    """
    rows = [CountFigures(w, list(runs[w])) for w in sorted(runs)]
    base = rows[0]
    for row in rows:
        row.speedup = row.median / base.median if base.median > 0 else 0.0
        row.efficiency = row.speedup / (row.workers / base.workers)
    return rows


def measure(
    flow: Dataflow,
    worker_counts: Sequence[int],
    *,
    repeat: int = 1,
    duration: timedelta | None = None,
    epoch_interval: timedelta | None = None,
    on_run: Callable[[int, int, Run], None] | None = None,
) -> dict[int, list[Run]]:
    """Run ``flow`` at every count, ``repeat`` rounds interleaved; return the runs.

    ``on_run(round, workers, run)`` is called after each run.
    """
    runs: dict[int, list[Run]] = {w: [] for w in worker_counts}
    for round_index in range(repeat):
        for workers in worker_counts:
            run = measure_run(flow, workers, duration=duration, epoch_interval=epoch_interval)
            runs[workers].append(run)
            if on_run is not None:
                on_run(round_index, workers, run)
    return runs


@dataclass
class TuneResult:
    """What :func:`tune` measured and recommends."""

    flow_id: str
    rows: list[CountFigures]
    recommendation: Recommendation
    real_sinks: bool
    repeat: int
    duration_s: float | None

    @property
    def note(self) -> str:
        return REAL_SINKS_NOTE if self.real_sinks else DRY_SINKS_NOTE

    def as_json(self, import_str: str = "") -> dict[str, Any]:
        """The ``--json`` document (see the module docstring for the schema)."""
        return {
            "schema_version": TUNE_SCHEMA_VERSION,
            "kind": "tune",
            "flow": self.flow_id,
            "import_str": import_str,
            "sinks": "real" if self.real_sinks else "counting",
            "note": None if self.real_sinks else DRY_SINKS_NOTE,
            "worker_counts": [row.workers for row in self.rows],
            "repeat": self.repeat,
            "duration_s": self.duration_s,
            "cpu_count": os.cpu_count() or 1,
            "results": [row.as_json() for row in self.rows],
            "recommendation": dataclasses.asdict(self.recommendation),
        }


def tune(
    flow: Dataflow,
    worker_counts: Sequence[int] | None = None,
    *,
    repeat: int = 1,
    duration: timedelta | None = None,
    real_sinks: bool = False,
    epoch_interval: timedelta | None = None,
    on_run: Callable[[int, int, Run], None] | None = None,
) -> TuneResult:
    """Run ``flow`` at each of ``worker_counts`` and recommend a count.

    ``worker_counts`` defaults to :func:`default_worker_counts`. Each run reads the
    whole input, or is stopped after ``duration``. Sinks are replaced by counting sinks
    unless ``real_sinks`` (see the module docstring).
    """
    counts = sorted(set(worker_counts or default_worker_counts()))
    if repeat < 1:
        msg = f"repeat must be at least 1; got {repeat}"
        raise ValueError(msg)
    target = flow if real_sinks else with_counting_sinks(flow)
    runs = measure(
        target,
        counts,
        repeat=repeat,
        duration=duration,
        epoch_interval=epoch_interval,
        on_run=on_run,
    )
    rows = fold_runs(runs)
    busiest = CountFigures(0, [run for row in rows for run in row.runs]).bottleneck_step
    recommendation = recommend(
        {row.workers: row.median for row in rows}, limit=input_limit(flow, busiest)
    )
    return TuneResult(
        flow_id=flow.flow_id,
        rows=rows,
        recommendation=recommendation,
        real_sinks=real_sinks,
        repeat=repeat,
        duration_s=None if duration is None else duration.total_seconds(),
    )


# -- output for people ---------------------------------------------------------------------


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _short_step(step_id: str | None) -> str:
    if step_id is None:
        return "-"
    return step_id.split(".", 1)[1] if "." in step_id else step_id


def row_cells(row: CountFigures) -> list[str]:
    """The standard cells of one table row."""
    rates = row.rates
    return [
        str(row.workers),
        f"{si(row.median)} ({si(min(rates))}-{si(max(rates))})",
        f"{row.speedup:.2f}x",
        f"{row.efficiency:.0%}",
        f"{row.cpu_percent_per_worker:.0f}%",
        _bytes(row.peak_rss_bytes),
        f"{row.ring_full_waits:,}",
        _short_step(row.bottleneck_step),
    ]


def table_header(base_workers: int) -> list[str]:
    """The standard column titles (speed-up relative to ``base_workers``)."""
    return [
        "workers",
        "items/s median (min-max)",
        f"speed-up vs {base_workers}",
        "efficiency",
        "CPU%/worker",
        "peak RSS",
        "ring full waits",
        "bottleneck step",
    ]


#: Column of the bottleneck step in :func:`table_header` (text: left-aligned).
BOTTLENECK_COLUMN = 7


def render_table(
    header: list[str],
    rows: list[list[str]],
    indent: str = "",
    left: Sequence[int] = (BOTTLENECK_COLUMN,),
) -> str:
    """Columns padded to their widest cell; numbers right-aligned, ``left`` columns not."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(cells)
        ]
        return (indent + "  ".join(padded)).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def format_result(result: TuneResult) -> str:
    """The table, the recommendation and the sinks note, for people."""
    header = table_header(result.rows[0].workers)
    table = render_table(header, [row_cells(row) for row in result.rows])
    how = f"{result.duration_s:g} s per run" if result.duration_s is not None else "whole input"
    return (
        f"shmflow tune: flow {result.flow_id!r}, {how}, {result.repeat} round(s) "
        f"interleaved\n{RATE_NOTE}\n\n"
        f"{table}\n\n"
        f"recommendation: {workers_text(result.recommendation.workers)} -- "
        f"{result.recommendation.reason}\n"
        f"note: {result.note}\n"
    )


def require_matplotlib() -> None:
    """Raise :class:`UsageError` with install instructions when matplotlib is missing."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise UsageError(PLOT_MISSING) from None


def write_plot(result: TuneResult, path: str | Path) -> None:
    """Throughput (median, min-max bars) and efficiency against workers, as a PNG."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    workers = [row.workers for row in result.rows]
    medians = [row.median for row in result.rows]
    below = [row.median - min(row.rates) for row in result.rows]
    above = [max(row.rates) - row.median for row in result.rows]
    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.errorbar(workers, medians, yerr=[below, above], marker="o", capsize=4, label="items/s")
    axes.set_xlabel("workers")
    axes.set_ylabel("items/s (median, min-max)")
    axes.set_xticks(workers)
    axes.set_ylim(bottom=0)
    efficiency_axes = axes.twinx()
    efficiency_axes.plot(
        workers, [row.efficiency for row in result.rows], "s--", color="tab:orange"
    )
    efficiency_axes.set_ylabel("parallel efficiency", color="tab:orange")
    efficiency_axes.set_ylim(0, max(1.1, *(row.efficiency * 1.1 for row in result.rows)))
    axes.axvline(result.recommendation.workers, color="tab:green", linestyle=":")
    axes.set_title(
        f"shmflow tune {result.flow_id}: recommended {workers_text(result.recommendation.workers)}"
    )
    figure.tight_layout()
    figure.savefig(str(path), format="png")


# -- the command ---------------------------------------------------------------------------


def parse_repeat(text: str) -> int:
    """Parse ``--repeat``: a whole number >= 1."""
    return whole_number(text, "--repeat", 1)


def _duration(text: str) -> timedelta:
    value = parse_interval(text)
    if value <= timedelta(0):
        raise UsageError(f"--duration must be more than 0 seconds, got {text!r}")
    return value


def build_parser(prog: str = "shmflow tune") -> argparse.ArgumentParser:
    parser = UsageParser(
        prog=prog,
        description="Run a flow at several worker counts and recommend one. "
        + DRY_SINKS_NOTE.capitalize()
        + ".",
    )
    parser.add_argument("import_str", metavar="IMPORT_STR", help="module[:attr] or file.py[:attr]")
    parser.add_argument(
        "-w",
        "--workers",
        type=parse_worker_counts,
        default=None,
        help="worker counts, e.g. 1,2,3 (default 1, 2, 4, ... up to the CPU count)",
    )
    parser.add_argument(
        "-d",
        "--duration",
        type=_duration,
        default=None,
        help="stop each run after this many seconds (default: run the whole input)",
    )
    parser.add_argument(
        "-r", "--repeat", type=parse_repeat, default=1, help="rounds over all counts (default 1)"
    )
    parser.add_argument(
        "-s",
        "--snapshot-interval",
        type=parse_interval,
        default=None,
        help="epoch interval in seconds (default 10)",
    )
    parser.add_argument(
        "--real-sinks", action="store_true", help="write to the flow's real sinks in every run"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document only")
    parser.add_argument("--plot", metavar="PNG", default=None, help="write a plot to this file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return parser


def load_flow_or_usage_error(import_str: str) -> Dataflow:
    """:func:`engine.run.load_flow`, with import-time failures as one-line usage errors."""
    try:
        return load_flow(import_str)
    except UsageError:
        raise
    except Exception as ex:
        raise UsageError(
            f"loading {import_str!r} failed: {type(ex).__name__}: {ex} (import it in "
            "Python to see the traceback)"
        ) from None


def progress_printer(quiet: bool) -> Callable[[int, int, Run], None] | None:
    """A per-run progress line on stderr (None when quiet)."""
    if quiet:
        return None

    def show(round_index: int, workers: int, run: Run) -> None:
        summary = run.summary
        print(
            f"  round {round_index + 1}, {workers_text(workers)}: {si(run.items_per_s)} items/s "
            f"running, {si(run.overall_items_per_s)} items/s overall "
            f"({summary.items_in:,} items in {summary.wall_time_s:.2f} s)",
            file=sys.stderr,
            flush=True,
        )

    return show


def run_tune(args: argparse.Namespace) -> int:
    """Run a parsed ``tune`` command; return the exit status."""
    if args.plot is not None:
        require_matplotlib()  # fail before spending minutes measuring
    flow = load_flow_or_usage_error(args.import_str)
    counts = args.workers or default_worker_counts()
    try:
        result = tune(
            flow,
            counts,
            repeat=args.repeat,
            duration=args.duration,
            real_sinks=args.real_sinks,
            epoch_interval=args.snapshot_interval,
            on_run=progress_printer(args.quiet),
        )
    except EngineRuntimeError as ex:
        print(f"shmflow tune: error: the flow failed: {ex}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("shmflow tune: interrupted; all workers stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.plot is not None:
        write_plot(result, args.plot)
    if args.json:
        print(json.dumps(result.as_json(args.import_str), indent=2, allow_nan=False))
    else:
        print(format_result(result), end="")
        if args.plot is not None:
            print(f"plot: {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "shmflow tune") -> int:
    """Entry point of ``shmflow tune``; returns the exit status."""
    try:
        args = build_parser(prog).parse_args(argv)
        return run_tune(args)
    except UsageError as ex:
        print(f"{prog}: error: {ex}", file=sys.stderr)
        return EXIT_USAGE
