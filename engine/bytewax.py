"""Run a shmflow flow on Bytewax's cluster runtime: :func:`to_bytewax`.

shmflow runs a flow on one machine. When a job outgrows it, the same flow runs on Bytewax
0.21's runtime, which clusters over several machines: :func:`to_bytewax` turns an
:class:`engine.dataflow.Dataflow` into a ``bytewax.dataflow.Dataflow`` made of the same
operators under the same step ids, and ``shmflow run IMPORT_STR --runtime bytewax -i I -a
ADDRS`` runs it there (:mod:`engine.tools.run_bytewax`). Bytewax is an optional extra:
``pip install 'shmflow[cluster]'``; without it :func:`to_bytewax` raises
:class:`BytewaxNotInstalledError` saying so. This module imports Bytewax only when called,
so importing it is always safe.

How a flow is translated:

- The runtime executes only the eight core steps of :mod:`engine.operators`; each becomes
  the Bytewax core operator of the same name (``input``, ``output``, ``flat_map_batch``,
  ``stateful_batch``, ``branch``, ``merge``, ``redistribute``, ``inspect_debug``) with the
  same callables. Windowing, joins and every other derived operator are built from these
  core steps, so translating them covers :mod:`engine.operators.windowing` too.
- Every derived operator (``map``, ``count_final``, ``fold_window``, ...) becomes a Bytewax
  operator with the same name and step id whose substeps are the translated substeps, so
  every step id at every level is the shmflow one. The top-level step ids are the ones a
  flow written against Bytewax would have. Below a derived operator the ids are those of
  shmflow's composition, which is often flatter than Bytewax's: ``map`` is
  ``map.flat_map_batch`` in both, but shmflow's ``key_on`` is ``key_on.flat_map_batch``
  where Bytewax's is ``key_on.map.flat_map_batch``, and windowing and join internals
  differ (about half the core-step ids of a flow with every operator). Those ids name the
  steps in errors and in ``bytewax.visualize``, and key Bytewax's recovery store: a store
  written by the flow written against Bytewax does not resume the translated flow.
- Sources and sinks (:class:`~engine.inputs.FixedPartitionedSource`,
  :class:`~engine.inputs.DynamicSource`, :class:`~engine.outputs.FixedPartitionedSink`,
  :class:`~engine.outputs.DynamicSink` and their subclasses, such as
  :class:`engine.testing.TestingSource` and the file connectors with their byte-range
  partitions) are wrapped in thin adapters subclassing Bytewax's classes; so is each
  :class:`~engine.operators.StatefulBatchLogic`. A ``stateful_batch`` kernel (a fast path of
  shmflow's runtime) is ignored: its builder has the same semantics.

What differs on Bytewax's runtime:

- Errors are Bytewax's (``BytewaxRuntimeError``), not :class:`~engine.errors.EngineRuntimeError`.
  On several processes, Bytewax 0.21 reports an error in any process as a
  ``PanicException`` ("Send thread panic") in every process, without the error itself.
- A :class:`~engine.outputs.CallerSink` (``TestingSink``) writes in the process that runs
  the worker, and a source's ``on_abort`` runs there: with several processes, each one
  fills or marks its own copy, and nothing comes back to the process that started them.
- ``AbortExecution`` stops only the workers of the process whose source raised it: on
  several processes, Bytewax 0.21 then waits forever (the others wait for that worker's
  progress, and it waits for them to disconnect). So a flow translated for several
  processes (``to_bytewax(flow, processes=N)``, which ``shmflow run --runtime bytewax -a``
  does) turns an abort into a failure of the source's step, which stops every process
  (after the source's ``on_abort`` ran).
- Recovery uses Bytewax's own SQLite store (create it with ``python -m bytewax.recovery
  DIR PARTS``). A shmflow LMDB store does not move to Bytewax, nor back: run state is not
  converted in either direction.
- The order of ``on_eof`` calls across keys, and of items across workers, is Bytewax's.

A step that cannot be translated (a source or sink that is not one of the kinds above)
raises :class:`BytewaxTranslationError` naming the step.

>>> import pytest; bytewax = pytest.importorskip("bytewax")
>>> import bytewax.testing
>>> import engine.operators as op
>>> from engine.dataflow import Dataflow
>>> from engine.testing import TestingSink, TestingSource
>>> out = []
>>> flow = Dataflow("bw_doc")
>>> nums = op.input("nums", flow, TestingSource([1, 2, 3]))
>>> op.output("out", op.map("double", nums, lambda x: 2 * x), TestingSink(out))
>>> bw_flow = to_bytewax(flow)
>>> [step.step_id for step in bw_flow.substeps]
['bw_doc.nums', 'bw_doc.double', 'bw_doc.out']
>>> bytewax.testing.run_main(bw_flow)
>>> out
[2, 4, 6]
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from engine.dataflow import CoreStep, Dataflow, DataflowId, MultiPort, Operator, SinglePort
from engine.errors import FlowError
from engine.inputs import AbortExecution, DynamicSource, FixedPartitionedSource
from engine.operators import StatefulBatchLogic
from engine.outputs import DynamicSink, FixedPartitionedSink

__all__ = [
    "INSTALL_HINT",
    "BytewaxAbortError",
    "BytewaxNotInstalledError",
    "BytewaxTranslationError",
    "to_bytewax",
]

#: How to install what this module needs.
INSTALL_HINT = "pip install 'shmflow[cluster]'"

_BASE_FIELDS = frozenset(f.name for f in dataclasses.fields(Operator))
_P = inspect.Parameter


class BytewaxNotInstalledError(ModuleNotFoundError):
    """Bytewax, needed to run on its cluster runtime, is not installed."""


class BytewaxTranslationError(FlowError):
    """A step of the flow has no Bytewax equivalent; the message names the step and why."""


class BytewaxAbortError(RuntimeError):
    """A source aborted a flow running on several Bytewax processes (see the module doc)."""


def to_bytewax(flow: Dataflow, *, processes: int = 1) -> Any:
    """Translate ``flow`` into a ``bytewax.dataflow.Dataflow`` with the same step ids.

    ``processes``: how many Bytewax processes will run it; with more than one, a source's
    ``AbortExecution`` fails the run instead (:class:`BytewaxAbortError`; Bytewax 0.21's
    own abort would hang there).

    Run the result with ``bytewax.testing.run_main`` or ``bytewax.run.cli_main``, or
    from the command line with ``shmflow run IMPORT_STR --runtime bytewax``. Raises
    :class:`BytewaxNotInstalledError` without Bytewax and
    :class:`BytewaxTranslationError` for a step that cannot run on it.

    >>> import pytest; bytewax = pytest.importorskip("bytewax")
    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource
    >>> flow = Dataflow("bw_eg")
    >>> words = op.input("words", flow, TestingSource(["a", "b", "a"]))
    >>> _ = op.inspect("show", op.count_final("count", words, lambda w: w))
    >>> bytewax.testing.run_main(to_bytewax(flow))
    bw_eg.show: ('a', 2)
    bw_eg.show: ('b', 1)
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    return _Translator(flow, _bytewax(), processes).translate()


# -- Bytewax, imported on first use ------------------------------------------------------------


@functools.cache
def _bytewax() -> SimpleNamespace:
    """Bytewax's modules and the adapter classes built on them (imported once)."""
    try:
        import bytewax.dataflow
        import bytewax.inputs
        import bytewax.operators
        import bytewax.outputs
    except ImportError as ex:
        msg = f"running on Bytewax's cluster runtime needs Bytewax 0.21: {INSTALL_HINT} ({ex})"
        raise BytewaxNotInstalledError(msg, name="bytewax") from ex
    bw = SimpleNamespace(
        Dataflow=bytewax.dataflow.Dataflow,
        AbortExecution=bytewax.inputs.AbortExecution,
        Stream=bytewax.dataflow.Stream,
        operator=bytewax.dataflow.operator,
        op=bytewax.operators,
    )
    bw.__dict__.update(_adapter_classes(bytewax.inputs, bytewax.outputs, bytewax.operators))
    return bw


def _adapter_classes(bw_inputs: Any, bw_outputs: Any, bw_operators: Any) -> dict[str, type]:
    """Bytewax subclasses that delegate to shmflow's sources, sinks and stateful logics."""

    class SourcePartition(bw_inputs.StatefulSourcePartition):
        def __init__(self, source: Any, part: Any, abort: _Abort) -> None:
            self._source, self._part, self._abort = source, part, abort

        def next_batch(self) -> Iterable[Any]:
            return _next_batch(self._source, self._part, self._abort)

        def next_awake(self) -> datetime | None:
            return self._part.next_awake()

        def snapshot(self) -> Any:
            return self._part.snapshot()

        def close(self) -> None:
            self._part.close()

    class FixedSource(bw_inputs.FixedPartitionedSource):
        def __init__(self, source: FixedPartitionedSource[Any, Any], abort: _Abort) -> None:
            self._source, self._abort = source, abort

        def list_parts(self) -> list[str]:
            return self._source.list_parts()

        def build_part(self, step_id: str, for_part: str, resume_state: Any) -> Any:
            part = self._source.build_part(step_id, for_part, resume_state)
            return SourcePartition(self._source, part, self._abort)

    class StatelessSourcePartition(bw_inputs.StatelessSourcePartition):
        def __init__(self, source: Any, part: Any, abort: _Abort) -> None:
            self._source, self._part, self._abort = source, part, abort

        def next_batch(self) -> Iterable[Any]:
            return _next_batch(self._source, self._part, self._abort)

        def next_awake(self) -> datetime | None:
            return self._part.next_awake()

        def close(self) -> None:
            self._part.close()

    class DynSource(bw_inputs.DynamicSource):
        def __init__(self, source: DynamicSource[Any], abort: _Abort) -> None:
            self._source, self._abort = source, abort

        def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
            part = self._source.build(step_id, worker_index, worker_count)
            return StatelessSourcePartition(self._source, part, self._abort)

    class SinkPartition(bw_outputs.StatefulSinkPartition):
        def __init__(self, part: Any) -> None:
            self._part = part

        def write_batch(self, values: list[Any]) -> None:
            self._part.write_batch(values)

        def snapshot(self) -> Any:
            return self._part.snapshot()

        def close(self) -> None:
            self._part.close()

    class FixedSink(bw_outputs.FixedPartitionedSink):
        def __init__(self, sink: FixedPartitionedSink[Any, Any]) -> None:
            self._sink = sink

        def list_parts(self) -> list[str]:
            return self._sink.list_parts()

        def part_fn(self, item_key: str) -> int:
            return self._sink.part_fn(item_key)

        def build_part(self, step_id: str, for_part: str, resume_state: Any) -> Any:
            return SinkPartition(self._sink.build_part(step_id, for_part, resume_state))

    class StatelessSinkPartition(bw_outputs.StatelessSinkPartition):
        def __init__(self, part: Any) -> None:
            self._part = part

        def write_batch(self, items: list[Any]) -> None:
            self._part.write_batch(items)

        def close(self) -> None:
            self._part.close()

    class DynSink(bw_outputs.DynamicSink):
        def __init__(self, sink: DynamicSink[Any]) -> None:
            self._sink = sink

        def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
            return StatelessSinkPartition(self._sink.build(step_id, worker_index, worker_count))

    class Logic(bw_operators.StatefulBatchLogic):
        def __init__(self, logic: StatefulBatchLogic[Any, Any, Any]) -> None:
            self._logic = logic

        def on_batch(self, values: list[Any]) -> tuple[Iterable[Any], bool]:
            return self._logic.on_batch(values)

        def on_notify(self) -> tuple[Iterable[Any], bool]:
            return self._logic.on_notify()

        def on_eof(self) -> tuple[Iterable[Any], bool]:
            return self._logic.on_eof()

        def notify_at(self) -> datetime | None:
            return self._logic.notify_at()

        def snapshot(self) -> Any:
            return self._logic.snapshot()

    return {
        "FixedSource": FixedSource,
        "DynamicSource": DynSource,
        "FixedSink": FixedSink,
        "DynamicSink": DynSink,
        "Logic": Logic,
    }


@dataclasses.dataclass(frozen=True)
class _Abort:
    """What a source's ``AbortExecution`` becomes on Bytewax: its own abort (one process),
    or a failure naming the step (several processes, where Bytewax's abort hangs)."""

    bytewax_abort: type[BaseException]
    step_id: str
    processes: int = 1

    def error(self, ex: AbortExecution) -> BaseException:
        if self.processes == 1:
            return self.bytewax_abort(str(ex))
        message = (
            f"step {self.step_id!r}: the source aborted the execution ({ex}); on "
            f"{self.processes} Bytewax processes an abort stops them all as a failure "
            "(Bytewax 0.21 would wait forever); run again to resume from the last "
            "snapshot, if recovery is on"
        )
        # Bytewax reports a failure on several processes as "Send thread panic" only.
        print(f"shmflow: error: {message}", file=sys.stderr, flush=True)
        return BytewaxAbortError(message)


def _next_batch(source: Any, part: Any, abort: _Abort) -> Iterable[Any]:
    """``part.next_batch()``, with shmflow's AbortExecution turned into Bytewax's."""
    try:
        return part.next_batch()
    except AbortExecution as ex:
        # Bytewax runs the source in this process: tell the very source object here.
        source.on_abort(ex.detail)
        raise abort.error(ex) from ex


@dataclasses.dataclass(frozen=True)
class _LogicBuilder:
    """The builder of a translated ``stateful_batch``: shmflow's logic in the adapter."""

    builder: Callable[[Any], StatefulBatchLogic[Any, Any, Any]]
    adapter: type

    def __call__(self, resume_state: Any) -> Any:
        return self.adapter(self.builder(resume_state))


# -- the translation ---------------------------------------------------------------------------


class _Translator:
    """Walks the operator tree of a flow and rebuilds it with Bytewax's operators.

    ``streams`` maps a shmflow stream id to the Bytewax stream of the same id in the
    scope being built: every operator's builder gets its own map, filled from its
    arguments and its substeps' results, as Bytewax's scoping rules require.
    """

    def __init__(self, flow: Dataflow, bw: SimpleNamespace, processes: int = 1) -> None:
        self._flow = flow
        self._bw = bw
        self._processes = processes
        self._core: dict[str, CoreStep] = {step.step_id: step for step in flow.core_steps}
        self._done: set[str] = set()

    def translate(self) -> Any:
        bw_flow = self._bw.Dataflow(self._flow.flow_id)
        streams: dict[str, Any] = {}
        for record in self._flow.substeps:
            self._emit(record, bw_flow, streams)
        missing = sorted(set(self._core) - self._done)
        if missing:
            raise BytewaxTranslationError(
                f"flow {self._flow.flow_id!r}: core steps {', '.join(missing)} are not in the "
                "flow's operator tree (recorded outside an operator?); build every step "
                "with an operator of engine.operators or an @operator function"
            )
        return bw_flow

    def _emit(self, record: Operator, bw_flow: Any, streams: dict[str, Any]) -> None:
        if type(record).core:
            self._emit_core(record, bw_flow, streams)
        else:
            self._emit_derived(record, bw_flow, streams)

    # core steps

    def _emit_core(self, record: Operator, bw_flow: Any, streams: dict[str, Any]) -> None:
        step = self._core.get(record.step_id)
        if step is None:
            raise BytewaxTranslationError(
                f"step {record.step_id!r}: a core operator without a recorded core step"
            )
        ups = [self._stream(step.step_id, stream_id, streams) for stream_id in step.ups]
        downs = self._core_op(step, record.step_name, bw_flow, ups)
        self._done.add(step.step_id)
        for stream_id, down in zip(step.downs, downs, strict=True):
            if down.stream_id != stream_id:
                raise BytewaxTranslationError(
                    f"step {step.step_id!r}: Bytewax named its output {down.stream_id!r}, "
                    f"not {stream_id!r}; this is a bug in engine.bytewax, please report it"
                )
            streams[stream_id] = down

    def _core_op(self, step: CoreStep, name: str, bw_flow: Any, ups: list[Any]) -> tuple[Any, ...]:
        bop, config = self._bw.op, step.config
        if step.kind == "input":
            return (bop.input(name, bw_flow, self._source(step)),)
        if step.kind == "output":
            bop.output(name, ups[0], self._sink(step))
            return ()
        if step.kind == "flat_map_batch":
            return (bop.flat_map_batch(name, ups[0], config["mapper"]),)
        if step.kind == "stateful_batch":
            # config["kernel"] is a fast path of shmflow's runtime; the builder means the same.
            builder = _LogicBuilder(config["builder"], self._bw.Logic)
            return (bop.stateful_batch(name, ups[0], builder),)
        if step.kind == "branch":
            out = bop.branch(name, ups[0], config["predicate"])
            return (out.trues, out.falses)
        if step.kind == "merge":
            return (bop.merge(name, *ups),)
        if step.kind == "redistribute":
            return (bop.redistribute(name, ups[0]),)
        if step.kind == "inspect_debug":
            return (bop.inspect_debug(name, ups[0], config["inspector"]),)
        raise BytewaxTranslationError(
            f"step {step.step_id!r}: core step kind {step.kind!r} has no Bytewax equivalent"
        )

    def _source(self, step: CoreStep) -> Any:
        source = step.config["source"]
        abort = _Abort(self._bw.AbortExecution, step.step_id, self._processes)
        if isinstance(source, FixedPartitionedSource):
            return self._bw.FixedSource(source, abort)
        if isinstance(source, DynamicSource):
            return self._bw.DynamicSource(source, abort)
        raise BytewaxTranslationError(
            f"step {step.step_id!r}: cannot run source {type(source).__qualname__} on "
            "Bytewax: only subclasses of engine.inputs.FixedPartitionedSource and "
            "DynamicSource translate; derive the source from one of them"
        )

    def _sink(self, step: CoreStep) -> Any:
        sink = step.config["sink"]
        if isinstance(sink, FixedPartitionedSink):
            return self._bw.FixedSink(sink)
        if isinstance(sink, DynamicSink):
            return self._bw.DynamicSink(sink)
        raise BytewaxTranslationError(
            f"step {step.step_id!r}: cannot run sink {type(sink).__qualname__} on Bytewax: "
            "only subclasses of engine.outputs.FixedPartitionedSink and DynamicSink "
            "translate; derive the sink from one of them"
        )

    # derived operators

    def _emit_derived(self, record: Operator, bw_flow: Any, streams: dict[str, Any]) -> None:
        call = _DerivedCall.of(record, self._bw)
        args, kwargs = call.arguments(record, bw_flow, streams, self._stream)

        def builder(*inner_args: Any, **inner_kwargs: Any) -> Any:
            bound = call.signature.bind(*inner_args, **inner_kwargs)
            inner_streams, inner_flow = call.inner_scope(record, bound.arguments)
            for sub in record.substeps:
                self._emit(sub, inner_flow, inner_streams)
            return call.result(record, inner_streams, self._stream)

        builder.__name__ = builder.__qualname__ = type(record).__name__
        builder.__module__ = type(record).__module__
        builder.__doc__ = type(record).__doc__
        builder.__signature__ = call.signature  # type: ignore[attr-defined]
        builder.__annotations__ = call.annotations
        results = self._bw.operator(builder)(record.step_name, *args, **kwargs)
        for name in record.dwn_names:
            port = getattr(record, name)
            value = results if call.single_down else getattr(results, name)
            streams[port.stream_id] = value

    def _stream(self, step_id: str, stream_id: str, streams: Mapping[str, Any]) -> Any:
        try:
            return streams[stream_id]
        except KeyError:
            raise BytewaxTranslationError(
                f"step {step_id!r} reads stream {stream_id!r}, which is not an argument of "
                "the operator it is part of; pass every stream an operator uses as an argument"
            ) from None


@dataclasses.dataclass(frozen=True)
class _DerivedCall:
    """How to call the Bytewax operator standing for one derived shmflow operator.

    Its signature mirrors the shmflow operator's recorded fields: a Stream parameter per
    single port, ``*name``/``**name`` for a multi-port, a Dataflow for a flow, ``Any`` for
    the rest; its result is a Stream, ``None`` or a dataclass of the output ports.
    """

    signature: inspect.Signature
    annotations: dict[str, Any]
    single_down: bool

    @staticmethod
    def of(record: Operator, bw: SimpleNamespace) -> _DerivedCall:
        params = [_P("step_id", _P.POSITIONAL_OR_KEYWORD)]
        annotations: dict[str, Any] = {"step_id": str}
        kind: Any = _P.POSITIONAL_OR_KEYWORD  # keyword-only once a *args is in
        var_keyword: _P | None = None
        for name in _input_fields(record):
            value = getattr(record, name)
            annotations[name] = _annotation(value, bw)
            if isinstance(value, MultiPort) and _int_keys(value) and kind is not _P.KEYWORD_ONLY:
                params.append(_P(name, _P.VAR_POSITIONAL))
                kind = _P.KEYWORD_ONLY
            elif isinstance(value, MultiPort):
                var_keyword = _P(name, _P.VAR_KEYWORD)
            else:
                params.append(_P(name, kind))
        if var_keyword is not None:
            params.append(var_keyword)
        if not any(isinstance(getattr(record, n), _SCOPED) for n in _input_fields(record)):
            raise BytewaxTranslationError(
                f"step {record.step_id!r}: operator {type(record).__name__!r} takes neither a "
                "stream nor a flow, so it has no place in a Bytewax flow"
            )
        downs = [getattr(record, name) for name in record.dwn_names]
        if any(isinstance(port, MultiPort) for port in downs):
            raise BytewaxTranslationError(
                f"step {record.step_id!r}: operator {type(record).__name__!r} returns a "
                "mapping of streams, which a Bytewax operator cannot; return a dataclass "
                "with a field per stream"
            )
        single_down = record.dwn_names == ["down"]
        if not record.dwn_names:
            annotations["return"] = type(None)
        elif single_down:
            annotations["return"] = bw.Stream
        else:
            fields = [(name, bw.Stream) for name in record.dwn_names]
            annotations["return"] = dataclasses.make_dataclass(
                f"{type(record).__name__}_out", fields, frozen=True
            )
        return _DerivedCall(inspect.Signature(params), annotations, single_down)

    def arguments(
        self,
        record: Operator,
        bw_flow: Any,
        streams: Mapping[str, Any],
        lookup: Callable[[str, str, Mapping[str, Any]], Any],
    ) -> tuple[list[Any], dict[str, Any]]:
        """The arguments of the call in the enclosing scope."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name in _input_fields(record):
            param = self.signature.parameters[name]
            value = getattr(record, name)
            if isinstance(value, MultiPort):
                ordered = [value.stream_ids[key] for key in value.stream_ids]
                found = [lookup(record.step_id, sid, streams) for sid in ordered]
                if param.kind is _P.VAR_POSITIONAL:
                    args.extend(found)
                else:
                    kwargs.update(zip(value.stream_ids, found, strict=True))
                continue
            if isinstance(value, SinglePort):
                value = lookup(record.step_id, value.stream_id, streams)
            elif isinstance(value, DataflowId):
                value = bw_flow
            if param.kind is _P.POSITIONAL_OR_KEYWORD:
                args.append(value)
            else:
                kwargs[name] = value
        return args, kwargs

    def inner_scope(
        self, record: Operator, arguments: Mapping[str, Any]
    ) -> tuple[dict[str, Any], Any]:
        """The streams and the flow inside the operator, from the re-scoped arguments."""
        streams: dict[str, Any] = {}
        flow: Any = None
        for name in _input_fields(record):
            value, got = getattr(record, name), arguments[name]
            if isinstance(value, SinglePort):
                streams[value.stream_id] = got
                flow = got.flow() if flow is None else flow
            elif isinstance(value, MultiPort):
                found = (
                    got if isinstance(got, dict) else dict(zip(value.stream_ids, got, strict=True))
                )
                for key, stream_id in value.stream_ids.items():
                    streams[stream_id] = found[key]
                    flow = found[key].flow() if flow is None else flow
            elif isinstance(value, DataflowId):
                flow = got
        return streams, flow

    def result(
        self,
        record: Operator,
        streams: Mapping[str, Any],
        lookup: Callable[[str, str, Mapping[str, Any]], Any],
    ) -> Any:
        """What the builder returns: the streams of the operator's output ports."""
        downs = {
            name: lookup(record.step_id, getattr(record, name).stream_id, streams)
            for name in record.dwn_names
        }
        if not downs:
            return None
        if self.single_down:
            return downs["down"]
        return self.annotations["return"](**downs)


_SCOPED = (SinglePort, MultiPort, DataflowId)


def _input_fields(record: Operator) -> list[str]:
    """The recorded parameters of an operator (everything but the base fields and results)."""
    return [
        f.name
        for f in dataclasses.fields(record)
        if f.name not in _BASE_FIELDS and f.name not in record.dwn_names
    ]


def _int_keys(port: MultiPort[Any]) -> bool:
    return all(isinstance(key, int) for key in port.stream_ids)


def _annotation(value: Any, bw: SimpleNamespace) -> Any:
    if isinstance(value, SinglePort | MultiPort):
        return bw.Stream
    if isinstance(value, DataflowId):
        return bw.Dataflow
    return Any
