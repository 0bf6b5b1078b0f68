"""``shmflow run IMPORT_STR --runtime bytewax``: run a flow on Bytewax's cluster runtime.

When a job outgrows one machine, the same flow runs on Bytewax 0.21's runtime, translated
by :func:`engine.bytewax.to_bytewax`. The options keep their meaning:

- ``-w N``: N workers per process (Bytewax's ``workers_per_process``);
- ``-i I -a "host0:port;host1:port"``: this is process I of the cluster whose processes
  listen on these addresses (start one process per address, each with its own ``-i``);
  these two flags are what moves a job from one box to several;
- ``-s S``: epoch (snapshot) interval in seconds;
- ``-r DIR [-b B]``: Bytewax's recovery store (``python -m bytewax.recovery DIR PARTS``
  creates it) and how long to keep snapshots before garbage collection. A shmflow store
  (``python -m recovery init``) is a different format: state does not move between them.

Options of shmflow's own runtime (``--restarts``, ``--stall-timeout``, ``--stats``) and
``--bytewax-imports`` (an unchanged Bytewax flow file runs on Bytewax as is: ``python -m
bytewax.run FILE``) are usage errors here.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any

from engine.tools.args import EXIT_FAILED, UsageError, load_flow_or_usage_error

__all__ = ["check_args", "parse_addresses", "run_on_bytewax"]

#: The file every shmflow recovery store has (an LMDB environment).
_SHMFLOW_STORE_FILE = "data.mdb"


def parse_addresses(text: str) -> list[str]:
    """Split ``-a/--addresses``: ``host:port`` entries separated by ``;``.

    >>> parse_addresses("10.0.0.1:2101;10.0.0.2:2101")
    ['10.0.0.1:2101', '10.0.0.2:2101']
    """
    addresses = [part.strip() for part in text.split(";") if part.strip()]
    if not addresses:
        raise UsageError("-a/--addresses is empty; give host:port;host:port...")
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"-a/--addresses entry {address!r} is not host:port")
    return addresses


def check_args(args: argparse.Namespace) -> None:
    """Raise :class:`UsageError` for options that do not apply on Bytewax's runtime."""
    unsupported = [
        flag
        for flag, given in (
            ("--bytewax-imports", args.bytewax_imports),
            ("--restarts", args.restarts),
            ("--stall-timeout", args.stall_timeout is not None),
            ("--stats", args.stats is not None),
        )
        if given
    ]
    if unsupported:
        hint = (
            " (a Bytewax flow file runs on Bytewax as is: python -m bytewax.run FILE)"
            if args.bytewax_imports
            else ""
        )
        raise UsageError(f"{', '.join(unsupported)} cannot be used with --runtime bytewax{hint}")
    if (args.process_id is None) != (args.addresses is None):
        raise UsageError("-i/--process-id and -a/--addresses go together")
    if args.addresses is not None and args.process_id >= len(args.addresses):
        raise UsageError(
            f"-i/--process-id {args.process_id} is not below the number of addresses "
            f"({len(args.addresses)})"
        )
    if args.backup_interval is not None and args.recovery_directory is None:
        raise UsageError("-b/--backup-interval needs -r RECOVERY_DIRECTORY")
    if args.recovery_directory is not None:
        _check_recovery_directory(Path(args.recovery_directory))


def _check_recovery_directory(path: Path) -> None:
    if (path / _SHMFLOW_STORE_FILE).exists():
        raise UsageError(
            f"{path} is a shmflow recovery store; Bytewax's runtime keeps its own store and "
            "state does not move between them: create one with python -m bytewax.recovery "
            "DIR PARTS"
        )
    if not path.is_dir() or not any(path.glob("part-*.sqlite3")):
        raise UsageError(
            f"{path} holds no Bytewax recovery partitions; create them with "
            f"python -m bytewax.recovery {path} PARTS"
        )


def run_on_bytewax(args: argparse.Namespace) -> int:
    """Run a parsed ``run --runtime bytewax`` command; return the exit status.

    Ctrl-C and stop signals propagate as ``KeyboardInterrupt`` to the caller.
    """
    check_args(args)
    from engine.bytewax import BytewaxNotInstalledError, BytewaxTranslationError, to_bytewax

    flow = load_flow_or_usage_error(args.import_str)
    try:
        processes = 1 if args.addresses is None else len(args.addresses)
        bytewax_flow = to_bytewax(flow, processes=processes)
    except (BytewaxNotInstalledError, BytewaxTranslationError) as ex:
        print(f"shmflow: error: {ex}", file=sys.stderr)
        return EXIT_FAILED
    from bytewax.run import cli_main

    try:
        cli_main(
            bytewax_flow,
            workers_per_process=args.workers,
            process_id=args.process_id,
            addresses=args.addresses,
            epoch_interval=args.snapshot_interval,
            recovery_config=_recovery_config(args),
        )
    except KeyboardInterrupt:
        raise
    except Exception as ex:  # Bytewax's runtime errors chain the user's exception
        traceback.print_exception(ex, file=sys.stderr)
        print(f"shmflow: error: the flow failed on Bytewax's runtime: {ex}", file=sys.stderr)
        return EXIT_FAILED
    except BaseException as ex:
        if type(ex).__name__ != "PanicException":
            raise
        # pyo3's panic, which is how Bytewax 0.21 ends every process when one fails.
        print(
            f"shmflow: error: the flow failed on Bytewax's runtime ({ex}); Bytewax does "
            "not pass the cause between processes: see the error printed by the process "
            "that failed",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def _recovery_config(args: argparse.Namespace) -> Any:
    if args.recovery_directory is None:
        return None
    from bytewax.recovery import RecoveryConfig

    return RecoveryConfig(Path(args.recovery_directory), args.backup_interval)
