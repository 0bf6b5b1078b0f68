"""Interfaces for writing items out of a dataflow.

A dataflow writes to a `Sink` with the `output` operator. Do not subclass `Sink`
itself; pick the kind that fits the system you write to:

- `FixedPartitionedSink`: a fixed set of named partitions (files, topic partitions).
  Items must be `(key, value)` 2-tuples. The runtime routes each item to partition
  `list_parts()[part_fn(key) % len(list_parts())]`, on the one worker that owns that
  partition, and hands the partition only the VALUES (`write_batch(values)`), never the
  keys. Each partition snapshots its write position at every epoch close, so a sink
  that can seek and overwrite gives exactly-once output.
- `DynamicSink`: every worker builds its own writer and writes the items it has, as
  they are (no key needed, no routing, no resume state: at-least-once output).
- `CallerSink`: a `DynamicSink` that writes in the process that started the run (a
  list, a queue, a live display). Items written on worker processes are sent back and
  handed to `write_in_caller` there. `engine.testing.TestingSink` is one.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

__all__ = [
    "CallerSink",
    "DynamicSink",
    "FixedPartitionedSink",
    "S",
    "Sink",
    "StatefulSinkPartition",
    "StatelessSinkPartition",
    "X",
]

X = TypeVar("X")
"""Type of the items (or, for partitioned sinks, the values) a sink writes."""

S = TypeVar("S")
"""Type of a sink partition's resume state."""


class Sink(ABC, Generic[X]):
    """Where a dataflow writes items to.

    This is the common base of every sink kind. Do not subclass it directly: subclass
    `FixedPartitionedSink` or `DynamicSink`.
    """


class StatefulSinkPartition(ABC, Generic[X, S]):
    """One partition of a `FixedPartitionedSink`, able to report its write position."""

    @abstractmethod
    def write_batch(self, values: list[X]) -> None:
        """Write the values of a batch of `(key, value)` items routed to this partition.

        Batch boundaries are arbitrary; only the order within a partition is kept.
        """

    @abstractmethod
    def snapshot(self) -> S:
        """Return the resume state: the position just after the last value written.

        Building the partition again with this state must continue writing after that
        value, without writing it twice. Never called after `close`.
        """

    def close(self) -> None:
        """Release resources when the dataflow completes (not on failure or abort)."""


class FixedPartitionedSink(Sink[tuple[str, X]], Generic[X, S]):
    """A sink made of a fixed set of named partitions, each written by one worker.

    Upstream items must be `(key, value)` 2-tuples with a `str` key. The key picks the
    partition through `part_fn`; the partition receives the value alone.
    """

    @abstractmethod
    def list_parts(self) -> list[str]:
        """Return the keys of all partitions, in a stable order."""

    def part_fn(self, item_key: str) -> int:
        """Map an item key to a number; the partition is that number modulo the count.

        Must return the same number for the same key in every process and execution,
        so never use Python's `hash()` (randomized per process). The default is the
        Adler-32 checksum of the UTF-8 key.

        >>> class Two(FixedPartitionedSink):
        ...     def list_parts(self):
        ...         return ["a", "b"]
        ...     def build_part(self, step_id, for_part, resume_state):
        ...         raise NotImplementedError
        >>> Two().part_fn("k1") == zlib.adler32(b"k1")
        True
        """
        return zlib.adler32(item_key.encode())

    @abstractmethod
    def build_part(
        self, step_id: str, for_part: str, resume_state: S | None
    ) -> StatefulSinkPartition[X, S]:
        """Build the partition `for_part`, continuing from `resume_state` if given.

        Called once per execution for each partition on the worker that owns it. Keep
        no per-partition state in the sink object itself: everything the partition
        needs to resume must come from `resume_state`.

        Args:
            step_id: Fully qualified id of the `output` step.
            for_part: One of the keys returned by `list_parts`.
            resume_state: The partition's last snapshot, or `None` on a fresh start.
        """


class StatelessSinkPartition(ABC, Generic[X]):
    """The writer a `DynamicSink` builds on each worker; it has no resume state."""

    @abstractmethod
    def write_batch(self, items: list[X]) -> None:
        """Write a batch of items; batch boundaries are arbitrary."""

    def close(self) -> None:
        """Release resources when the dataflow completes (not on failure or abort)."""


class DynamicSink(Sink[X]):
    """A sink every worker writes to at the same time, each with its own writer.

    Items are written where they are, in no particular global order. Nothing is
    resumed, so after a failure items of the resume epoch may be written again
    (at-least-once).
    """

    @abstractmethod
    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[X]:
        """Build the writer for worker `worker_index` of `worker_count` (0-based).

        Called once on every worker.
        """


class _CallerPartition(StatelessSinkPartition[X]):
    """The writer of a `CallerSink` on a worker that runs in the caller's process."""

    def __init__(self, sink: CallerSink[X], worker_index: int) -> None:
        self._sink = sink
        self._worker_index = worker_index

    def write_batch(self, items: list[X]) -> None:
        self._sink.write_in_caller(items, self._worker_index)


class CallerSink(DynamicSink[X]):
    """A sink that writes in the process that started the run, whatever the mode.

    Subclass it and implement `write_in_caller` for output that must end up in the
    caller's memory: a list for tests, a queue read by another thread, a progress
    display. When the workers are processes (`cluster_main`, `engine.run_flow`), they
    do not build this sink: each batch a worker writes is sent back to the caller and
    `write_in_caller` is called there, on this very object (never on a copy), with the
    items and the index of the worker that wrote them. When the worker runs in the
    caller (`run_main`), `build` returns a writer that calls `write_in_caller` directly.

    Batches of one worker arrive in the order that worker wrote them; batches of
    different workers interleave in no particular order. As for every `DynamicSink`,
    output is at-least-once. Items cross processes by pickle, so they must be picklable.

    >>> class Collect(CallerSink):
    ...     def __init__(self):
    ...         self.seen = []
    ...     def write_in_caller(self, items, worker_index):
    ...         self.seen += [(worker_index, item) for item in items]
    >>> sink = Collect()
    >>> sink.build("flow.out", 0, 1).write_batch(["a", "b"])
    >>> sink.seen
    [(0, 'a'), (0, 'b')]
    """

    @abstractmethod
    def write_in_caller(self, items: list[X], worker_index: int) -> None:
        """Write a batch that worker `worker_index` wrote; runs in the caller's process.

        Called from the thread that runs the flow. Keep it quick: while it runs, the
        workers' batches wait (and workers block once their relay buffers are full).
        """

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[X]:
        """A writer calling `write_in_caller` (used when the worker is in this process)."""
        return _CallerPartition(self, worker_index)
