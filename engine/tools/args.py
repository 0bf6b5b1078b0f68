"""What the commands share: exit statuses, usage errors, value parsers and flow loading.

Every command (``shmflow run|tune|bench``) parses with :class:`UsageParser`, so bad input
is one line on stderr and exit status :data:`EXIT_USAGE`, and names its flow with an
``IMPORT_STR`` loaded by :func:`load_flow`:

- ``module`` or ``module:attr`` (``attr`` defaults to ``flow``);
- ``module:make_flow(4, "x")``: a call of a factory with literal arguments;
- a path to a ``.py`` file, optionally with ``:attr`` as above. The file's functions are
  shipped to the workers by value, so the workers need not import it. It is loaded under
  the module name ``shmflow_user_<stem>``, so any file name works, ``recovery.py``
  included.

Our own packages ``engine``, ``shm`` and ``recovery`` are imported from shmflow's location
before the user's directory goes on ``sys.path`` (:mod:`engine.tools.own_packages`), so a
user's file of the same name never shadows them; by module name such a file cannot be
loaded (``recovery:flow`` names our package), by path it can (``./recovery.py``).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import cloudpickle

from engine.dataflow import Dataflow
from engine.tools.bytewax_imports import NoBytewaxEquivalentError, is_bytewax_module
from engine.tools.own_packages import OWN_PACKAGES, import_own_packages

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "UsageError",
    "UsageParser",
    "load_flow",
    "load_flow_or_usage_error",
    "non_negative_int",
    "parse_interval",
    "parse_repeat",
    "positive_int",
    "split_import_str",
    "whole_number",
]

#: The flow failed (the error names the step, worker and epoch).
EXIT_FAILED = 1
#: Bad command-line input.
EXIT_USAGE = 2
#: Stopped with Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130
#: Stopped with SIGTERM or SIGHUP (128 + SIGTERM).
EXIT_TERMINATED = 143


class UsageError(Exception):
    """Bad command-line input; the message is printed as one line, exit status 2."""


class UsageParser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`UsageError` (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# -- values ----------------------------------------------------------------------------------


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


def positive_int(what: str) -> Callable[[str], int]:
    """A parser (an argparse ``type``) of whole numbers ``>= 1``; ``what`` names them.

    >>> positive_int("worker count")("4")
    4
    >>> positive_int("worker count")("0")
    Traceback (most recent call last):
    ...
    engine.tools.args.UsageError: worker count must be at least 1, got 0
    """

    def parse(text: str) -> int:
        return whole_number(text, what, 1)

    return parse


def non_negative_int(what: str) -> Callable[[str], int]:
    """A parser (an argparse ``type``) of whole numbers ``>= 0``; ``what`` names them.

    >>> non_negative_int("--restarts")("0")
    0
    """

    def parse(text: str) -> int:
        return whole_number(text, what, 0)

    return parse


def parse_repeat(text: str) -> int:
    """Parse ``--repeat`` (rounds over all worker counts): a whole number >= 1.

    >>> parse_repeat("3")
    3
    """
    return whole_number(text, "--repeat", 1)


# -- the flow --------------------------------------------------------------------------------


def split_import_str(import_str: str) -> tuple[str, str]:
    """Split an ``IMPORT_STR`` into the module or file and the attribute (or call).

    >>> split_import_str("engine.examples.wordcount")
    ('engine.examples.wordcount', 'flow')
    >>> split_import_str("flows.py:make(2)")
    ('flows.py', 'make(2)')
    """
    target, _, attr = import_str.partition(":")
    return target, attr or "flow"


def _import_target(target: str, attr: str) -> Any:
    # Before any user directory goes on sys.path: ours must not be shadowed.
    import_own_packages()
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
    if target in OWN_PACKAGES:
        suffix = "" if attr == "flow" else f":{attr}"
        raise UsageError(
            f"{target!r} is the name of shmflow's own package, so a flow saved as "
            f"{target}.py cannot be loaded by module name; give its path instead: "
            f"./{target}.py{suffix}"
        )
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
    """Import the flow named by ``import_str`` (see the module docstring).

    A bad ``import_str`` raises :class:`UsageError`; an exception raised by the user's
    module or factory propagates with its traceback.

    >>> load_flow("engine.examples.wordcount").flow_id
    'wordcount'
    """
    target, attr = split_import_str(import_str)
    flow = _attr_call(_import_target(target, attr), attr)
    if not isinstance(flow, Dataflow) and is_bytewax_module(type(flow).__module__):
        raise UsageError(
            f"{import_str!r} is a Dataflow of the real Bytewax ({type(flow).__module__}); "
            "run it with --bytewax-imports, or change its imports from bytewax.* to engine.*"
        )
    if not isinstance(flow, Dataflow):
        raise UsageError(
            f"{import_str!r} is a {type(flow).__name__}, not a Dataflow; point it at the "
            "Dataflow object (module:attr)"
        )
    return flow


def load_flow_or_usage_error(import_str: str) -> Dataflow:
    """:func:`load_flow`, with failures of the user's code as one-line usage errors too."""
    try:
        return load_flow(import_str)
    except UsageError:
        raise
    except ModuleNotFoundError as ex:
        if isinstance(ex, NoBytewaxEquivalentError) or not is_bytewax_module(ex.name or ""):
            raise _loading_failed(import_str, ex) from None
        raise UsageError(
            f"loading {import_str!r} failed: {ex}; to run a Bytewax flow unchanged add "
            "--bytewax-imports"
        ) from None
    except Exception as ex:
        raise _loading_failed(import_str, ex) from None


def _loading_failed(import_str: str, ex: Exception) -> UsageError:
    return UsageError(
        f"loading {import_str!r} failed: {type(ex).__name__}: {ex} (import it in Python to "
        "see the traceback)"
    )
