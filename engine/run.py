"""Run a dataflow from the command line: ``python -m engine.run IMPORT_STR -w N``.

The public entry of ``shmflow run``; the command lives in :mod:`engine.tools.run`, the
``IMPORT_STR`` syntax and the shared parsers in :mod:`engine.tools.args`.

Exit status: 0 when the flow finished, 1 when it failed (the error names the step,
worker and epoch), 2 for bad command-line input, 130 when interrupted with Ctrl-C, 143
when stopped with SIGTERM or SIGHUP (the workers are stopped and shared memory released
in every case).
"""

from __future__ import annotations

import sys

from engine.tools.args import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    UsageParser,
    load_flow,
    parse_interval,
    whole_number,
)
from engine.tools.run import build_parser, main, run_cli

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "UsageError",
    "UsageParser",
    "build_parser",
    "load_flow",
    "main",
    "parse_interval",
    "run_cli",
    "whole_number",
]

if __name__ == "__main__":
    sys.exit(main())
