"""Fixtures for the Bytewax-compatibility tests.

``entry_point`` runs a flow in this process (``run_main``) and on 2 worker processes
(``cluster_main``), the two ways a ported Bytewax test suite runs flows. The root
conftest checks every test for leaked processes and shared-memory segments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest

from engine.dataflow import Dataflow
from engine.testing import cluster_main, run_main

EntryPoint = Callable[..., None]


def _in_process(flow: Dataflow, **kwargs: Any) -> None:
    run_main(flow, **kwargs)


def _two_workers(flow: Dataflow, **kwargs: Any) -> None:
    cluster_main(flow, [], 0, worker_count_per_proc=2, **kwargs)


@pytest.fixture(params=[_in_process, _two_workers], ids=["run_main", "cluster-2"])
def entry_point(request: pytest.FixtureRequest) -> EntryPoint:
    """Run a flow: ``entry_point(flow, epoch_interval=..., recovery_config=...)``."""
    # Workers then get the test module's functions by value instead of importing it.
    cloudpickle.register_pickle_by_value(request.module)
    return request.param
