"""``shmflow tune``: run a flow at several worker counts and recommend one.

``shmflow tune IMPORT_STR -w 1,2,4 --repeat 3`` runs the flow at each worker count,
interleaved over the rounds, with its sinks replaced by counting sinks unless
``--real-sinks``, and prints a table and the recommended count (``--json``: one
document; ``--plot``: a PNG). The parts, each usable from Python:

- :mod:`~engine.tools.tune.measure`: running the flow at the worker counts (:func:`tune`,
  :class:`Run`, :class:`CountFigures`) and the counting-sink stand-ins
  (:func:`with_counting_sinks`);
- :mod:`~engine.tools.tune.recommend`: the recommendation (:func:`recommend`,
  :func:`input_limit`) and the worker counts to try;
- :mod:`~engine.tools.tune.report`: the table (:func:`format_result`) and the
  ``--json`` document with its schema (:func:`tune_document`);
- :mod:`~engine.tools.tune.plot`: the ``--plot`` PNG (needs matplotlib).

This module is the command (its argument parser and :func:`main`) and re-exports the
parts' public names. Here ``recommend`` is the function, not the submodule, and
``measure`` the submodule (import its function ``measure`` from there).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import timedelta

from engine.errors import EngineRuntimeError
from engine.tools.args import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    UsageParser,
    load_flow_or_usage_error,
    parse_interval,
    parse_repeat,
)
from engine.tools.tune.measure import (
    DRY_SINKS_NOTE,
    MIN_RUNNING_WINDOW_S,
    REAL_SINKS_NOTE,
    CountFigures,
    Run,
    TuneResult,
    fold_runs,
    late_items,
    late_steps,
    measure_run,
    running_rate,
    tune,
    with_counting_sinks,
)
from engine.tools.tune.plot import PLOT_MISSING, require_matplotlib, write_plot
from engine.tools.tune.recommend import (
    TOLERANCE,
    InputLimit,
    Recommendation,
    default_worker_counts,
    input_limit,
    parse_worker_counts,
    recommend,
    short_step_id,
    workers_text,
)
from engine.tools.tune.report import (
    BOTTLENECK_COLUMN,
    RATE_NOTE,
    TUNE_SCHEMA_VERSION,
    bytecode_note,
    format_result,
    late_note,
    progress_printer,
    render_table,
    row_cells,
    row_document,
    table_header,
    tune_document,
)

__all__ = [
    "BOTTLENECK_COLUMN",
    "DRY_SINKS_NOTE",
    "MIN_RUNNING_WINDOW_S",
    "PLOT_MISSING",
    "RATE_NOTE",
    "REAL_SINKS_NOTE",
    "TOLERANCE",
    "TUNE_SCHEMA_VERSION",
    "CountFigures",
    "InputLimit",
    "Recommendation",
    "Run",
    "TuneResult",
    "UsageError",
    "build_parser",
    "default_worker_counts",
    "fold_runs",
    "format_result",
    "input_limit",
    "late_items",
    "late_note",
    "late_steps",
    "main",
    "measure_run",
    "parse_repeat",
    "parse_worker_counts",
    "progress_printer",
    "recommend",
    "render_table",
    "require_matplotlib",
    "row_cells",
    "row_document",
    "run_tune",
    "running_rate",
    "short_step_id",
    "table_header",
    "tune",
    "tune_document",
    "with_counting_sinks",
    "workers_text",
    "write_plot",
]


def _duration(text: str) -> timedelta:
    value = parse_interval(text)
    if value <= timedelta(0):
        raise UsageError(f"--duration must be more than 0 seconds, got {text!r}")
    return value


def build_parser(prog: str = "shmflow tune") -> argparse.ArgumentParser:
    """The parser of the ``tune`` command (``-r`` is left to ``run``'s recovery directory)."""
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
        "--repeat", type=parse_repeat, default=1, help="rounds over all counts (default 1)"
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
        print(json.dumps(tune_document(result, args.import_str), indent=2, allow_nan=False))
    else:
        warning = bytecode_note()
        if warning is not None:
            print(f"note: {warning}")
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
