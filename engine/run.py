"""Run a dataflow from the command line: ``python -m engine.run IMPORT_STR -w N``.

The public entry of ``shmflow run``; the command lives in :mod:`engine.tools.run`, the
``IMPORT_STR`` syntax and the shared parsers in :mod:`engine.tools.args`. Add
``--bytewax-imports`` to run an unchanged Bytewax flow file, or ``--runtime bytewax`` to
run the flow on Bytewax's cluster runtime (``-i I -a "host:port;..."`` for several
machines; :mod:`engine.tools.run_bytewax`).

A flow saved as ``recovery.py`` or ``shm.py`` runs by its path (``python -m engine.run
./recovery.py``): our own packages are imported first, below, so the file cannot shadow
them. Not so for a file named ``engine.py`` in the current directory: ``python -m`` puts
that directory first on ``sys.path`` before any of our code runs, so Python finds the
user's ``engine.py`` instead of this package and fails with ``No module named
'engine.run'``. Use ``shmflow run engine.py`` there.

Exit status: 0 when the flow finished, 1 when it failed (the error names the step,
worker and epoch), 2 for bad command-line input, 130 when interrupted with Ctrl-C, 143
when stopped with SIGTERM or SIGHUP (the workers are stopped and shared memory released
in every case).
"""

from __future__ import annotations

import sys

from engine.tools.own_packages import import_own_packages

# First, before the current directory (which `-m` put first on sys.path) can shadow them.
import_own_packages()

from engine.tools.args import (  # noqa: E402
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
from engine.tools.run import build_parser, main, run_cli  # noqa: E402

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
