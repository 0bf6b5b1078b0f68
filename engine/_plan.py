"""Compiling a :class:`~engine.dataflow.Dataflow` into the plan that workers execute.

The plan is a tuple of core steps in topological order with their exchange points
marked. It holds user callables, sources and sinks, and is shipped to worker processes
with cloudpickle; the Dataflow object itself never leaves the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.dataflow import Dataflow
from engine.errors import FlowError
from engine.outputs import FixedPartitionedSink

__all__ = [
    "EXCHANGE_KEY",
    "EXCHANGE_PARTITION",
    "EXCHANGE_REDISTRIBUTE",
    "Plan",
    "PlanStep",
    "compile_plan",
]

#: Items move to the worker owning their key (before keyed stateful steps).
EXCHANGE_KEY = "key"
#: Items move to the worker owning their sink partition (before partitioned sinks).
EXCHANGE_PARTITION = "partition"
#: Batches are spread over all workers (the ``redistribute`` operator).
EXCHANGE_REDISTRIBUTE = "redistribute"

_OUTPUT_KINDS = frozenset({"output", "inspect_debug"})


@dataclass(frozen=True)
class PlanStep:
    """One core step of a plan.

    ``index`` is its position in topological order; ``exchange`` says how items must be
    moved between workers before the step sees them (None: they stay where they are).
    """

    index: int
    step_id: str
    kind: str
    ups: tuple[str, ...]
    downs: tuple[str, ...]
    config: Mapping[str, Any]
    exchange: str | None


@dataclass(frozen=True)
class Plan:
    """The executable form of a flow: core steps in topological order."""

    flow_id: str
    steps: tuple[PlanStep, ...]

    def consumers(self, stream_id: str) -> list[tuple[PlanStep, int]]:
        """The steps reading ``stream_id`` and the input port they read it on."""
        found = []
        for step in self.steps:
            for port, up in enumerate(step.ups):
                if up == stream_id:
                    found.append((step, port))
        return found

    def producer(self, stream_id: str) -> PlanStep:
        """The step writing ``stream_id``."""
        for step in self.steps:
            if stream_id in step.downs:
                return step
        msg = f"no step produces stream {stream_id!r}"
        raise KeyError(msg)

    @property
    def exchange_steps(self) -> tuple[PlanStep, ...]:
        """Steps whose input crosses workers, in topological order."""
        return tuple(s for s in self.steps if s.exchange is not None)


def _exchange_of(kind: str, config: Mapping[str, Any]) -> str | None:
    if kind == "stateful_batch":
        return EXCHANGE_KEY
    if kind == "redistribute":
        return EXCHANGE_REDISTRIBUTE
    if kind == "output" and isinstance(config["sink"], FixedPartitionedSink):
        return EXCHANGE_PARTITION
    return None


def compile_plan(flow: Dataflow) -> Plan:
    """Validate ``flow`` and turn its core steps into a :class:`Plan`.

    Raises :class:`~engine.errors.FlowError` for a flow without an input or without any
    output or inspect step.
    """
    if not isinstance(flow, Dataflow):
        msg = f"expected a Dataflow; got {type(flow).__name__} {flow!r}"
        raise TypeError(msg)
    core = flow.core_steps
    if not any(s.kind == "input" for s in core):
        msg = (
            f"flow {flow.flow_id!r} has no input step; add one with "
            "engine.operators.input(step_id, flow, source)"
        )
        raise FlowError(msg)
    if not any(s.kind in _OUTPUT_KINDS for s in core):
        msg = (
            f"flow {flow.flow_id!r} has no output step, so running it would compute "
            "nothing visible; add engine.operators.output(...) or inspect(...)"
        )
        raise FlowError(msg)
    steps = tuple(
        PlanStep(
            index=i,
            step_id=s.step_id,
            kind=s.kind,
            ups=s.ups,
            downs=s.downs,
            config=s.config,
            exchange=_exchange_of(s.kind, s.config),
        )
        for i, s in enumerate(core)
    )
    return Plan(flow_id=flow.flow_id, steps=steps)
