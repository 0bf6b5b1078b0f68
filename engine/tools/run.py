"""``shmflow run`` (also ``python -m engine.run``): run a dataflow on worker processes.

``shmflow run IMPORT_STR -w N`` loads the flow named by ``IMPORT_STR`` (see
:mod:`engine.tools.args`) and runs it on ``N`` worker processes, showing a live status
line on a terminal. With ``-r/--recovery-directory`` it snapshots to, and resumes from,
a recovery store; ``--restarts`` starts a new execution from the store after a failure.

``--runtime bytewax`` runs the same flow on Bytewax's cluster runtime instead, where
``-i I -a "host:port;..."`` make this process I of a cluster of several machines (see
:mod:`engine.tools.run_bytewax`).

``--bytewax-imports`` runs an unchanged Bytewax flow file: for this run, ``bytewax.*``
imports give shmflow's modules (``bytewax.operators`` is ``engine.operators`` and so on,
see :mod:`engine.tools.bytewax_imports`); a Bytewax module without an equivalent, such as
``bytewax.connectors.kafka``, fails with an ImportError saying so.

A flow file may have any name, ``recovery.py`` and ``shm.py`` included: give its path
(``./recovery.py``); by module name (``recovery:flow``) it would be our package. A file
named ``engine.py`` in the current directory stops ``python -m engine.run`` from finding
``engine`` at all (Python puts the current directory first on ``sys.path``); use
``shmflow run engine.py`` instead.

Exit status: 0 when the flow finished, 1 when it failed (the error names the step,
worker and epoch), 2 for bad command-line input, 130 when interrupted with Ctrl-C, 143
when stopped with SIGTERM or SIGHUP (the workers are stopped and shared memory released
in every case).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from engine.errors import EngineRuntimeError
from engine.tools.args import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    UsageParser,
    load_flow_or_usage_error,
    non_negative_int,
    parse_interval,
    positive_int,
)
from engine.tools.bytewax_imports import bytewax_imports
from engine.tools.run_bytewax import parse_addresses, run_on_bytewax
from recovery import RecoveryConfig, RecoveryError

__all__ = ["MAX_RESTART_BACKOFF_S", "RESTART_BACKOFF_S", "build_parser", "main", "run_cli"]

#: First pause before an automatic restart; doubles with every further restart.
RESTART_BACKOFF_S = 0.5
MAX_RESTART_BACKOFF_S = 30.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def build_parser(prog: str = "python -m engine.run") -> argparse.ArgumentParser:
    """The parser of the ``run`` command."""
    parser = UsageParser(
        prog=prog,
        description="Run a dataflow on worker processes.",
        epilog="A flow saved as recovery.py, shm.py or engine.py is run by its path "
        "(./recovery.py); with an engine.py in the current directory use `shmflow run`.",
    )
    parser.add_argument("import_str", metavar="IMPORT_STR", help="module[:attr] or file.py[:attr]")
    parser.add_argument(
        "--bytewax-imports",
        action="store_true",
        help="run an unchanged Bytewax flow: bytewax.* imports give shmflow's modules",
    )
    parser.add_argument(
        "--runtime",
        choices=("shmflow", "bytewax"),
        default="shmflow",
        help="shmflow (one machine, default) or bytewax: the same flow on Bytewax's "
        "cluster runtime (pip install 'shmflow[cluster]')",
    )
    parser.add_argument(
        "-w",
        "--workers",
        type=positive_int("worker count"),
        default=1,
        help="worker processes (default 1); with --runtime bytewax, workers per process",
    )
    parser.add_argument(
        "-i",
        "--process-id",
        type=non_negative_int("-i/--process-id"),
        default=None,
        help="with --runtime bytewax: the index of this process in -a/--addresses",
    )
    parser.add_argument(
        "-a",
        "--addresses",
        type=parse_addresses,
        default=None,
        help='with --runtime bytewax: "host:port;host:port;..." of every process',
    )
    parser.add_argument(
        "-s",
        "--snapshot-interval",
        type=parse_interval,
        default=None,
        help="epoch (snapshot) interval in seconds (default 10)",
    )
    parser.add_argument(
        "-r",
        "--recovery-directory",
        default=None,
        help="recovery store (create it with: python -m recovery init DIR; with --runtime "
        "bytewax: python -m bytewax.recovery DIR PARTS); resumes from it",
    )
    parser.add_argument(
        "-b",
        "--backup-interval",
        type=parse_interval,
        default=None,
        help="keep snapshots this many seconds behind the frontier before GC (default 0)",
    )
    parser.add_argument(
        "--drop-state",
        action="append",
        default=[],
        metavar="STEP_ID",
        help="delete the stored state of this step, which the flow no longer has (a "
        "renamed or removed stateful step; repeat for several; needs -r)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=parse_interval,
        default=None,
        help="fail when a worker makes no progress for this many seconds (default off)",
    )
    parser.add_argument(
        "--restarts",
        type=non_negative_int("--restarts"),
        default=0,
        help="after a failure, start a new execution from the recovery store, up to this "
        "many times (default 0; needs -r)",
    )
    parser.add_argument("--stats", default=None, help="write the run summary as JSON here")
    parser.add_argument("-q", "--quiet", action="store_true", help="no live status line")
    return parser


def _status_printer(stream: TextIO) -> Callable[[Any], None]:
    last = [0.0]

    def show(status: Any) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5:
            return
        last[0] = now
        stream.write("\r\x1b[K" + status.line())
        stream.flush()

    return show


def _recovery_config(args: argparse.Namespace) -> RecoveryConfig | None:
    if args.recovery_directory is None:
        if args.backup_interval is not None or args.restarts or args.drop_state:
            raise UsageError(
                "-b/--backup-interval, --restarts and --drop-state need -r RECOVERY_DIRECTORY"
            )
        return None
    return RecoveryConfig(
        args.recovery_directory,
        backup_interval=args.backup_interval,
        drop_state=frozenset(args.drop_state),
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run a parsed ``run`` command; return the exit status."""
    if args.runtime == "bytewax":
        return _run_on_bytewax(args)
    if args.process_id is not None or args.addresses is not None:
        raise UsageError(
            "-i/--process-id and -a/--addresses need --runtime bytewax: shmflow's own "
            "runtime uses one machine (-w N worker processes)"
        )
    recovery_config = _recovery_config(args)
    imports = bytewax_imports() if args.bytewax_imports else contextlib.nullcontext()
    with imports:
        return _load_and_run(args, recovery_config)


def _run_on_bytewax(args: argparse.Namespace) -> int:
    try:
        return run_on_bytewax(args)
    except _Terminated as ex:
        print(f"shmflow: stopped by {ex}", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("shmflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _load_and_run(args: argparse.Namespace, recovery_config: RecoveryConfig | None) -> int:
    from engine.runtime.supervisor import run_flow

    flow = load_flow_or_usage_error(args.import_str)
    live = sys.stdout.isatty() and not args.quiet

    def clear_status() -> None:
        if live:
            sys.stdout.write("\r\x1b[K")

    attempt = 0
    while True:
        try:
            summary = run_flow(
                flow,
                workers=args.workers,
                epoch_interval=args.snapshot_interval,
                recovery_config=recovery_config,
                stall_timeout=args.stall_timeout,
                on_status=_status_printer(sys.stdout) if live else None,
            )
            break
        except _Terminated as ex:
            clear_status()
            print(f"shmflow: stopped by {ex}; all workers stopped", file=sys.stderr)
            return EXIT_TERMINATED
        except KeyboardInterrupt:
            clear_status()
            print("shmflow: interrupted; all workers stopped", file=sys.stderr)
            return EXIT_INTERRUPTED
        except RecoveryError as ex:
            clear_status()
            print(f"shmflow: error: {ex}", file=sys.stderr)
            return EXIT_FAILED
        except EngineRuntimeError as ex:
            clear_status()
            if attempt >= args.restarts:
                _print_failure(ex)
                return EXIT_FAILED
            attempt += 1
            delay = min(RESTART_BACKOFF_S * 2 ** (attempt - 1), MAX_RESTART_BACKOFF_S)
            print(
                f"shmflow: execution failed: {ex}\nshmflow: restart {attempt} of "
                f"{args.restarts} in {delay:g} s, resuming from {args.recovery_directory}",
                file=sys.stderr,
            )
            time.sleep(delay)
    clear_status()
    if live:
        print(summary.line())
    if args.stats is not None:
        Path(args.stats).write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return 0


def _print_failure(ex: EngineRuntimeError) -> None:
    cause = ex.__cause__
    remote = getattr(cause, "__cause__", None) if cause is not None else None
    detail = getattr(remote, "text", None) or getattr(cause, "text", None)
    if detail:
        print(detail.rstrip(), file=sys.stderr)
    print(f"shmflow: error: {ex}", file=sys.stderr)


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop the run cleanly, like Ctrl-C."""


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise _Terminated(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None, prog: str = "python -m engine.run") -> int:
    """Entry point of ``shmflow run`` and ``python -m engine.run``; returns the exit status."""
    previous = {sig: signal.signal(sig, _raise_terminated) for sig in _STOP_SIGNALS}
    try:
        args = build_parser(prog).parse_args(argv)
        return run_cli(args)
    except UsageError as ex:
        print(f"{prog.split()[-1]}: error: {ex}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
