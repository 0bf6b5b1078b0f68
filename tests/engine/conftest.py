"""Fixtures for engine tests.

``entry_point`` runs a flow in each execution mode where it matters. Every engine test
that runs a flow takes it from here, so adding an execution mode (e.g. N worker
processes) runs the whole suite in that mode without rewriting tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.dataflow import Dataflow
from engine.testing import run_main

EntryPoint = Callable[..., None]


def _run_main(flow: Dataflow, **kwargs: Any) -> None:
    run_main(flow, **kwargs)


#: Name -> function running a flow with ``run_main``-style keyword arguments.
ENTRY_POINTS: dict[str, EntryPoint] = {
    "run_main": _run_main,
}


@pytest.fixture(params=list(ENTRY_POINTS))
def entry_point(request: pytest.FixtureRequest) -> EntryPoint:
    """Run a flow: ``entry_point(flow, epoch_interval=..., ...)``."""
    return ENTRY_POINTS[request.param]
