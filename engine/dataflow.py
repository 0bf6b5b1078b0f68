"""Defining dataflows: :class:`Dataflow`, :class:`Stream` and the :func:`operator` decorator.

A dataflow is a description, not a running thing: operators called on streams record
steps into the flow; :func:`engine.runtime.plan.compile_plan` turns the recorded core steps into
the picklable plan that workers execute.

>>> import engine.operators as op
>>> from engine.testing import TestingSource, run_main
>>> flow = Dataflow("doc_flow")
>>> nums = op.input("nums", flow, TestingSource([1, 2]))
>>> doubled = nums.then(op.map, "double", lambda x: 2 * x)
>>> doubled.stream_id
'doc_flow.double.flat_map_batch.down'
>>> _ = op.inspect("show", doubled)
>>> run_main(flow)
doc_flow.show: 2
doc_flow.show: 4
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from engine.errors import FlowError

__all__ = ["CoreStep", "Dataflow", "Stream", "operator"]

X_co = TypeVar("X_co", covariant=True)
F = TypeVar("F", bound=Callable[..., Any])

#: Fully qualified id of the operator whose builder is running (None at top level).
_current_scope: ContextVar[str | None] = ContextVar("shmflow_operator_scope", default=None)


@dataclass(frozen=True)
class CoreStep:
    """One core step recorded in a flow: what the runtime actually executes.

    ``ups`` are the upstream stream ids in port order, ``downs`` the stream ids this step
    produces, ``config`` the operator's parameters (user callables, source, sink, ...).
    """

    step_id: str
    kind: str
    ups: tuple[str, ...]
    downs: tuple[str, ...]
    config: Mapping[str, Any]


@dataclass(frozen=True)
class Dataflow:
    """A dataflow definition. Add steps to it with operators from :mod:`engine.operators`.

    ``flow_id`` names the flow and prefixes every step id; it may not contain ``.``.
    """

    flow_id: str
    _core_steps: list[CoreStep] = field(default_factory=list, init=False, repr=False, compare=False)
    _step_ids: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.flow_id, str):
            msg = f"flow_id must be a str; got {type(self.flow_id).__name__}"
            raise TypeError(msg)
        if not self.flow_id or "." in self.flow_id:
            msg = f"flow_id {self.flow_id!r} must be non-empty and may not contain '.'"
            raise ValueError(msg)

    @property
    def core_steps(self) -> tuple[CoreStep, ...]:
        """The recorded core steps in the order they were added (a topological order)."""
        return tuple(self._core_steps)


@dataclass(frozen=True)
class Stream(Generic[X_co]):
    """A handle on the output of a step. Pass it to operators to build more steps."""

    stream_id: str
    _flow: Dataflow = field(repr=False)

    def flow(self) -> Dataflow:
        """The dataflow this stream belongs to."""
        return self._flow

    def then(self, op_fn: Callable[..., Any], step_id: str, *args: Any, **kwargs: Any) -> Any:
        """Chain an operator: ``s.then(op.map, "x", f)`` is ``op.map("x", s, f)``."""
        return op_fn(step_id, self, *args, **kwargs)


def _streams_in(values: Sequence[Any]) -> Iterator[Stream[Any]]:
    for value in values:
        if isinstance(value, Stream):
            yield value
        elif isinstance(value, list | tuple):
            yield from (v for v in value if isinstance(v, Stream))


def _flow_of(builder_name: str, step_id: str, values: Sequence[Any]) -> Dataflow:
    """The one flow every Dataflow/Stream argument belongs to."""
    flows: list[Dataflow] = [v for v in values if isinstance(v, Dataflow)]
    flows.extend(s.flow() for s in _streams_in(values))
    if not flows:
        msg = (
            f"operator {builder_name!r} step {step_id!r} got no Stream or Dataflow argument; "
            "pass the upstream stream (or the flow, for inputs)"
        )
        raise TypeError(msg)
    first = flows[0]
    for other in flows[1:]:
        if other is not first:
            msg = (
                f"step {step_id!r} mixes streams of flow {first.flow_id!r} and flow "
                f"{other.flow_id!r}; all upstreams of a step must belong to the same Dataflow"
            )
            raise FlowError(msg)
    return first


def _check_step_id(step_id: object) -> str:
    if not isinstance(step_id, str):
        msg = f"step_id must be a str; got {type(step_id).__name__} {step_id!r}"
        raise TypeError(msg)
    if not step_id or "." in step_id:
        msg = f"step_id {step_id!r} must be non-empty and may not contain '.'"
        raise ValueError(msg)
    return step_id


def current_step_id() -> str:
    """Fully qualified id of the operator being built (call from inside an operator)."""
    scope = _current_scope.get()
    if scope is None:
        msg = "current_step_id() called outside of an operator builder"
        raise RuntimeError(msg)
    return scope


def operator(builder: F | None = None, *, _core: bool = False) -> Any:
    """Turn a builder function into an operator that records a named step.

    The builder's first parameter is the ``step_id``; the others are streams (or the
    flow) and configuration. Steps created inside the builder become sub-steps, so their
    ids are qualified by this step's id (``flow.outer.inner``). Validates that the step
    id is a str without ``.``, that every upstream belongs to the same flow and that the
    qualified id is unique.

    >>> import engine.operators as op
    >>> from engine.testing import TestingSource, run_main
    >>> @operator
    ... def add_one_then_double(step_id, up):
    ...     return op.map("double", op.map("add_one", up, lambda x: x + 1), lambda x: 2 * x)
    >>> flow = Dataflow("custom")
    >>> out = add_one_then_double("calc", op.input("inp", flow, TestingSource([1, 2])))
    >>> out.stream_id
    'custom.calc.double.flat_map_batch.down'
    >>> _ = op.inspect("show", out)
    >>> run_main(flow)
    custom.show: 4
    custom.show: 6
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def build_step(step_id: str, *args: Any, **kwargs: Any) -> Any:
            _check_step_id(step_id)
            flow = _flow_of(fn.__name__, step_id, [*args, *kwargs.values()])
            parent = _current_scope.get()
            qualified = f"{parent if parent is not None else flow.flow_id}.{step_id}"
            if qualified in flow._step_ids:
                msg = (
                    f"step {qualified!r} already exists in flow {flow.flow_id!r}; "
                    "give every step a unique step_id"
                )
                raise ValueError(msg)
            flow._step_ids.add(qualified)
            token = _current_scope.set(qualified)
            try:
                return fn(step_id, *args, **kwargs)
            finally:
                _current_scope.reset(token)

        build_step.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
        build_step._shmflow_core = _core  # type: ignore[attr-defined]
        return cast(F, build_step)

    if builder is not None:
        return decorate(builder)
    return decorate


def add_core_step(
    kind: str,
    flow: Dataflow,
    ups: Sequence[Stream[Any]],
    down_names: Sequence[str],
    **config: Any,
) -> tuple[Stream[Any], ...]:
    """Record a core step for the operator being built; return its output streams.

    Only the core operators in :mod:`engine.operators` call this.
    """
    step_id = current_step_id()
    downs = tuple(f"{step_id}.{name}" for name in down_names)
    flow._core_steps.append(
        CoreStep(
            step_id=step_id,
            kind=kind,
            ups=tuple(s.stream_id for s in ups),
            downs=downs,
            config=dict(config),
        )
    )
    return tuple(Stream(d, flow) for d in downs)
