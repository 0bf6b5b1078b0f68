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

Besides the core steps, a flow records the tree of operators that built them, as
Bytewax 0.21 does: :attr:`Dataflow.substeps` lists the top-level :class:`Operator` s,
each with the operators its builder called in its own ``substeps``, and its input and
output ports (:class:`SinglePort`, :class:`MultiPort`). :mod:`engine.visualize` draws
this tree.

>>> [(step.step_id, type(step).__name__) for step in flow.substeps]
[('doc_flow.nums', 'input'), ('doc_flow.double', 'map'), ('doc_flow.show', 'inspect')]
>>> flow.substeps[1].up
SinglePort(port_id='doc_flow.double.up', stream_id='doc_flow.nums.down')
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast, runtime_checkable

from engine.errors import FlowError

__all__ = [
    "CoreStep",
    "Dataflow",
    "DataflowId",
    "MultiPort",
    "Operator",
    "Port",
    "SinglePort",
    "Stream",
    "operator",
]

X_co = TypeVar("X_co", covariant=True)
F = TypeVar("F", bound=Callable[..., Any])
N = TypeVar("N")


@runtime_checkable
class Port(Protocol):
    """An input or output location of an :class:`Operator`: a :class:`SinglePort` or a
    :class:`MultiPort`. ``stream_ids`` maps the port's stream names to stream ids."""

    @property
    def port_id(self) -> str: ...

    @property
    def stream_ids(self) -> Mapping[Any, str]: ...


@dataclass(frozen=True)
class SinglePort:
    """A port carrying one stream: an operator argument or result that is a Stream.

    ``port_id`` is ``<operator's step id>.<parameter or result name>``.
    """

    port_id: str
    stream_id: str

    @property
    def stream_ids(self) -> dict[str, str]:
        """``{"stream": stream_id}``, so that every port has ``stream_ids``."""
        return {"stream": self.stream_id}


@dataclass(frozen=True)
class MultiPort(Generic[N]):
    """A port carrying several streams: a ``*args`` (keys 0, 1, ...) or ``**kwargs``
    (keys are the argument names) parameter of Streams."""

    port_id: str
    stream_ids: dict[N, str]


@dataclass(frozen=True)
class DataflowId:
    """What an :class:`Operator` records for a :class:`Dataflow` argument (``input``'s ``flow``)."""

    flow_id: str


@dataclass(frozen=True)
class Operator:
    """One operator call recorded in a flow: the base of every operator's record type.

    The :func:`operator` decorator makes a frozen dataclass subclass per operator, named
    like the builder function (``type(step).__name__ == "map"``), with a field for every
    builder parameter after the step id and for every result (``down`` for a single
    Stream, the fields of a returned dataclass such as ``trues``/``falses``). Stream
    values are recorded as :class:`SinglePort`/:class:`MultiPort`, a Dataflow as a
    :class:`DataflowId`; other values (sources, sinks, functions) as given.

    ``step_name`` is the id the caller gave, ``step_id`` the fully qualified one,
    ``substeps`` the operators its builder called. ``ups_names`` and ``dwn_names`` name the
    fields holding input and output ports; ``core`` says whether the runtime executes
    this operator itself.
    """

    step_name: str
    step_id: str
    substeps: list[Operator]
    ups_names: ClassVar[list[str]] = []
    dwn_names: ClassVar[list[str]] = []
    core: ClassVar[bool] = False


@dataclass(frozen=True)
class _Scope:
    """The operator whose builder is running: nested operators record themselves here."""

    step_id: str
    substeps: list[Operator]


#: The operator whose builder is running (None at top level).
_current_scope: ContextVar[_Scope | None] = ContextVar("shmflow_operator_scope", default=None)


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
    #: The top-level operators, in the order their builders returned (see :class:`Operator`).
    substeps: list[Operator] = field(default_factory=list, init=False, repr=False, compare=False)
    _core_steps: list[CoreStep] = field(default_factory=list, init=False, repr=False, compare=False)
    _step_ids: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.flow_id, str):
            msg = (
                f"flow_id must be a str (the flow ID must be a `str`); "
                f"got {type(self.flow_id).__name__}"
            )
            raise TypeError(msg)
        if not self.flow_id:
            msg = "flow_id must be non-empty; name the flow, e.g. Dataflow('orders')"
            raise ValueError(msg)
        if "." in self.flow_id:
            msg = (
                f"flow ID can't contain a period `.`: flow_id {self.flow_id!r} can't contain "
                "any periods '.' (it may not contain '.' because '.' joins the parts of "
                "qualified step ids); use '_' or '-' instead"
            )
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


#: Scoping errors carry Bytewax's phrase so ``pytest.raises(match=...)`` patterns port.
_SCOPING = "inconsistent stream scoping"


def _flow_of(builder_name: str, step_id: str, values: Sequence[Any]) -> Dataflow:
    """The one flow every Dataflow/Stream argument belongs to."""
    flows: list[Dataflow] = [v for v in values if isinstance(v, Dataflow)]
    flows.extend(v.flow() for v in values if isinstance(v, Stream))
    if not flows:
        msg = (
            f"{_SCOPING}: operator {builder_name!r} step {step_id!r} got no Stream or "
            "Dataflow argument; pass the upstream stream (or the flow, for inputs)"
        )
        raise TypeError(msg)
    first = flows[0]
    for other in flows[1:]:
        if other is not first:
            msg = (
                f"{_SCOPING}: step {step_id!r} mixes streams of flow {first.flow_id!r} and "
                f"flow {other.flow_id!r}; all upstreams of a step must belong to the same "
                "Dataflow"
            )
            raise FlowError(msg)
    return first


def _check_step_id(step_id: object) -> str:
    if not isinstance(step_id, str):
        msg = (
            f"step_id must be a str ('step_id' must be a `str`); "
            f"got {type(step_id).__name__} {step_id!r}"
        )
        raise TypeError(msg)
    if not step_id:
        msg = "step_id must be non-empty; name the step, e.g. 'parse'"
        raise ValueError(msg)
    if "." in step_id:
        msg = (
            f"'step_id' can't contain any periods '.': step_id {step_id!r} may not contain "
            "'.' because '.' joins the parts of qualified step ids (flow.step.sub); use '_' "
            "or '-' instead"
        )
        raise ValueError(msg)
    return step_id


_STREAM_ANNOTATION = re.compile(r"(?:\w+\.)*(?:Keyed)?Stream(?:\[.*\])?")


def _is_stream_annotation(annotation: object) -> bool:
    """Whether a builder parameter is declared as a (keyed) stream."""
    if isinstance(annotation, str):
        return _STREAM_ANNOTATION.fullmatch(annotation.strip()) is not None
    return annotation is Stream or typing.get_origin(annotation) is Stream


def _nested_stream(value: Any) -> bool:
    """Whether ``value`` is a container holding a Stream (which the flow would not see)."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(isinstance(v, Stream) or _nested_stream(v) for v in value)
    return False


def current_step_id() -> str:
    """Fully qualified id of the operator being built (call from inside an operator)."""
    scope = _current_scope.get()
    if scope is None:
        msg = "current_step_id() called outside of an operator builder"
        raise RuntimeError(msg)
    return scope.step_id


def operator(builder: F | None = None, *, _core: bool = False) -> Any:
    """Turn a builder function into an operator that records a named step.

    The builder's first parameter is the ``step_id``; the others are streams (or the
    flow) and configuration. Steps created inside the builder become sub-steps, so their
    ids are qualified by this step's id (``flow.outer.inner``). Validates that the step
    id is a str without ``.``, that every upstream belongs to the same flow and that the
    qualified id is unique. Each call also records an :class:`Operator` in the flow's
    operator tree (:attr:`Dataflow.substeps`), so builder parameters and result fields
    may not be named like the fields of :class:`Operator` (``step_name``, ``step_id``,
    ``substeps``, ...) and a parameter may not share its name with a result field.

    >>> import engine.operators as op
    >>> from engine.testing import TestingSource, run_main
    >>> @operator
    ... def add_one_then_double(step_id, up):
    ...     return op.map("double", op.map("add_one", up, lambda x: x + 1), lambda x: 2 * x)
    >>> flow = Dataflow("custom")
    >>> out = add_one_then_double("calc", op.input("inp", flow, TestingSource([1, 2])))
    >>> out.stream_id
    'custom.calc.double.flat_map_batch.down'
    >>> [step.step_id for step in flow.substeps[1].substeps]
    ['custom.calc.add_one', 'custom.calc.double']
    >>> _ = op.inspect("show", out)
    >>> run_main(flow)
    custom.show: 4
    custom.show: 6
    """

    def decorate(fn: F) -> F:
        recorder = _OperatorRecorder(fn, _core)

        @functools.wraps(fn)
        def build_step(step_id: str, *args: Any, **kwargs: Any) -> Any:
            _check_step_id(step_id)
            arguments = recorder.bind(step_id, args, kwargs)
            flow = _flow_of(fn.__name__, step_id, recorder.upstreams(step_id, arguments))
            parent = _current_scope.get()
            qualified = f"{parent.step_id if parent is not None else flow.flow_id}.{step_id}"
            if qualified in flow._step_ids:
                msg = (
                    f"step {qualified!r} already exists in flow {flow.flow_id!r}; "
                    "give every step a unique step_id"
                )
                raise ValueError(msg)
            flow._step_ids.add(qualified)
            scope = _Scope(qualified, [])
            token = _current_scope.set(scope)
            try:
                out = fn(step_id, *args, **kwargs)
            finally:
                _current_scope.reset(token)
            step = recorder.record(step_id, qualified, scope.substeps, arguments, out)
            (parent.substeps if parent is not None else flow.substeps).append(step)
            return out

        build_step.__signature__ = recorder.signature  # type: ignore[attr-defined]
        build_step._shmflow_core = _core  # type: ignore[attr-defined]
        return cast(F, build_step)

    if builder is not None:
        return decorate(builder)
    return decorate


#: Names an operator's parameters and results may not take: the fields of Operator.
_OPERATOR_FIELD_NAMES = frozenset(
    {"step_name", "step_id", "substeps", "ups_names", "dwn_names", "core"}
)


class _OperatorRecorder:
    """Builds the :class:`Operator` record of each call of one builder function."""

    def __init__(self, fn: Callable[..., Any], core: bool) -> None:
        self.name = fn.__name__
        self.module = fn.__module__
        self.signature = inspect.signature(fn)
        self.core = core
        params = list(self.signature.parameters)
        # The first parameter is the step id, whatever the builder calls it.
        self.config_params = params[1:]
        clashing = sorted(set(self.config_params) & _OPERATOR_FIELD_NAMES)
        if clashing:
            msg = (
                f"operator {self.name!r}: parameters named {', '.join(clashing)} would hide "
                "the fields of engine.dataflow.Operator; rename them"
            )
            raise TypeError(msg)
        # One record class per combination of fields and ports seen (usually one).
        self._classes: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], type] = {}

    def bind(self, step_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The builder's arguments by parameter name (defaults applied), step id left out."""
        try:
            bound = self.signature.bind(step_id, *args, **kwargs)
        except TypeError as ex:
            msg = f"operator {self.name!r} called incorrectly: {ex}"
            raise TypeError(msg) from ex
        bound.apply_defaults()
        return {name: bound.arguments[name] for name in self.config_params}

    def upstreams(self, step_id: str, arguments: Mapping[str, Any]) -> list[Any]:
        """The Stream and Dataflow arguments, checking streams go where streams are declared.

        A parameter annotated ``Stream``/``KeyedStream`` must get a Stream (each of its
        items for ``*args``/``**kwargs``); a Stream inside a list, tuple, set or dict
        argument is refused, since the step would not record it as an upstream.
        """
        found: list[Any] = []
        for name, value in arguments.items():
            param = self.signature.parameters[name]
            kind = param.kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                values, what = list(value), f"{name!r} *args all"
            elif kind is inspect.Parameter.VAR_KEYWORD:
                values, what = list(value.values()), f"{name!r} **kwargs all"
            else:
                values, what = [value], f"{name!r} argument"
            wants_stream = _is_stream_annotation(param.annotation)
            for item in values:
                if isinstance(item, Stream | Dataflow):
                    found.append(item)
                elif wants_stream:
                    msg = (
                        f"operator {self.name!r} step {step_id!r}: {what} must be a `Stream`; "
                        f"got a {type(item)!r} instead; did you forget to unpack the result "
                        "of an operator that returns multiple streams (e.g. branch(...).trues)?"
                    )
                    raise TypeError(msg)
                elif _nested_stream(item):
                    msg = (
                        f"{_SCOPING}: operator {self.name!r} step {step_id!r} got a nested "
                        f"`Stream` in arguments to this operator ({what} is a "
                        f"{type(item).__name__}); pass each stream as its own argument or "
                        "through *args so the step records it as an upstream"
                    )
                    raise FlowError(msg)
        return found

    def record(
        self,
        step_name: str,
        step_id: str,
        substeps: list[Operator],
        arguments: Mapping[str, Any],
        out: Any,
    ) -> Operator:
        """The :class:`Operator` of one finished call of the builder."""
        params = self.signature.parameters
        inputs = {
            name: _to_ref(f"{step_id}.{name}", value, params[name].kind)
            for name, value in arguments.items()
        }
        outputs = _output_refs(step_id, out)
        clashing = sorted(set(inputs) & set(outputs) | set(outputs) & _OPERATOR_FIELD_NAMES)
        if clashing:
            msg = (
                f"operator {self.name!r}: result fields named {', '.join(clashing)} clash "
                "with its parameters or the fields of engine.dataflow.Operator; rename them"
            )
            raise TypeError(msg)
        cls = self._record_class(
            tuple([*inputs, *outputs]), _port_names(inputs), _port_names(outputs)
        )
        return cast(
            Operator,
            cls(step_name=step_name, step_id=step_id, substeps=substeps, **inputs, **outputs),
        )

    def _record_class(
        self, fields: tuple[str, ...], ups: tuple[str, ...], downs: tuple[str, ...]
    ) -> type:
        key = (fields, ups, downs)
        cls = self._classes.get(key)
        if cls is None:
            cls = dataclasses.make_dataclass(
                self.name,
                [(name, Any) for name in fields],
                bases=(Operator,),
                frozen=True,
                namespace={
                    "__doc__": f"Record of a call of the {self.name!r} operator.",
                    "ups_names": list(ups),
                    "dwn_names": list(downs),
                    "core": self.core,
                },
            )
            cls.__module__ = self.module
            self._classes[key] = cls
        return cls


def _to_ref(port_id: str, value: Any, kind: object) -> Any:
    """What an Operator records for ``value``: a port for streams, else the value."""
    if isinstance(value, Stream):
        return SinglePort(port_id, value.stream_id)
    if isinstance(value, Dataflow):
        return DataflowId(value.flow_id)
    if kind is inspect.Parameter.VAR_POSITIONAL and _all_streams(value):
        return MultiPort(port_id, {i: s.stream_id for i, s in enumerate(value)})
    if kind is inspect.Parameter.VAR_KEYWORD and _all_streams(value.values()):
        return MultiPort(port_id, {name: s.stream_id for name, s in value.items()})
    return value


def _all_streams(values: Iterable[Any]) -> bool:
    values = list(values)
    return bool(values) and all(isinstance(v, Stream) for v in values)


def _output_refs(step_id: str, out: Any) -> dict[str, Any]:
    """Result fields: ``down`` for one value, a field per field of a returned dataclass."""
    if out is None:
        return {}
    if dataclasses.is_dataclass(out) and not isinstance(out, type | Stream):
        keyword = inspect.Parameter.KEYWORD_ONLY
        return {
            f.name: _to_ref(f"{step_id}.{f.name}", getattr(out, f.name), keyword)
            for f in dataclasses.fields(out)
        }
    return {"down": _to_ref(f"{step_id}.down", out, inspect.Parameter.KEYWORD_ONLY)}


def _port_names(refs: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(name for name, ref in refs.items() if isinstance(ref, SinglePort | MultiPort))


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
