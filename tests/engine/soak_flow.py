"""The flows of the soak tests (tests/engine/runtime/test_soak.py).

Both read :class:`GeneratedSource`: partitions ``p0..p{P-1}`` whose item ``seq`` is a
pure function of ``(partition, seq)``, so any execution resumed from a snapshot replays
exactly the items a fault-free run reads. Keys cycle through the whole key space (see
:func:`key_index`), so every key is touched every ``keys`` items of a partition.

- :func:`make_steady_flow`: full speed until a wall-clock deadline; a keyed running
  count; a partitioned sink that checks per source partition that every ``seq`` arrived
  exactly once (bounded memory) and writes its summary as JSON at the end.
- :func:`make_kill_flow`: a paced source (so the progress per execution is predictable)
  and a keyed step with a LARGE state per key (``state_bytes``), so every epoch commits
  tens of MB; every output item is appended to a per-worker file (at-least-once, survives
  kill -9), as in tests/engine/chaos_flow.py.

Run them with ``python -m engine.run 'tests/engine/soak_flow.py:make_steady_flow(...)'``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import engine.operators as op
from engine.dataflow import Dataflow
from engine.inputs import FixedPartitionedSource, StatefulSourcePartition
from engine.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

#: A prime (Knuth's multiplicative hash), so coprime with every key count below it.
_KEY_STRIDE = 2_654_435_761
_PARTITION_OFFSET = 40_503
#: Items per ``next_batch`` at full speed.
BATCH_SIZE = 500

Item = tuple[str, tuple[int, int]]
#: Resume state of a generated partition: (next seq, the seq it ends at or None).
Position = tuple[int, int | None]


def key_index(partition: int, seq: int, keys: int) -> int:
    """The key (as an index in ``0..keys-1``) of item ``seq`` of ``partition``.

    Consecutive items of one partition visit every key once per ``keys`` items:

    >>> sorted(key_index(1, seq, 10) for seq in range(10)) == list(range(10))
    True
    """
    return (seq * _KEY_STRIDE + partition * _PARTITION_OFFSET) % keys


def key_name(index: int) -> str:
    return f"k{index}"


def expected_counts(ends: dict[int, int], keys: int) -> dict[str, int]:
    """Items per key when partition ``p`` read seqs ``0..ends[p]-1``, in closed form.

    Each full round of ``keys`` items of a partition gives every key one item, so only
    the last partial round is enumerated. The same as counting item by item:

    >>> from collections import Counter
    >>> ends = {0: 2345, 1: 17, 2: 1000}
    >>> brute = Counter(key_name(key_index(p, s, 100)) for p, n in ends.items() for s in range(n))
    >>> expected_counts(ends, 100) == dict(brute)
    True
    """
    counts = dict.fromkeys(range(keys), 0)
    for partition, end in ends.items():
        rounds, rest = divmod(end, keys)
        for index in counts:
            counts[index] += rounds
        for seq in range(rest):
            counts[key_index(partition, seq, keys)] += 1
    return {key_name(index): n for index, n in counts.items() if n}


class _GeneratedPartition(StatefulSourcePartition[Item, Position]):
    def __init__(
        self,
        partition: int,
        keys: int,
        total: int,
        deadline: float | None,
        pace: float,
        position: Position,
    ) -> None:
        self.partition = partition
        self.keys = keys
        self.next_seq, self.end = position
        self.total = total
        self.deadline = deadline
        self.pace = pace
        #: With a pace: seq ``next_seq + pace * t`` is due ``t`` seconds after the build.
        self.started = time.monotonic()
        self.first_seq = self.next_seq
        self.names = [key_name(i) for i in range(keys)]

    def _stop_at(self) -> int:
        if self.end is None and self.deadline is not None and time.time() >= self.deadline:
            self.end = self.next_seq  # part of the snapshot: a replay ends here too
        return self.total if self.end is None else min(self.total, self.end)

    def next_batch(self) -> list[Item]:
        stop = self._stop_at()
        if self.next_seq >= stop:
            raise StopIteration
        upto = min(stop, self.next_seq + BATCH_SIZE)
        if self.pace:
            due = self.first_seq + int((time.monotonic() - self.started) * self.pace)
            upto = min(upto, due)
        p, keys, names = self.partition, self.keys, self.names
        base = p * _PARTITION_OFFSET
        batch = [
            (names[(seq * _KEY_STRIDE + base) % keys], (p, seq))
            for seq in range(self.next_seq, upto)
        ]
        self.next_seq = max(self.next_seq, upto)
        return batch

    def next_awake(self) -> datetime | None:
        if not self.pace:
            return None
        # Wake when about 10 ms of items are due: batches of a useful size.
        step = max(1, int(self.pace / 100))
        due_at = self.started + (self.next_seq + step - self.first_seq) / self.pace
        return datetime.now(UTC) + timedelta(seconds=max(0.0, due_at - time.monotonic()))

    def snapshot(self) -> Position:
        return (self.next_seq, self.end)


class GeneratedSource(FixedPartitionedSource[Item, Position]):
    """``partitions`` partitions of ``total`` items each, replayable by offset.

    Item ``seq`` of partition ``p`` is ``(key_name(key_index(p, seq, keys)), (p, seq))``.
    A partition also ends at the wall-clock ``deadline`` (``time.time()`` seconds) if
    given; where it ended is in its resume state, so a resumed execution ends at the same
    item. ``pace`` > 0 emits at most ``pace`` items per second per partition (0: as fast
    as the flow takes them); it changes when items are read, never which.
    """

    def __init__(
        self,
        partitions: int,
        keys: int,
        total: int,
        deadline: float | None = None,
        pace: float = 0.0,
    ) -> None:
        self.partitions = partitions
        self.keys = keys
        self.total = total
        self.deadline = deadline
        self.pace = pace

    def list_parts(self) -> list[str]:
        return [f"p{p}" for p in range(self.partitions)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Position | None
    ) -> _GeneratedPartition:
        return _GeneratedPartition(
            int(for_part[1:]),
            self.keys,
            self.total,
            self.deadline,
            self.pace,
            (0, None) if resume_state is None else resume_state,
        )


# -- steady soak ---------------------------------------------------------------------


class _CoveragePartition(StatefulSinkPartition[tuple[str, int, int], dict[str, Any]]):
    """Checks that every seq of one source partition arrives exactly once.

    Memory stays bounded: seqs below ``next_seq`` have all arrived; only the few that
    arrived out of order above it are kept (``pending``). Per key it keeps the number of
    items, the sum and the maximum of the running counts (counts 1..n each once give
    n items, sum n(n+1)/2, max n).
    """

    def __init__(self, path: Path, state: dict[str, Any] | None) -> None:
        self.path = path
        state = state or {"next_seq": 0, "pending": set(), "duplicates": 0, "keys": {}}
        self.next_seq: int = state["next_seq"]
        self.pending: set[int] = set(state["pending"])
        self.duplicates: int = state["duplicates"]
        self.keys: dict[str, list[int]] = {k: list(v) for k, v in state["keys"].items()}
        self.max_pending = 0

    def write_batch(self, values: list[tuple[str, int, int]]) -> None:
        pending, keys = self.pending, self.keys
        next_seq = self.next_seq
        for key, count, seq in values:
            if seq == next_seq:
                next_seq += 1
                while next_seq in pending:
                    pending.remove(next_seq)
                    next_seq += 1
            elif seq < next_seq or seq in pending:
                self.duplicates += 1
            else:
                pending.add(seq)
            stats = keys.get(key)
            if stats is None:
                keys[key] = [1, count, count]
            else:
                stats[0] += 1
                stats[1] += count
                if count > stats[2]:
                    stats[2] = count
        self.next_seq = next_seq
        self.max_pending = max(self.max_pending, len(pending))

    def snapshot(self) -> dict[str, Any]:
        return {
            "next_seq": self.next_seq,
            "pending": set(self.pending),
            "duplicates": self.duplicates,
            "keys": {k: tuple(v) for k, v in self.keys.items()},
        }

    def close(self) -> None:
        summary = {
            "next_seq": self.next_seq,
            "pending": sorted(self.pending),
            "duplicates": self.duplicates,
            "max_pending": self.max_pending,
            "keys": self.keys,
        }
        self.path.write_text(json.dumps(summary))


class CoverageSink(FixedPartitionedSink[tuple[str, int, int], dict[str, Any]]):
    """One partition per source partition (key ``p<n>``); summaries go to ``out_dir``."""

    def __init__(self, out_dir: str, partitions: int) -> None:
        self.out_dir = out_dir
        self.partitions = partitions

    def list_parts(self) -> list[str]:
        return [f"p{p}" for p in range(self.partitions)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key[1:])

    def build_part(
        self, step_id: str, for_part: str, resume_state: dict[str, Any] | None
    ) -> _CoveragePartition:
        return _CoveragePartition(Path(self.out_dir) / f"{for_part}.json", resume_state)


def _count(state: int | None, tag: tuple[int, int]) -> tuple[int, tuple[int, int, int]]:
    count = (state or 0) + 1
    return count, (count, tag[0], tag[1])


def _by_partition(item: tuple[str, tuple[int, int, int]]) -> tuple[str, tuple[str, int, int]]:
    key, (count, partition, seq) = item
    return f"p{partition}", (key, count, seq)


def make_steady_flow(
    out_dir: str, deadline: float, partitions: int = 4, keys: int = 1000
) -> Dataflow:
    """Full speed until ``deadline`` (``time.time()``); the running count per key."""
    flow = Dataflow("soak")
    items = op.input("gen", flow, GeneratedSource(partitions, keys, 2**62, deadline))
    counted = op.stateful_map("count", items, _count)
    op.output(
        "check", op.map("by_partition", counted, _by_partition), CoverageSink(out_dir, partitions)
    )
    return flow


# -- kill soak -----------------------------------------------------------------------

#: Multiplier mixing an item's identity into the per-key checksum (odd, 64-bit).
_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1

#: The state per key of the kill flow: (count, checksum, bulk).
BigState = tuple[int, int, bytes]


def item_mark(partition: int, seq: int) -> int:
    """What an item adds to its key's checksum (a sum mod 2**64: order-independent)."""
    return (((partition << 40) | seq) * _MIX) & _MASK


def big_state(count: int, checksum: int, size: int) -> BigState:
    """The state of a key after ``count`` items adding up to ``checksum``.

    The bulk is ``size`` bytes derived from both, so a state written twice or restored
    from the wrong epoch shows in the bytes too.

    >>> count, checksum, bulk = big_state(3, 12345, 4096)
    >>> (count, checksum, len(bulk))
    (3, 12345, 4096)
    """
    digest = hashlib.blake2b(f"{count}:{checksum}".encode(), digest_size=64).digest()
    return count, checksum, digest * (size // 64)


class BigCounter:
    """``stateful_map`` mapper: count and checksum the items of a key, with a big state."""

    def __init__(self, state_bytes: int) -> None:
        self.state_bytes = state_bytes

    def __call__(
        self, state: BigState | None, tag: tuple[int, int]
    ) -> tuple[BigState, tuple[int, int, int]]:
        count, checksum, _ = state or (0, 0, b"")
        count += 1
        checksum = (checksum + item_mark(*tag)) & _MASK
        return big_state(count, checksum, self.state_bytes), (count, *tag)


class _AppendPartition(StatelessSinkPartition[Any]):
    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")

    def write_batch(self, items: list[Any]) -> None:
        self.file.write("".join(f"{key} {c} {p} {s}\n" for key, (c, p, s) in items))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class AppendSink(DynamicSink[Any]):
    """Appends ``key count partition seq`` lines to one file per worker process.

    Flushed per batch, so what was written survives a SIGKILL (at-least-once output).
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AppendPartition:
        return _AppendPartition(Path(self.out_dir) / f"worker{worker_index}-{os.getpid()}.txt")


def make_kill_flow(
    out_dir: str,
    total: int,
    pace: float,
    partitions: int = 4,
    keys: int = 2500,
    state_bytes: int = 8192,
) -> Dataflow:
    """``total`` items per partition at ``pace`` items/s each (0: full speed); big state."""
    flow = Dataflow("soak_kill")
    items = op.input("gen", flow, GeneratedSource(partitions, keys, total, pace=pace))
    counted = op.stateful_map("state", items, BigCounter(state_bytes))
    op.output("out", counted, AppendSink(out_dir))
    return flow
