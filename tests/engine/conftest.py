"""Fixtures for engine tests.

``entry_point`` runs a flow in each execution mode where it matters: in this process
(``run_main``) and on 2 and 3 worker processes (``cluster_main``), and, where Bytewax is
installed, translated by ``engine.bytewax.to_bytewax`` on Bytewax's runtime: on 1 worker
in this process (``bytewax``) and on 2 Bytewax processes over loopback (``bytewax-2proc``,
forked children running ``bytewax.testing.cluster_main`` with ``proc_id`` 0 and 1; what
their workers write to a ``TestingSink`` and what their sources report on abort come back
to the caller's objects, see ``_bytewax_procs``). Tests that check shmflow's own errors,
and runs with a shmflow recovery store, skip the Bytewax modes. Every engine test that
runs a flow takes it from here, so the whole suite runs in every mode.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest

from engine.dataflow import Dataflow
from engine.testing import cluster_main, run_main
from tests.engine._bytewax_procs import run_on_bytewax_processes

EntryPoint = Callable[..., None]


def _run_main(flow: Dataflow, **kwargs: Any) -> None:
    run_main(flow, **kwargs)


def _cluster_main(flow: Dataflow, workers: int, **kwargs: Any) -> None:
    cluster_main(flow, [], 0, worker_count_per_proc=workers, **kwargs)


#: Name -> function running a flow with ``run_main``-style keyword arguments.
ENTRY_POINTS: dict[str, EntryPoint] = {
    "run_main": _run_main,
    "cluster-2": functools.partial(_cluster_main, workers=2),
    "cluster-3": functools.partial(_cluster_main, workers=3),
}


def _bytewax_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``run_main``'s keyword arguments for Bytewax; a test with a shmflow store skips."""
    if kwargs.get("recovery_config") is not None:
        pytest.skip("shmflow recovery stores do not move to Bytewax")
    return {name: value for name, value in kwargs.items() if name != "recovery_config"}


def _on_bytewax(flow: Dataflow, **kwargs: Any) -> None:
    """The flow translated by engine.bytewax.to_bytewax, on Bytewax's runtime (1 worker)."""
    bytewax_testing = pytest.importorskip("bytewax.testing")
    from engine.bytewax import to_bytewax

    bytewax_testing.run_main(to_bytewax(flow), **_bytewax_kwargs(kwargs))


def _on_bytewax_processes(flow: Dataflow, **kwargs: Any) -> None:
    """The translated flow on 2 Bytewax processes over loopback (see _bytewax_procs)."""
    run_on_bytewax_processes(flow, **_bytewax_kwargs(kwargs))


if importlib.util.find_spec("bytewax") is not None:
    # Every operator test's flow also runs translated on Bytewax's runtime, on 1 worker
    # and on 2 processes, and must give the same output (the `cluster` extra; the `dev`
    # extra installs Bytewax too).
    ENTRY_POINTS["bytewax"] = _on_bytewax
    ENTRY_POINTS["bytewax-2proc"] = _on_bytewax_processes


@pytest.fixture(params=list(ENTRY_POINTS))
def entry_point(request: pytest.FixtureRequest) -> EntryPoint:
    """Run a flow: ``entry_point(flow, epoch_interval=..., ...)``."""
    if request.param.startswith("bytewax") and "pytest.raises" in inspect.getsource(
        request.function
    ):
        pytest.skip("checks shmflow's own error types and messages, not a flow's output")
    # Ship the test module's functions by value: worker processes then need not import
    # the test module (and pytest with it), which keeps their start-up short.
    cloudpickle.register_pickle_by_value(request.module)
    return ENTRY_POINTS[request.param]
