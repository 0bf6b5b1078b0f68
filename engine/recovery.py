"""Recovery under Bytewax's name: ``from engine.recovery import RecoveryConfig, init_db_dir``.

A ported flow changes ``bytewax.recovery`` to ``engine.recovery`` and keeps working:
this module re-exports :class:`RecoveryConfig`, :func:`init_db_dir` and the recovery
errors from the :mod:`recovery` package, where they live (see it for the store itself).

``python -m engine.recovery DB_DIR PART_COUNT`` initialises a store the way ``python -m
bytewax.recovery db_dir/ 1`` does, with the same arguments, and like it prints nothing
when it succeeds. Two differences: ``DB_DIR`` is created if missing (Bytewax asks you to
``mkdir`` it first), and ``PART_COUNT`` is accepted but a shmflow store is always one
LMDB environment, whatever the worker count. A failure prints one line and exits with
status 2. ``python -m recovery init|inspect|gc|verify DIR`` has the other store tools.

>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     status = main([f"{tmp}/db", "1"])
...     files = sorted(p.name for p in Path(tmp, "db").iterdir())
>>> status, files
(0, ['data.mdb', 'lock.mdb'])
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from recovery import (
    CorruptStoreError,
    FlowMismatchError,
    InconsistentPartitionsError,
    MissingPartitionsError,
    NoPartitionsError,
    RecoveryConfig,
    RecoveryError,
    StaleExecutionError,
    StoreFullError,
    StoreInUseError,
    UnpicklableStateError,
    init_db_dir,
)

__all__ = [
    "CorruptStoreError",
    "FlowMismatchError",
    "InconsistentPartitionsError",
    "MissingPartitionsError",
    "NoPartitionsError",
    "RecoveryConfig",
    "RecoveryError",
    "StaleExecutionError",
    "StoreFullError",
    "StoreInUseError",
    "UnpicklableStateError",
    "init_db_dir",
    "main",
]

#: Exit status when the store could not be initialised (as for usage errors).
EXIT_ERROR = 2


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Create and initialise a recovery store (Bytewax: a set of empty "
        "recovery partitions).",
        epilog="python -m recovery inspect|gc|verify DIR has the other store tools.",
    )
    parser.add_argument(
        "db_dir", type=Path, help="directory of the store (created if it does not exist)"
    )
    parser.add_argument(
        "part_count",
        type=int,
        help="number of partitions, accepted for compatibility with Bytewax: a shmflow "
        "store is one LMDB environment whatever the number (must be >= 1)",
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m engine.recovery") -> int:
    """Initialise the store named on the command line; return the exit status."""
    args = _parser(prog).parse_args(argv)
    try:
        init_db_dir(args.db_dir, args.part_count)
    except (RecoveryError, ValueError, OSError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
