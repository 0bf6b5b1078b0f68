"""The ``shmflow`` command: ``shmflow run|tune|bench|recovery ...``.

``shmflow run`` is ``python -m engine.run`` (:mod:`engine.tools.run`); ``shmflow tune`` is
:mod:`engine.tools.tune` (run a flow at several worker counts, recommend one); ``shmflow
bench`` runs the built-in flows of :mod:`engine.tools.flows` against their baselines;
``shmflow recovery`` is ``python -m recovery`` (init, inspect, gc and verify a recovery
store). The shared options and exit statuses are in :mod:`engine.tools.args`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from engine.tools.own_packages import import_own_packages

# First, before a user's recovery.py or shm.py on sys.path (PYTHONPATH=.) can shadow them.
import_own_packages()

from engine.tools import run as run_command  # noqa: E402

__all__ = ["main"]

_USAGE = """usage: shmflow COMMAND [ARGS...]

commands:
  run IMPORT_STR [-w N] [-s SECONDS] ...   run a dataflow on N worker processes
      ... --runtime bytewax [-i I -a ADDRS]  the same flow on Bytewax's cluster runtime
  tune IMPORT_STR [-w 1,2,4] [-d S] ...     run a flow at several worker counts, recommend one
  bench [-w 1,2] [--flows a,b] [--size S]  run the built-in benchmarks against baselines
  recovery init|inspect|gc|verify DIR      create and examine recovery stores

`shmflow COMMAND --help` shows the options of a command.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shmflow`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "run":
        return run_command.main(rest, prog="shmflow run")
    if command == "tune":
        from engine.tools import tune

        return tune.main(rest, prog="shmflow tune")
    if command == "bench":
        from engine.tools import bench

        return bench.main(rest, prog="shmflow bench")
    if command == "recovery":
        from recovery import cli as recovery_cli

        return recovery_cli.main(rest, prog="shmflow recovery")
    print(f"shmflow: error: unknown command {command!r} (try: shmflow --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
