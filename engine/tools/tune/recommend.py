"""Which worker count to use: the recommendation, and the worker counts to try.

The recommendation (:func:`recommend`) is the smallest worker count whose median
throughput is within 5% (:data:`TOLERANCE`) of the best median. One exception: when the
busiest step runs before any exchange (on the worker that read the item), no more
workers than the flow has input partitions can share it (:func:`input_limit`), and the
tuner does not recommend more than that, whatever noise and start-up effects measure
above it.

Pure code apart from :func:`input_limit`, which compiles the flow's plan.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from engine.dataflow import Dataflow
from engine.inputs import FixedPartitionedSource
from engine.tools.args import UsageError, positive_int

__all__ = [
    "TOLERANCE",
    "InputLimit",
    "Recommendation",
    "default_worker_counts",
    "input_limit",
    "parse_worker_counts",
    "recommend",
    "short_step_id",
    "workers_text",
]

#: Median throughputs within this fraction of the best count as "as good".
TOLERANCE = 0.05

_parse_worker_count = positive_int("worker count")


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
    return sorted({_parse_worker_count(p) for p in parts})


def workers_text(n: int) -> str:
    """``"1 worker"``, ``"2 workers"``.

    >>> workers_text(1), workers_text(2)
    ('1 worker', '2 workers')
    """
    return f"{n} worker" if n == 1 else f"{n} workers"


def short_step_id(step_id: str | None) -> str:
    """A step id without the flow id in front; ``"-"`` for no step.

    >>> short_step_id("f.work.flat_map_batch"), short_step_id(None)
    ('work.flat_map_batch', '-')
    """
    if step_id is None:
        return "-"
    return step_id.split(".", 1)[1] if "." in step_id else step_id


@dataclass(frozen=True)
class Recommendation:
    """The worker count to use and why."""

    workers: int
    #: The count with the best median throughput.
    best_workers: int
    #: Median throughput of ``workers`` over that of ``best_workers`` (1.0 when equal).
    share_of_best: float
    reason: str


@dataclass(frozen=True)
class InputLimit:
    """At most ``workers`` workers can share the step ``step_id`` (see :func:`input_limit`)."""

    workers: int
    step_id: str
    partitions: int


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
    return InputLimit(partitions, short_step_id(step_id).rsplit(".", 1)[0], partitions)
