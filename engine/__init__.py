"""shmflow's engine: dataflow definition, operators, connectors and runtime.

Run a flow on worker processes with :func:`run_flow` (or ``python -m engine.run``);
run it in this process, as one worker, with :func:`engine.testing.run_main`.

``engine`` depends on ``shm`` and ``recovery``; they never import ``engine``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.runtime.supervisor import ClusterOptions, ClusterStatus, RunSummary, run_flow

__all__ = ["ClusterOptions", "ClusterStatus", "RunSummary", "run_flow"]


def __getattr__(name: str) -> Any:
    # Imported lazily: worker processes import engine modules but never the supervisor.
    if name in __all__:
        from engine.runtime import supervisor as _cluster

        return getattr(_cluster, name)
    msg = f"module 'engine' has no attribute {name!r}"
    raise AttributeError(msg)
