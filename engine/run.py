"""Run a dataflow from the command line: ``python -m engine.run IMPORT_STR -w N``.

``IMPORT_STR`` names the flow: ``module`` or ``module:attr`` (``attr`` defaults to
``flow``; it may also be a call of a factory with literal arguments, such as
``module:make_flow(4, "x")``), or a path to a ``.py`` file, optionally with ``:attr``.
The same command is installed as ``shmflow run``.

Exit status: 0 when the flow finished, 1 when it failed (the error names the step,
worker and epoch), 2 for bad command-line input, 130 when interrupted with Ctrl-C, 143
when stopped with SIGTERM or SIGHUP (the workers are stopped and shared memory released
in every case).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import cloudpickle

from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from recovery import RecoveryConfig, RecoveryError

__all__ = ["UsageError", "UsageParser", "load_flow", "main", "parse_interval", "whole_number"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: First pause before an automatic restart; doubles with every further restart.
RESTART_BACKOFF_S = 0.5
MAX_RESTART_BACKOFF_S = 30.0
EXIT_TERMINATED = 143
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class UsageError(Exception):
    """Bad command-line input; the message is printed as one line, exit status 2."""


class UsageParser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`UsageError` (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_interval(text: str) -> timedelta:
    """Parse a non-negative number of seconds.

    >>> parse_interval("2.5")
    datetime.timedelta(seconds=2, microseconds=500000)
    """
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"interval {text!r} is not a number of seconds") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise UsageError(f"interval {text!r} must be a finite number of seconds >= 0")
    return timedelta(seconds=seconds)


def whole_number(text: str, what: str, minimum: int) -> int:
    """Parse a command-line whole number ``>= minimum``; ``what`` names it in errors.

    >>> whole_number("3", "worker count", 1)
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a whole number") from None
    if value < minimum:
        raise UsageError(f"{what} must be at least {minimum}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return whole_number(text, "worker count", 1)


def _non_negative_int(text: str) -> int:
    return whole_number(text, "--restarts", 0)


def _split_import_str(import_str: str) -> tuple[str, str]:
    if import_str.endswith(".py") or os.path.sep in import_str.split(":")[0]:
        path, _, attr = import_str.partition(":")
        return path, attr or "flow"
    module, _, attr = import_str.partition(":")
    return module, attr or "flow"


def _import_target(target: str) -> Any:
    if target.endswith(".py") or os.path.sep in target:
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"no such file: {target!r}")
        name = f"shmflow_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot load {target!r} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.resolve().parent))
        spec.loader.exec_module(module)
        # Workers must not re-run the file: ship its functions by value.
        cloudpickle.register_pickle_by_value(module)
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as ex:
        if ex.name is not None and (target == ex.name or target.startswith(ex.name + ".")):
            raise UsageError(f"cannot import module {target!r}: {ex}") from None
        raise


def _attr_call(module: Any, attr: str) -> Any:
    try:
        expr = ast.parse(attr.strip(), mode="eval").body
    except SyntaxError:
        raise UsageError(f"{attr!r} is not an attribute name or a call") from None
    if isinstance(expr, ast.Name):
        name, args, kwargs = expr.id, [], {}
    elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        name = expr.func.id
        try:
            args = [ast.literal_eval(a) for a in expr.args]
            kwargs = {str(k.arg): ast.literal_eval(k.value) for k in expr.keywords}
        except ValueError:
            raise UsageError(f"arguments of {attr!r} must be literals") from None
    else:
        raise UsageError(f"{attr!r} is not an attribute name or a simple call")
    if not hasattr(module, name):
        raise UsageError(f"module {module.__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    if isinstance(expr, ast.Call):
        if not callable(value):
            raise UsageError(f"{module.__name__}.{name} is not callable")
        value = value(*args, **kwargs)
    return value


def load_flow(import_str: str) -> Dataflow:
    """Import the flow named by ``import_str`` (see the module docstring)."""
    target, attr = _split_import_str(import_str)
    flow = _attr_call(_import_target(target), attr)
    if not isinstance(flow, Dataflow):
        raise UsageError(
            f"{import_str!r} is a {type(flow).__name__}, not a Dataflow; point it at the "
            "Dataflow object (module:attr)"
        )
    return flow


def build_parser(prog: str = "python -m engine.run") -> argparse.ArgumentParser:
    parser = UsageParser(
        prog=prog,
        description="Run a dataflow on worker processes.",
    )
    parser.add_argument("import_str", metavar="IMPORT_STR", help="module[:attr] or file.py[:attr]")
    parser.add_argument(
        "-w", "--workers", type=_positive_int, default=1, help="worker processes (default 1)"
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
        help="recovery store (create it with: python -m recovery init DIR); resumes from it",
    )
    parser.add_argument(
        "-b",
        "--backup-interval",
        type=parse_interval,
        default=None,
        help="keep snapshots this many seconds behind the frontier before GC (default 0)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=parse_interval,
        default=None,
        help="fail when a worker makes no progress for this many seconds (default off)",
    )
    parser.add_argument(
        "--restarts",
        type=_non_negative_int,
        default=0,
        help="after a failure, start a new execution from the recovery store, up to this "
        "many times (default 0; needs -r)",
    )
    parser.add_argument("--stats", default=None, help="write the run summary as JSON here")
    parser.add_argument("-q", "--quiet", action="store_true", help="no live status line")
    return parser


def _status_printer(stream: Any) -> Any:
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
        if args.backup_interval is not None or args.restarts:
            raise UsageError("-b/--backup-interval and --restarts need -r RECOVERY_DIRECTORY")
        return None
    return RecoveryConfig(args.recovery_directory, backup_interval=args.backup_interval)


def run_cli(args: argparse.Namespace) -> int:
    """Run a parsed ``run`` command; return the exit status."""
    from engine.runtime.supervisor import run_flow

    recovery_config = _recovery_config(args)
    try:
        flow = load_flow(args.import_str)
    except UsageError:
        raise
    except Exception as ex:
        raise UsageError(
            f"loading {args.import_str!r} failed: {type(ex).__name__}: {ex} (import it in "
            "Python to see the traceback)"
        ) from None
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
    """Entry point of ``python -m engine.run``; returns the exit status."""
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


if __name__ == "__main__":
    sys.exit(main())
