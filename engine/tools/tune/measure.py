"""Running a flow at several worker counts and folding the runs into figures.

:func:`tune` runs the flow at each worker count, ``repeat`` times, interleaved
(``for r in range(repeat): for w in counts: run``) so that drift of a busy machine hits
every count alike. Each run reads the whole input, or runs ``duration`` seconds
(start-up included) and is then stopped.

Throughput (``items/s``) is items read from the sources per second **once items flow**:
from the first live status (every 0.5 s) that saw items read, to the end of the run.
Starting N fresh interpreters takes a fraction of a second per worker, which would
otherwise decide the result for short runs although it hardly matters for a long job.
A run too short to tell is measured whole (:attr:`Run.overall_items_per_s`).

**Sinks are not written.** Unless ``real_sinks=True``, every ``output`` step's sink is
swapped for one that counts and drops items (:func:`with_counting_sinks`; a partitioned
sink is replaced by a counting partitioned sink with the same partitions and routing, so
the exchange before it still happens) and inspectors are silenced. The flow's files,
topics or lists are never touched.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.dataflow import Dataflow
from engine.outputs import FixedPartitionedSink
from engine.runtime.summary import RunSummary
from engine.tools.flows import CountingPartitionedSink, CountingSink
from engine.tools.tune.recommend import (
    Recommendation,
    default_worker_counts,
    input_limit,
    recommend,
)

__all__ = [
    "DRY_SINKS_NOTE",
    "MIN_RUNNING_WINDOW_S",
    "REAL_SINKS_NOTE",
    "CountFigures",
    "Run",
    "TuneResult",
    "fold_runs",
    "late_items",
    "late_steps",
    "measure",
    "measure_run",
    "running_rate",
    "tune",
    "with_counting_sinks",
]

DRY_SINKS_NOTE = "sinks replaced by counting sinks; pass --real-sinks to write to them"
REAL_SINKS_NOTE = "--real-sinks: the flow's sinks were written by every run"
#: A run's running rate needs at least this much wall time after its first items.
MIN_RUNNING_WINDOW_S = 0.25


# -- dry sinks -------------------------------------------------------------------------------


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
    # Dataflow has no public way to record an already-built step; operators add steps
    # through the same fields.
    clone._step_ids.update(flow._step_ids)
    for step in flow.core_steps:
        config = dict(step.config)
        if step.kind == "output":
            config["sink"] = _counting_stand_in(config["sink"])
        elif step.kind == "inspect_debug":
            config["inspector"] = _ignore_inspection
        clone._core_steps.append(dataclasses.replace(step, config=config))
    return clone


# -- one run ---------------------------------------------------------------------------------


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
    #: Ids of the flow's steps giving a windowing operator's ``late`` stream.
    late_steps: tuple[str, ...] = ()


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
    late = late_steps(flow)
    if summary.running_items_per_s is not None and summary.input_started_s is not None:
        # Exact: the workers report when they first read input.
        return Run(
            summary,
            summary.running_items_per_s,
            summary.items_per_s,
            summary.input_started_s,
            late,
        )
    running = running_rate(statuses, summary.items_in, summary.wall_time_s)
    if running is None:
        return Run(summary, summary.items_per_s, summary.items_per_s, None, late)
    return Run(summary, running[0], summary.items_per_s, running[1], late)


def late_steps(flow: Dataflow) -> tuple[str, ...]:
    """Ids of the steps of ``flow`` that give a windowing operator's ``late`` stream."""
    from engine.operators._windowing_core import LATE
    from engine.runtime.nodes.window import unwrap_kind
    from engine.runtime.plan import compile_plan

    return tuple(s.step_id for s in compile_plan(flow).steps if unwrap_kind(s) == LATE)


def late_items(summary: RunSummary, steps: Sequence[str]) -> dict[str, int]:
    """Items each windowing step of a run found late: ``steps`` are the ids of the
    late streams' steps (:func:`late_steps`), the result is keyed by the windowing
    step's id.

    >>> from engine.runtime.summary import StepSummary
    >>> late_step = "f.sum.window.unwrap_late"
    >>> steps = [StepSummary(late_step, 9, 2, 1, 0.0)]
    >>> late_items(RunSummary(workers=1, wall_time_s=1.0, steps=steps), [late_step])
    {'f.sum': 2}
    """
    wanted = set(steps)
    return {
        step.step_id.rsplit(".", 1)[0].removesuffix(".window"): step.items_out
        for step in summary.steps
        if step.step_id in wanted
    }


# -- the runs at one count -------------------------------------------------------------------


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
    def overall_median(self) -> float:
        """Median items/s over the whole runs, start-up included."""
        return statistics.median(r.overall_items_per_s for r in self.runs)

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
    def late_share(self) -> dict[str, float]:
        """Per windowing step: its late items over the items read, median over runs."""
        shares: dict[str, list[float]] = {}
        for run in self.runs:
            summary = run.summary
            for step_id, late in late_items(summary, run.late_steps).items():
                shares.setdefault(step_id, []).append(late / max(summary.items_in, 1))
        return {step_id: statistics.median(values) for step_id, values in shares.items()}

    @property
    def bottleneck_step(self) -> str | None:
        busy: dict[str, float] = {}
        for run in self.summaries:
            for step in run.steps:
                busy[step.step_id] = busy.get(step.step_id, 0.0) + step.busy_s
        step_id = max(busy, key=lambda s: busy[s], default=None)
        return step_id if step_id is not None and busy[step_id] > 0 else None


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


# -- all counts ------------------------------------------------------------------------------


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
