"""The control protocol between the supervisor and a worker process: typed messages.

Each worker has one private control connection to the supervisor (a socket pair
created by the supervisor; :class:`multiprocessing.connection.Connection` framing,
pickled messages; a worker's end is a :class:`~engine.runtime.control.ControlConnection`,
which speaks that framing without importing :mod:`multiprocessing`). Only the messages
below travel on it, in this order:

supervisor -> worker
    :class:`Bootstrap`, exactly once, right after the worker process started: the
    cloudpickled plan, the worker's index, the ring and counter specs.

    :class:`Grant`, once per :class:`Claim` the worker sent, in the same order.

worker -> supervisor
    :class:`Relay`, any number of times while the worker runs: sink items and inspector
    calls that must happen in the caller (see :mod:`engine.runtime.relay`). Sent when
    the worker's buffer holds enough items, at the end of every round and once more
    before the final message.

    :class:`Claim`, any number of times: the worker asks for the next partition of an
    input whose partitions are handed out in turn (see
    :attr:`~engine.inputs.FixedPartitionedSource.balance_parts`); the supervisor, the
    only one counting them, answers with a :class:`Grant`.

    Then ONE final message, after which the worker closes its end and exits:

    - :class:`Done`: every input is exhausted and every epoch closed (exit status 0);
    - :class:`Aborted`: a source partition raised :class:`~engine.inputs.AbortExecution`
      (exit status 0; the execution stops without an error);
    - :class:`Failed`: anything else stopped the worker; it carries the traceback, the
      step, worker and epoch (exit status 1).

    A worker that dies without a final message (a signal, ``os._exit``) is noticed by
    the supervisor through its pidfd.

Heartbeats, epochs, frontiers and metrics do NOT travel here: each worker writes them
into its own slots of the shared counter block (one writer per slot, no syscall on the
hot path), and the supervisor reads them there.

Messages are frozen dataclasses; receivers ``match`` on their type and treat anything
else as a protocol violation (:func:`check_worker_message`).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

import cloudpickle

from engine.errors import EngineRuntimeError, item_repr
from engine.runtime.snapshots import ExecutionInfo
from shm import RingSpec

__all__ = [
    "Aborted",
    "Bootstrap",
    "Claim",
    "Done",
    "Failed",
    "Grant",
    "InspectCalls",
    "Relay",
    "RelayEntry",
    "SinkItems",
    "WorkerMessage",
    "check_worker_message",
    "expect_from_supervisor",
]


# -- supervisor -> worker --------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    """Everything a worker needs, sent by the supervisor right after the worker started."""

    #: The cloudpickled :class:`~engine.runtime.plan.Plan`, with relays in place of
    #: caller-side sinks and inspectors.
    plan: bytes
    worker_index: int
    worker_count: int
    epoch_interval_s: float
    #: ``time.monotonic()`` at the start of the run: epoch 1 starts then on every worker.
    start: float
    first_epoch: int
    #: Ring to each other worker j (this worker produces).
    outbound: dict[int, RingSpec]
    #: Ring from each other worker j (this worker consumes).
    inbound: dict[int, RingSpec]
    #: Spec of the shared counter block (:class:`shm.Counters`).
    counters: Any
    #: The supervisor's pid: the worker exits when its parent is no longer that process.
    parent_pid: int
    #: The execution in the recovery store, or None when recovery is off.
    execution: ExecutionInfo | None = None
    step_count: int = 0
    #: The caller's ``sys.path``, so user modules import the same way in the worker.
    sys_path: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Grant:
    """The answer to a :class:`Claim`: partition ``index`` of the input step
    ``step_index`` (in ``list_parts()`` order) is the claiming worker's to read. An
    index past the last partition means every partition has been handed out. (Worker
    k starts with partition k without claiming it, so indexes start at the worker
    count.)"""

    step_index: int
    index: int


# -- worker -> supervisor ----------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A worker asks for the next partition of the input step ``step_index``."""

    step_index: int


@dataclass(frozen=True)
class SinkItems:
    """A batch written to the caller-side sink of step ``step_index``."""

    step_index: int
    items: list[Any]


@dataclass(frozen=True)
class InspectCalls:
    """Calls of the inspector of step ``step_index``: ``(item, epoch)`` pairs, in order."""

    step_index: int
    calls: list[tuple[Any, int]]


RelayEntry: TypeAlias = SinkItems | InspectCalls


@dataclass(frozen=True)
class Relay:
    """Sink batches and inspector calls to replay in the caller, in the order made."""

    entries: tuple[RelayEntry, ...]


@dataclass(frozen=True)
class Done:
    """Final message: the worker exhausted every input and closed every epoch."""


@dataclass(frozen=True)
class Aborted:
    """Final message: a partition of the input step ``step_index`` aborted the execution.

    ``detail`` is the :class:`~engine.inputs.AbortExecution`'s detail, for the caller's
    :meth:`~engine.inputs.Source.on_abort`.
    """

    step_index: int
    detail: Any = None


@dataclass(frozen=True)
class Failed:
    """Final message: an exception stopped the worker.

    Carries what the supervisor needs to raise ONE clear error in the caller.
    """

    #: Name of the exception's type.
    error_type: str
    message: str
    #: The formatted traceback, as printed in the worker.
    traceback: str
    #: None when the worker failed before it received its bootstrap.
    worker_index: int | None = None
    step_id: str | None = None
    epoch: int | None = None
    #: An :class:`~engine.errors.EngineRuntimeError`: the message already names the step.
    engine_error: bool = False
    #: A ``TypeError`` (re-raised in the caller as :class:`~engine.errors.ItemTypeError`).
    type_error: bool = False
    #: The exception's ``__cause__`` (often the user's exception), cloudpickled if it can be.
    cause: bytes | None = None
    #: ``"Type: message"`` of the cause, for when it cannot be unpickled in the caller.
    cause_repr: str | None = None

    @classmethod
    def from_exception(cls, ex: BaseException, worker_index: int | None) -> Failed:
        """The report of ``ex``, raised in worker ``worker_index``.

        >>> report = Failed.from_exception(ValueError("bad"), 2)
        >>> report.error_type, report.message, report.worker_index, report.cause
        ('ValueError', 'bad', 2, None)
        """
        cause = ex.__cause__
        try:
            pickled_cause = None if cause is None else cloudpickle.dumps(cause)
        except Exception:
            pickled_cause = None
        return cls(
            error_type=type(ex).__name__,
            message=str(ex),
            traceback="".join(traceback.format_exception(ex)),
            worker_index=worker_index,
            step_id=getattr(ex, "step_id", None),
            epoch=getattr(ex, "epoch", None),
            engine_error=isinstance(ex, EngineRuntimeError),
            type_error=isinstance(ex, TypeError),
            cause=pickled_cause,
            cause_repr=None if cause is None else f"{type(cause).__name__}: {cause}",
        )


M = TypeVar("M")


def expect_from_supervisor(message: object, kind: type[M], worker_index: int | None) -> M:
    """Return ``message`` if it is a ``kind`` (a supervisor -> worker message); raise
    :class:`~engine.errors.EngineRuntimeError` naming what came instead.

    >>> expect_from_supervisor(Grant(0, 3), Grant, 1)
    Grant(step_index=0, index=3)
    >>> expect_from_supervisor(("grant", 3), Grant, 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    engine.errors.EngineRuntimeError: worker 1 expected a Grant from its supervisor and got ...
    """
    if isinstance(message, kind):
        return message
    who = "a worker" if worker_index is None else f"worker {worker_index}"
    msg = (
        f"{who} expected a {kind.__name__} from its supervisor and got "
        f"{type(message).__name__} {item_repr(message)}; the supervisor runs different "
        "shmflow code than the worker: make sure both use the same installation"
    )
    raise EngineRuntimeError(msg, worker_index=worker_index)


WorkerMessage: TypeAlias = Relay | Claim | Done | Aborted | Failed

_WORKER_MESSAGES = (Relay, Claim, Done, Aborted, Failed)


def check_worker_message(message: object, worker_index: int) -> WorkerMessage:
    """Return ``message`` if it is a worker -> supervisor message; raise otherwise.

    Raises :class:`~engine.errors.EngineRuntimeError` naming the worker and what it sent.

    >>> check_worker_message(Done(), 0)
    Done()
    >>> check_worker_message(("done", None), 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    engine.errors.EngineRuntimeError: worker 1 sent an unknown control message: tuple ...
    """
    if isinstance(message, _WORKER_MESSAGES):
        return message
    expected = ", ".join(t.__name__ for t in _WORKER_MESSAGES)
    msg = (
        f"worker {worker_index} sent an unknown control message: {type(message).__name__} "
        f"{item_repr(message)}; expected one of {expected} from engine.runtime.protocol. "
        "The worker runs different shmflow code than the caller: "
        "make sure both use the same installation (same interpreter and sys.path)"
    )
    raise EngineRuntimeError(msg, worker_index=worker_index)
