"""Compiling a :class:`~engine.dataflow.Dataflow` into the plan that workers execute.

The plan is a tuple of core steps in topological order with their exchange points
marked. It holds user callables, sources and sinks, and is shipped to worker processes
with cloudpickle; the Dataflow object itself never leaves the caller.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.dataflow import CoreStep, Dataflow
from engine.errors import FlowError
from engine.operators._core import StatefulKernel
from engine.outputs import FixedPartitionedSink

__all__ = [
    "EXCHANGE_KEY",
    "EXCHANGE_PARTITION",
    "EXCHANGE_REDISTRIBUTE",
    "BranchConfig",
    "FlatMapBatchConfig",
    "InputConfig",
    "InspectConfig",
    "MergeConfig",
    "OutputConfig",
    "Plan",
    "PlanStep",
    "RedistributeConfig",
    "StatefulBatchConfig",
    "StepConfig",
    "StepKind",
    "compile_plan",
]

#: Items move to the worker owning their key (before keyed stateful steps).
EXCHANGE_KEY = "key"
#: Items move to the worker owning their sink partition (before partitioned sinks).
EXCHANGE_PARTITION = "partition"
#: Batches are spread over all workers (the ``redistribute`` operator).
EXCHANGE_REDISTRIBUTE = "redistribute"


class StepKind(StrEnum):
    """The core steps the runtime executes; every operator is built from these."""

    INPUT = "input"
    OUTPUT = "output"
    FLAT_MAP_BATCH = "flat_map_batch"
    STATEFUL_BATCH = "stateful_batch"
    BRANCH = "branch"
    MERGE = "merge"
    REDISTRIBUTE = "redistribute"
    INSPECT_DEBUG = "inspect_debug"


@dataclass(frozen=True)
class InputConfig:
    source: Any


@dataclass(frozen=True)
class OutputConfig:
    sink: Any


@dataclass(frozen=True)
class FlatMapBatchConfig:
    mapper: Any


@dataclass(frozen=True)
class StatefulBatchConfig:
    """``builder`` makes the per-key logic; ``kernel``, when the operator declared one,
    lets the runtime run the step as a batch kernel with the same results."""

    builder: Any
    kernel: StatefulKernel | None = None


@dataclass(frozen=True)
class BranchConfig:
    predicate: Any


@dataclass(frozen=True)
class MergeConfig:
    pass


@dataclass(frozen=True)
class RedistributeConfig:
    pass


@dataclass(frozen=True)
class InspectConfig:
    inspector: Any


StepConfig = (
    InputConfig
    | OutputConfig
    | FlatMapBatchConfig
    | StatefulBatchConfig
    | BranchConfig
    | MergeConfig
    | RedistributeConfig
    | InspectConfig
)

_CONFIG_TYPES: dict[StepKind, type[Any]] = {
    StepKind.INPUT: InputConfig,
    StepKind.OUTPUT: OutputConfig,
    StepKind.FLAT_MAP_BATCH: FlatMapBatchConfig,
    StepKind.STATEFUL_BATCH: StatefulBatchConfig,
    StepKind.BRANCH: BranchConfig,
    StepKind.MERGE: MergeConfig,
    StepKind.REDISTRIBUTE: RedistributeConfig,
    StepKind.INSPECT_DEBUG: InspectConfig,
}

_OUTPUT_KINDS = frozenset({StepKind.OUTPUT, StepKind.INSPECT_DEBUG})


@dataclass(frozen=True)
class PlanStep:
    """One core step of a plan.

    ``index`` is its position in topological order; ``config`` the typed parameters of
    its ``kind``; ``exchange`` says how items must be moved between workers before the
    step sees them (None: they stay where they are).
    """

    index: int
    step_id: str
    kind: StepKind
    ups: tuple[str, ...]
    downs: tuple[str, ...]
    config: StepConfig
    exchange: str | None

    def with_config(self, **changes: Any) -> PlanStep:
        """A copy of this step with some config fields replaced."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **changes))


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

    def with_steps(self, steps: tuple[PlanStep, ...]) -> Plan:
        """A copy of this plan with other steps (same flow id)."""
        return dataclasses.replace(self, steps=steps)


def _exchange_of(kind: StepKind, config: StepConfig) -> str | None:
    if kind is StepKind.STATEFUL_BATCH:
        return EXCHANGE_KEY
    if kind is StepKind.REDISTRIBUTE:
        return EXCHANGE_REDISTRIBUTE
    if isinstance(config, OutputConfig) and isinstance(config.sink, FixedPartitionedSink):
        return EXCHANGE_PARTITION
    return None


def _plan_step(index: int, core: CoreStep) -> PlanStep:
    kind = StepKind(core.kind)
    config = _CONFIG_TYPES[kind](**core.config)
    return PlanStep(
        index=index,
        step_id=core.step_id,
        kind=kind,
        ups=core.ups,
        downs=core.downs,
        config=config,
        exchange=_exchange_of(kind, config),
    )


def compile_plan(flow: Dataflow) -> Plan:
    """Validate ``flow`` and turn its core steps into a :class:`Plan`.

    Raises :class:`~engine.errors.FlowError` for a flow without an input or without any
    output or inspect step.
    """
    if not isinstance(flow, Dataflow):
        msg = f"expected a Dataflow; got {type(flow).__name__} {flow!r}"
        raise TypeError(msg)
    steps = tuple(_plan_step(i, s) for i, s in enumerate(flow.core_steps))
    if not any(s.kind is StepKind.INPUT for s in steps):
        msg = (
            f"flow {flow.flow_id!r} has no input step (a Dataflow needs to contain at least "
            "one input step); add one with "
            "engine.operators.input(step_id, flow, source)"
        )
        raise FlowError(msg)
    if not any(s.kind in _OUTPUT_KINDS for s in steps):
        msg = (
            f"flow {flow.flow_id!r} has no output step, so running it would compute "
            "nothing visible (a Dataflow needs to contain at least one output or inspect "
            "step); add engine.operators.output(...) or inspect(...)"
        )
        raise FlowError(msg)
    return Plan(flow_id=flow.flow_id, steps=steps)
