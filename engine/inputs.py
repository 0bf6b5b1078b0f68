"""Interfaces for reading items into a dataflow, plus helpers for writing sources.

A dataflow reads from a `Source` with the `input` operator. Do not subclass `Source`
itself; pick the kind that fits the system you read from:

- `FixedPartitionedSource`: a fixed set of named partitions (files, topic partitions).
  Each partition is read by exactly one worker and keeps a resume state, so a resumed
  execution continues after the last item of the last closed epoch.
- `DynamicSource`: every worker builds its own reader and gets disjoint data; there is
  no resume state.
- `SimplePollingSource`: one partition that calls `next_item` on a fixed interval.

Partitions are polled cooperatively by the worker: `next_batch` must never block. Return
an empty batch when nothing is ready and use `next_awake` to say when to poll again.
The helpers `batch`, `batch_getter`, `batch_getter_ex` and `batch_async` turn common
item producers into non-blocking batch producers.
"""

from __future__ import annotations

import queue
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Callable, Generator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

if TYPE_CHECKING:
    import asyncio

    # Only type checkers read this import, from the typing_extensions stubs they bundle
    # (no run-time dependency): it gives `Sn` Bytewax's default (PEP 696, Python 3.13).
    import typing_extensions

__all__ = [
    "AbortExecution",
    "DynamicSource",
    "FixedPartitionedSource",
    "S",
    "SimplePollingSource",
    "Sn",
    "Source",
    "StatefulSourcePartition",
    "StatelessSourcePartition",
    "X",
    "batch",
    "batch_async",
    "batch_getter",
    "batch_getter_ex",
]

X = TypeVar("X")
"""Type of the items a source produces."""

S = TypeVar("S")
"""Type of a partition's resume state."""

if TYPE_CHECKING:
    Sn = typing_extensions.TypeVar("Sn", default=None)
else:
    Sn = TypeVar("Sn")  # SimplePollingSource.__class_getitem__ supplies the default
"""Type of a `SimplePollingSource` resume state (`None` unless you override `snapshot`).

It defaults to `None`, as in Bytewax: `SimplePollingSource[int]` is
`SimplePollingSource[int, None]`.
"""


class AbortExecution(RuntimeError):
    """Raise this from a source partition to abort the current execution on purpose.

    The execution stops where it is, as if it had crashed, except that no error is
    reported: the run returns normally, as in Bytewax. Nothing after
    the last closed epoch is committed, so with a recovery store the next execution
    resumes from the last cluster frontier and replays the rest. Use it to test
    recovery. (Do not count on partitions being closed after an abort.)

    ``detail`` (keyword only, picklable) is handed to the source's
    :meth:`Source.on_abort` in the process that started the run, so the source object
    there learns what aborted even when a worker process raised this.

    >>> ex = AbortExecution("marker 3 reached", detail=3)
    >>> isinstance(ex, RuntimeError), ex.detail
    (True, 3)
    """

    def __init__(self, *args: object, detail: Any = None) -> None:
        super().__init__(*args)
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle their args only; keep the detail too.
        return (_rebuild_abort, (type(self), self.args, self.detail))


def _rebuild_abort(
    cls: type[AbortExecution], args: tuple[object, ...], detail: Any
) -> AbortExecution:
    return cls(*args, detail=detail)


class Source(ABC, Generic[X]):
    """Where a dataflow reads items from.

    This is the common base of every source kind. Do not subclass it directly:
    subclass `FixedPartitionedSource`, `DynamicSource` or `SimplePollingSource`.
    """

    def on_abort(self, detail: Any) -> None:
        """Called when a partition of this source aborted the execution.

        A partition raised `AbortExecution(..., detail=detail)`. This runs in the process
        that started the run, on the source object given to the `input` step, after the
        execution stopped, once for every worker that reported the abort. Worker
        processes read copies of the source, so this is the place to remember, in the
        caller, what a worker saw: for example `engine.testing.TestingSource` marks its
        `ABORT` marker as fired so that the next execution skips it. The default does
        nothing.
        """


class StatefulSourcePartition(ABC, Generic[X, S]):
    """One partition of a `FixedPartitionedSource`, able to report its read position."""

    @abstractmethod
    def next_batch(self) -> Iterable[X]:
        """Return the items that are ready now, without blocking.

        Return an empty batch when nothing is ready yet.

        Raises:
            StopIteration: The partition is exhausted (end of input).
        """

    def next_awake(self) -> datetime | None:
        """When `next_batch` should be called next.

        Called after building the partition and after each `next_batch`; only the
        latest answer counts. `None` means "as soon as possible" (with a short pause
        after an empty batch so an idle source does not spin). Return a time here
        instead of sleeping in `next_batch`.
        """
        return None

    @abstractmethod
    def snapshot(self) -> S:
        """Return the resume state: the position just after the last item returned.

        Building the partition again with this state must continue with the item
        after the last one `next_batch` returned, never repeating it. Never called
        after `close`.
        """

    def close(self) -> None:
        """Release resources when the input is finished.

        Called only when the dataflow completes; not on failure or abort.
        """


class FixedPartitionedSource(Source[X], Generic[X, S]):
    """A source made of a fixed set of named, independent partitions.

    Each partition is read by exactly one worker, and its resume state is snapshotted
    at every epoch close and at EOF, so a source that can seek supports exactly-once
    reading. Partitions must hold distinct data: items present in two partitions are
    processed twice.

    Which worker reads which partition: by default each worker gets a fixed share up
    front (every ``worker_count``-th partition) and polls all of it at once. A source
    of finite partitions may set :attr:`balance_parts`; the partitions are then handed
    out in turn: worker k of n starts with partition k, and whichever worker has read
    its partition gets the next one in ``list_parts()`` order (one open per worker), so
    a faster worker reads more of them, all workers finish together, and one worker
    reads them in order.
    """

    #: Hand the partitions out in turn instead of in fixed shares (see the class doc).
    #: Only for partitions that end: a partition not handed out yet is not read at all
    #: until a worker has finished one of its own.
    balance_parts: ClassVar[bool] = False

    @abstractmethod
    def list_parts(self) -> list[str]:
        """Return the keys of the partitions that can be read."""

    @abstractmethod
    def build_part(
        self, step_id: str, for_part: str, resume_state: S | None
    ) -> StatefulSourcePartition[X, S]:
        """Build the partition `for_part`, starting at `resume_state` if given.

        Called once per execution for each partition on the worker that reads it. Keep
        no per-partition state in the source object itself: everything the partition
        needs to resume must come from `resume_state`.

        Args:
            step_id: Fully qualified id of the `input` step.
            for_part: One of the keys returned by `list_parts`.
            resume_state: The partition's last snapshot, or `None` on a fresh start.
        """


class StatelessSourcePartition(ABC, Generic[X]):
    """The reader a `DynamicSource` builds on each worker; it has no resume state."""

    @abstractmethod
    def next_batch(self) -> Iterable[X]:
        """Return the items that are ready now, without blocking.

        Return an empty batch when nothing is ready yet.

        Raises:
            StopIteration: The partition is exhausted (end of input).
        """

    def next_awake(self) -> datetime | None:
        """When `next_batch` should be called next; see `StatefulSourcePartition`."""
        return None

    def close(self) -> None:
        """Release resources when the input is finished (only on normal completion)."""


class DynamicSource(Source[X]):
    """A source where every worker reads its own, disjoint share of the items.

    Nothing is resumed: after a failure the readers start afresh, so this kind of
    source gives at-most-once input unless the external system tracks positions.
    """

    @abstractmethod
    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSourcePartition[X]:
        """Build the reader for worker `worker_index` of `worker_count` (0-based).

        Called once on every worker.
        """


def _utc_now() -> datetime:
    # A module-level function so tests can substitute the clock.
    return datetime.now(UTC)


def _first_awake(now: datetime, interval: timedelta, align_to: datetime | None) -> datetime:
    """The first poll time: now, or the next multiple of `interval` after `align_to`."""
    if align_to is None:
        return now
    past_last_mark = (now - align_to) % interval
    if past_last_mark == timedelta(0):
        return now
    return now + (interval - past_last_mark)


class _SimplePollingPartition(StatefulSourcePartition[X, Any]):
    """The single partition of a `SimplePollingSource`."""

    def __init__(self, source: SimplePollingSource[X, Any], first_awake: datetime) -> None:
        self._source = source
        self._interval = source._interval
        self._awake = first_awake

    def next_batch(self) -> list[X]:
        try:
            item = self._source.next_item()
        except SimplePollingSource.Retry as retry:
            self._awake += retry.timeout
            return []
        self._awake += self._interval
        return [] if item is None else [item]

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> Any:
        return self._source.snapshot()


class SimplePollingSource(FixedPartitionedSource[X, Sn]):
    """A source that calls `next_item` once per `interval` on a single worker.

    Meant for slow polling (seconds to hours) of something like an HTTP endpoint.
    Poll times stay on a grid: with `align_to`, they fall on `align_to + k * interval`;
    without it, the grid starts when the partition is built. `next_item` returning
    `None` emits nothing for that poll. Raise `SimplePollingSource.Retry(timeout)` to
    poll again `timeout` after the scheduled time instead of a whole interval later.
    Override `snapshot` and `resume` to carry a position across executions.

    >>> from datetime import timedelta
    >>> class Countdown(SimplePollingSource):
    ...     def __init__(self):
    ...         super().__init__(interval=timedelta(minutes=1))
    ...         self.left = 2
    ...     def next_item(self):
    ...         self.left -= 1
    ...         return self.left
    >>> part = Countdown().build_part("flow.poll", "singleton", None)
    >>> part.next_batch(), part.next_batch()
    ([1], [0])

    The state type defaults to `None`, so one type argument is enough:

    >>> SimplePollingSource[int]
    engine.inputs.SimplePollingSource[int, NoneType]
    """

    if not TYPE_CHECKING:  # type checkers take the default from `Sn` itself

        def __class_getitem__(cls, params):
            # Python 3.11 has no TypeVar defaults: supply Bytewax's default state `None`
            # when only the item type is given.
            if not isinstance(params, tuple) and cls.__parameters__[1:] == (Sn,):
                params = (params, None)
            return super().__class_getitem__(params)

    class Retry(Exception):
        """Raise from `next_item` to poll again after `timeout` instead of `interval`."""

        def __init__(self, timeout: timedelta) -> None:
            super().__init__(timeout)
            self.timeout = timeout

    def __init__(self, interval: timedelta, align_to: datetime | None = None) -> None:
        """Poll every `interval`; align poll times to `align_to` if given."""
        if interval <= timedelta(0):
            raise ValueError(f"interval must be positive; got {interval!r}")
        self._interval = interval
        self._align_to = align_to

    def list_parts(self) -> list[str]:
        return ["singleton"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Sn | None
    ) -> StatefulSourcePartition[X, Sn]:
        if resume_state is not None:
            self.resume(resume_state)
        first_awake = _first_awake(_utc_now(), self._interval, self._align_to)
        return cast(StatefulSourcePartition[X, Sn], _SimplePollingPartition(self, first_awake))

    @abstractmethod
    def next_item(self) -> X:
        """Poll once and return the item to emit, or `None` to emit nothing.

        Raises:
            SimplePollingSource.Retry: Poll again sooner than the usual interval.
        """

    def snapshot(self) -> Sn:
        """Return the state to hand to `resume` in the next execution (default `None`)."""
        return cast(Sn, None)

    def resume(self, resume_state: Sn) -> None:
        """Restore the position from `resume_state`; called before the first poll."""


def batch(ib: Iterable[X], batch_size: int) -> Iterator[list[X]]:
    """Cut an iterable into lists of at most `batch_size` items.

    >>> list(batch(range(5), 2))
    [[0, 1], [2, 3], [4]]
    """
    items = iter(ib)
    while chunk := list(islice(items, batch_size)):
        yield chunk


def batch_getter(
    getter: Callable[[], X], batch_size: int, yield_on: X | None = None
) -> Iterator[list[X]]:
    """Batch the results of `getter`, which returns `yield_on` when nothing is ready.

    Each batch ends at `batch_size` items, at the first `yield_on` result (which is
    not included), or when `getter` raises `StopIteration`; that last batch is
    yielded, possibly empty, and then the iterator ends.

    >>> pending = iter([1, 2, None, 3])
    >>> list(batch_getter(lambda: next(pending), batch_size=5))
    [[1, 2], [3]]
    """
    while True:
        chunk: list[X] = []
        while len(chunk) < batch_size:
            try:
                item = getter()
            except StopIteration:
                yield chunk
                return
            if item == yield_on:
                break
            chunk.append(item)
        yield chunk


def batch_getter_ex(
    getter: Callable[[], X],
    batch_size: int,
    yield_ex: type[Exception] = queue.Empty,
) -> Iterator[list[X]]:
    """Batch the results of `getter`, which raises `yield_ex` when nothing is ready.

    Like `batch_getter`, but "nothing yet" is signalled by an exception (by default
    `queue.Empty`, so `queue.Queue.get_nowait` works as is).

    >>> import queue
    >>> q = queue.Queue()
    >>> for n in range(3):
    ...     q.put(n)
    >>> next(batch_getter_ex(q.get_nowait, batch_size=10))
    [0, 1, 2]
    """
    while True:
        chunk: list[X] = []
        while len(chunk) < batch_size:
            try:
                chunk.append(getter())
            except yield_ex:
                break
            except StopIteration:
                yield chunk
                return
        yield chunk


def batch_async(
    aib: AsyncIterable[X],
    timeout: timedelta,
    batch_size: int,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Generator[list[X], None, None]:
    """Drive an async iterable from synchronous code, one bounded batch at a time.

    Each `next()` runs the event loop until `batch_size` items arrived or `timeout`
    passed, whichever is first, and returns what arrived (possibly nothing). An item
    still in flight at the timeout is not lost: it is awaited again on the next call.
    The generator ends when the async iterable is exhausted. Without `loop`, a private
    event loop is created and closed when the generator finishes; call its `close()` to
    stop early, which cancels the item in flight and closes that loop.

    >>> import asyncio
    >>> from datetime import timedelta
    >>> async def numbers():
    ...     for n in range(5):
    ...         yield n
    >>> list(batch_async(numbers(), timedelta(seconds=1), batch_size=2))
    [[0, 1], [2, 3], [4]]
    """
    items_iter = aib.__aiter__()
    import asyncio  # here, not at module level: worker processes rarely need it

    event_loop = asyncio.new_event_loop() if loop is None else loop
    timeout_s = timeout.total_seconds()
    # The `__anext__` call in flight; kept across batches so no item is dropped.
    in_flight: asyncio.Task[X] | None = None

    async def fetch_one() -> X:
        return await items_iter.__anext__()

    async def gather() -> list[X] | None:
        """One batch, or `None` at the end of the async iterable."""
        nonlocal in_flight
        chunk: list[X] = []
        deadline = event_loop.time() + timeout_s
        while len(chunk) < batch_size:
            if in_flight is None:
                in_flight = event_loop.create_task(fetch_one())
            if not in_flight.done():
                remaining = deadline - event_loop.time()
                if remaining > 0:
                    await asyncio.wait((in_flight,), timeout=remaining)
                if not in_flight.done():
                    break
            if isinstance(in_flight.exception(), StopAsyncIteration):
                # Keep the finished task: the next call reports the end again.
                return chunk or None
            chunk.append(in_flight.result())
            in_flight = None
        return chunk

    try:
        while (chunk := event_loop.run_until_complete(gather())) is not None:
            yield chunk
    finally:
        if in_flight is not None and not in_flight.done() and not event_loop.is_closed():
            in_flight.cancel()
            event_loop.run_until_complete(asyncio.wait((in_flight,)))
        if loop is None:
            event_loop.run_until_complete(event_loop.shutdown_asyncgens())
            event_loop.close()
