"""Relays: caller-side sinks and inspectors of a flow that runs on worker processes.

Some steps must take effect in the process that started the run: a
:class:`~engine.outputs.CallerSink` (the testing sink is one) writes into the caller's
memory, and an inspector is the caller's function. Before the plan
is shipped, :func:`with_relays` replaces them with relays and keeps the originals in a
:class:`CallerRelays`:

worker side
    A :class:`RelaySink`'s writers and a :class:`RelayInspector` add what they get to
    the worker's :class:`RelayChannel`, which sends it to the supervisor as
    :class:`~engine.runtime.protocol.Relay` messages (batched; flushed at the end of
    every round and before the worker's final message). A relayed inspector call
    carries the item pickled at inspection time, so the caller's inspector sees it as
    it was then, not as later steps of the worker mutated it.

caller side
    The supervisor hands every ``Relay`` it receives to :meth:`CallerRelays.deliver`,
    which calls ``write_in_caller`` on the original sink and the original inspector
    (on the unpickled item), in the order the worker made the calls.

Every other sink is built on the workers, as in-process. So is an inspector whose
``runs_in_worker`` attribute is true, such as the default printer of
:func:`engine.operators.inspect`: it prints on the worker at inspection time, to the
worker's stdout (inherited from the caller), in order with that worker's other output.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.errors import EngineRuntimeError
from engine.outputs import CallerSink, DynamicSink, StatelessSinkPartition
from engine.runtime.control import ControlConnection
from engine.runtime.plan import InspectConfig, OutputConfig, Plan
from engine.runtime.protocol import InspectCalls, Relay, RelayEntry, SinkItems

__all__ = [
    "RELAY_FLUSH_ITEMS",
    "CallerRelays",
    "RelayChannel",
    "RelayInspector",
    "RelaySink",
    "runs_in_worker",
    "with_relays",
]

#: A worker sends its buffered relay entries once they hold this many items or calls.
RELAY_FLUSH_ITEMS = 1000


# -- worker side ---------------------------------------------------------------------------


class RelayChannel:
    """Buffers a worker's relay entries and sends them to the supervisor in bulk.

    A worker process installs its channel as :attr:`current`; relays that find none
    (the plan runs in the caller, which never happens for a shipped plan) drop what
    they get.
    """

    #: The channel of this worker process (set by its entry point).
    current: ClassVar[RelayChannel | None] = None

    def __init__(self, conn: ControlConnection) -> None:
        self.conn = conn
        self.entries: list[RelayEntry] = []
        self.size = 0

    def add_items(self, step_index: int, items: list[Any]) -> None:
        """Buffer a batch written to the relayed sink of step ``step_index``."""
        self.entries.append(SinkItems(step_index, items))
        self._grew(len(items))

    def add_call(self, step_index: int, item: Any, epoch: int) -> None:
        """Buffer one call of the relayed inspector of step ``step_index``.

        :class:`RelayInspector` passes the item pickled, as it was at inspection time.
        """
        last = self.entries[-1] if self.entries else None
        if isinstance(last, InspectCalls) and last.step_index == step_index:
            last.calls.append((item, epoch))  # consecutive calls share one entry
        else:
            self.entries.append(InspectCalls(step_index, [(item, epoch)]))
        self._grew(1)

    def _grew(self, count: int) -> None:
        self.size += count
        if self.size >= RELAY_FLUSH_ITEMS:
            self.flush()

    def flush(self) -> None:
        """Send what is buffered as one :class:`~engine.runtime.protocol.Relay`."""
        if self.entries:
            self.conn.send(Relay(tuple(self.entries)))
            self.entries = []
            self.size = 0


class _RelayPartition(StatelessSinkPartition[Any]):
    def __init__(self, step_index: int) -> None:
        self.step_index = step_index

    def write_batch(self, items: list[Any]) -> None:
        channel = RelayChannel.current
        if channel is not None:
            channel.add_items(self.step_index, list(items))


class RelaySink(DynamicSink[Any]):
    """Stands in for a :class:`~engine.outputs.CallerSink` on worker processes."""

    def __init__(self, step_index: int) -> None:
        self.step_index = step_index

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RelayPartition:
        return _RelayPartition(self.step_index)


@dataclass(frozen=True)
class RelayInspector:
    """Stands in for a caller-side inspector on worker processes.

    It pickles every item when it is inspected: later steps of the worker may mutate
    the item before the buffered call reaches the caller.
    """

    step_index: int

    def __call__(self, step_id: str, item: Any, epoch: int, worker_index: int) -> None:
        channel = RelayChannel.current
        if channel is not None:
            pickled = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            channel.add_call(self.step_index, pickled, epoch)


# -- caller side ---------------------------------------------------------------------------


Inspector = Callable[[str, Any, int, int], None]


@dataclass(frozen=True)
class CallerRelays:
    """The caller-side sinks and inspectors of a plan, by step index."""

    sinks: dict[int, tuple[str, CallerSink[Any]]]
    inspectors: dict[int, tuple[str, Inspector]]

    def deliver(self, relay: Relay, worker_index: int) -> None:
        """Replay what worker ``worker_index`` relayed, in order.

        Raises :class:`~engine.errors.EngineRuntimeError` naming the step when the
        caller's sink or inspector raises (the original exception is the ``__cause__``).
        """
        for entry in relay.entries:
            match entry:
                case SinkItems(step_index=index, items=items):
                    step_id, sink = self._target(self.sinks, index, worker_index)
                    with _failing_in_caller(step_id, worker_index, "writing relayed items"):
                        sink.write_in_caller(items, worker_index)
                case InspectCalls(step_index=index, calls=calls):
                    step_id, inspector = self._target(self.inspectors, index, worker_index)
                    with _failing_in_caller(step_id, worker_index, "inspecting relayed items"):
                        for pickled, epoch in calls:
                            inspector(step_id, pickle.loads(pickled), epoch, worker_index)

    @staticmethod
    def _target(table: dict[int, Any], step_index: int, worker_index: int) -> Any:
        try:
            return table[step_index]
        except KeyError:
            msg = (
                f"worker {worker_index} relayed items for step #{step_index}, which has no "
                "caller-side sink or inspector; the worker runs a different plan than the "
                "caller: make sure both use the same shmflow installation"
            )
            raise EngineRuntimeError(msg, worker_index=worker_index) from None


@contextmanager
def _failing_in_caller(step_id: str, worker_index: int, doing: str) -> Iterator[None]:
    """Turn an exception of caller-side user code into an EngineRuntimeError."""
    try:
        yield
    except EngineRuntimeError:
        raise
    except Exception as ex:
        msg = (
            f"step {step_id!r} failed in the caller process {doing} of worker "
            f"{worker_index}: {type(ex).__name__}: {ex}"
        )
        raise EngineRuntimeError(msg, step_id=step_id, worker_index=worker_index) from ex


def runs_in_worker(inspector: Inspector) -> bool:
    """Whether ``inspector`` stays in the shipped plan (its ``runs_in_worker`` is true)."""
    return getattr(inspector, "runs_in_worker", False) is True


def with_relays(plan: Plan) -> tuple[Plan, CallerRelays]:
    """``plan`` with relays in place of caller-side sinks and inspectors, and those.

    Inspectors that :func:`runs_in_worker` stay in the plan and are not relayed.
    """
    sinks: dict[int, tuple[str, CallerSink[Any]]] = {}
    inspectors: dict[int, tuple[str, Inspector]] = {}
    steps = []
    for step in plan.steps:
        config = step.config
        if isinstance(config, OutputConfig) and isinstance(config.sink, CallerSink):
            sinks[step.index] = (step.step_id, config.sink)
            step = step.with_config(sink=RelaySink(step.index))
        elif isinstance(config, InspectConfig) and not runs_in_worker(config.inspector):
            inspectors[step.index] = (step.step_id, config.inspector)
            step = step.with_config(inspector=RelayInspector(step.index))
        steps.append(step)
    return plan.with_steps(tuple(steps)), CallerRelays(sinks, inspectors)
