"""What ``shmflow tune`` prints: the table for people and the ``--json`` document.

``--json`` prints one document (:func:`tune_document`), schema version
:data:`TUNE_SCHEMA_VERSION`. Fields are only added within one version, never renamed or
removed::

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
         "bottleneck_step": str | null,  # most busy time summed over runs
         "late_share": {str: float}}     # per windowing step: late items / items read
                                         # (median over runs); {} without windows
      ],
      "recommendation": {"workers": int, "best_workers": int,
                         "share_of_best": float, "reason": str},
      "late_note": str | null            # see late_note(): results differ by count
    }

``shmflow bench`` reuses the rows (:func:`row_document`) and the table
(:func:`table_header`, :func:`row_cells`, :func:`render_table`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import engine
from engine.runtime.summary import si
from engine.tools.tune.measure import DRY_SINKS_NOTE, CountFigures, Run, TuneResult
from engine.tools.tune.recommend import short_step_id, workers_text

__all__ = [
    "BOTTLENECK_COLUMN",
    "RATE_NOTE",
    "TUNE_SCHEMA_VERSION",
    "bytecode_note",
    "format_result",
    "late_note",
    "note_line",
    "progress_printer",
    "render_table",
    "row_cells",
    "row_document",
    "table_header",
    "tune_document",
]

TUNE_SCHEMA_VERSION = 1
RATE_NOTE = (
    "items/s: items read from the sources per second once they flow (start-up excluded; "
    "whole run when too short to tell)"
)
#: Column of the bottleneck step in :func:`table_header` (text: left-aligned).
BOTTLENECK_COLUMN = 7


# -- the --json document ---------------------------------------------------------------------


def row_document(row: CountFigures) -> dict[str, Any]:
    """One entry of ``"results"`` (see the module docstring)."""
    rates = row.rates
    median = row.median_run
    return {
        "workers": row.workers,
        "items_per_s": {"median": row.median, "min": min(rates), "max": max(rates)},
        "runs_items_per_s": rates,
        "overall_items_per_s": row.overall_median,
        "items_in": median.summary.items_in,
        "wall_time_s": median.summary.wall_time_s,
        "running_since_s": median.running_since_s,
        "speedup": row.speedup,
        "efficiency": row.efficiency,
        "cpu_percent_per_worker": row.cpu_percent_per_worker,
        "peak_rss_bytes": row.peak_rss_bytes,
        "ring_full_waits": row.ring_full_waits,
        "bottleneck_step": row.bottleneck_step,
        "late_share": row.late_share,
    }


def tune_document(result: TuneResult, import_str: str = "") -> dict[str, Any]:
    """The ``--json`` document (see the module docstring for the schema)."""
    return {
        "schema_version": TUNE_SCHEMA_VERSION,
        "kind": "tune",
        "flow": result.flow_id,
        "import_str": import_str,
        "sinks": "real" if result.real_sinks else "counting",
        "note": None if result.real_sinks else DRY_SINKS_NOTE,
        "worker_counts": [row.workers for row in result.rows],
        "repeat": result.repeat,
        "duration_s": result.duration_s,
        "cpu_count": os.cpu_count() or 1,
        "results": [row_document(row) for row in result.rows],
        "recommendation": dataclasses.asdict(result.recommendation),
        "late_note": late_note(result.rows),
    }


# -- the table -------------------------------------------------------------------------------


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


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
        short_step_id(row.bottleneck_step),
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


def render_table(
    header: list[str],
    rows: list[list[str]],
    indent: str = "",
    left: Sequence[int] = (BOTTLENECK_COLUMN,),
) -> str:
    """Columns padded to their widest cell; numbers right-aligned, ``left`` columns not.

    >>> print(render_table(["n", "step"], [["1", "a"], ["10", "bc"]], left=(1,)))
     n  step
     1  a
    10  bc
    """
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
        f"note: {result.note}\n" + note_line(late_note(result.rows))
    )


def note_line(note: str | None) -> str:
    """``note: ...`` and a newline, or nothing for no note."""
    return "" if note is None else f"note: {note}\n"


#: Late shares closer than this count as the same (runs stopped early vary a little).
LATE_SHARE_TOLERANCE = 0.001


def late_note(rows: Sequence[CountFigures]) -> str | None:
    """A warning when windowing steps find more items late at some worker counts.

    Then the results depend on the worker count: items of one key that reach its
    window from several workers are late where those workers read apart in event time.
    ``None`` when every count saw the same share late (none, usually).
    """
    steps = sorted({step for row in rows for step in row.late_share})
    differing = []
    for step in steps:
        shares = [row.late_share.get(step, 0.0) for row in rows]
        if max(shares) - min(shares) > LATE_SHARE_TOLERANCE or (max(shares) > 0) != (
            min(shares) > 0
        ):
            at = ", ".join(
                f"{share:.1%} at {workers_text(row.workers)}"
                for row, share in zip(rows, shares, strict=True)
            )
            differing.append(f"window step {short_step_id(step)!r}: {at}")
    if not differing:
        return None
    return (
        "the share of items that arrive late differs between worker counts ("
        + "; ".join(differing)
        + "), so the results do too: a key's items reach its window from every worker "
        "that read some of them, and items read by a worker that is behind in event time "
        "come after the window has closed. Keep each key's items in one input partition "
        "(partition the input by key), or give the EventClock a wait_for_system_duration "
        "longer than the workers drift apart."
    )


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


def bytecode_note() -> str | None:
    """A warning when every worker will compile shmflow from source, else ``None``.

    With ``PYTHONDONTWRITEBYTECODE`` set and an editable (source) checkout, no ``.pyc``
    is ever written, so each worker process compiles the engine when it starts.
    """
    import importlib.util

    probe = engine.__file__  # the package's __init__: compiled whenever the rest is
    if not sys.dont_write_bytecode or probe is None:
        return None
    if os.path.exists(importlib.util.cache_from_source(probe)):
        return None
    root = os.path.dirname(os.path.dirname(os.path.abspath(probe)))
    return (
        "PYTHONDONTWRITEBYTECODE is set and shmflow is not byte-compiled, so every worker "
        "compiles it at start (~0.1 s of every run's wall time; items/s start counting "
        "later); once: "
        f"python -m compileall -q {root}"
    )
