"""Exchange between worker processes over shared-memory rings.

Every ordered pair of workers (k -> j) has one SPSC ring. A frame carries one batch for
one exchange step, tagged with (kind, step index, epoch):

- ``DATA``: items of ``epoch`` for the step, already routed to the receiving worker;
- ``MARK``: the sender will send nothing more of epochs up to ``epoch`` for the step;
- ``EOF``: the sender will send nothing more at all for the step.

Rings are FIFO, so a mark arrives after the data it closes. A step's input frontier on
the receiving worker is the minimum over senders of their marks (see
:class:`~engine.runtime.progress.SenderMarks`).

Backpressure: a full ring makes the sender wait; while it waits it keeps reading its own
inbound rings into a backlog, so two workers sending to each other never deadlock.
"""

from __future__ import annotations

import pickle
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from engine._keyed import check_keyed
from engine.errors import EngineRuntimeError, item_repr
from engine.runtime.plan import (
    EXCHANGE_KEY,
    EXCHANGE_PARTITION,
    EXCHANGE_REDISTRIBUTE,
    OutputConfig,
    Plan,
    PlanStep,
)
from engine.runtime.ports import Deliver
from engine.runtime.progress import EOF_FRONTIER, SenderMarks
from recovery import (
    DEFAULT_KEY_GROUPS,
    DEFAULT_KEY_HASH,
    group_owner,
    key_group,
    key_hash_function,
)
from shm import FrameTooLarge, Ring, WouldBlock

__all__ = [
    "KIND_DATA",
    "KIND_EOF",
    "KIND_MARK",
    "ExchangeError",
    "RingExchange",
    "decode_tag",
    "encode_tag",
]

KIND_DATA = 0
KIND_MARK = 1
KIND_EOF = 2
_EPOCH_BITS = 46
_STEP_BITS = 16
_EPOCH_MASK = (1 << _EPOCH_BITS) - 1
_STEP_MASK = (1 << _STEP_BITS) - 1

#: Longest sleep while waiting for space in a full ring.
MAX_SEND_BACKOFF_S = 0.001
#: Frames read from one inbound ring per round (keeps rounds short and fair).
FRAMES_PER_RING_PER_ROUND = 64
#: Owner caches are cleared when they grow past this many keys (bounds memory).
OWNER_CACHE_LIMIT = 1 << 20


class ExchangeError(EngineRuntimeError):
    """Items could not be sent to another worker (for example, they cannot be pickled)."""


def encode_tag(kind: int, step_index: int, epoch: int) -> int:
    """Pack a frame tag.

    >>> decode_tag(encode_tag(KIND_MARK, 3, 17))
    (1, 3, 17)
    """
    return (kind << (_EPOCH_BITS + _STEP_BITS)) | (step_index << _EPOCH_BITS) | epoch


def decode_tag(tag: int) -> tuple[int, int, int]:
    """Unpack a frame tag into ``(kind, step_index, epoch)``."""
    return (
        tag >> (_EPOCH_BITS + _STEP_BITS),
        (tag >> _EPOCH_BITS) & _STEP_MASK,
        tag & _EPOCH_MASK,
    )


class RingExchange:
    """The exchange of one worker of a multi-process run.

    ``outbound[j]`` is the ring this worker produces into for worker ``j``,
    ``inbound[j]`` the ring it consumes from worker ``j``. ``on_wait`` is called while
    a send waits for space (liveness checks, heartbeat).
    """

    def __init__(
        self,
        plan: Plan,
        worker_index: int,
        worker_count: int,
        outbound: dict[int, Ring],
        inbound: dict[int, Ring],
        first_epoch: int,
        on_wait: Callable[[], None] = lambda: None,
        key_groups: int = DEFAULT_KEY_GROUPS,
        key_hash: str = DEFAULT_KEY_HASH,
    ) -> None:
        self.worker_index = worker_index
        self.worker_count = worker_count
        self.outbound = outbound
        self.inbound = inbound
        self.peers = sorted(outbound)
        self.on_wait = on_wait
        self.key_groups = key_groups
        key_hash_function(key_hash)  # an unknown name fails here, not per key
        self.key_hash = key_hash
        exchange_steps = plan.exchange_steps
        self.marks = {
            s.index: SenderMarks.starting_at(first_epoch, self.peers) for s in exchange_steps
        }
        self.sent_frontier = {s.index: first_epoch for s in exchange_steps}
        self.owner_caches: dict[int, dict[str, int]] = {s.index: {} for s in exchange_steps}
        self.partition_counts: dict[int, int] = {}
        self.backlog: deque[tuple[int, int, list[Any]]] = deque()
        self.items_sent = 0
        self.items_received = 0
        #: Nanoseconds spent waiting for space in full rings (backpressure).
        self.blocked_ns = 0
        self.blocked_ns_before = 0
        self._rotation = worker_index

    # -- sending -----------------------------------------------------------------------
    def route(self, step: PlanStep, epoch: int, batch: list[Any]) -> list[Any]:
        """Send the items other workers own; return this worker's share."""
        if step.exchange == EXCHANGE_REDISTRIBUTE:
            return self._spread(step, epoch, batch)
        shares: list[list[Any]] = [[] for _ in range(self.worker_count)]
        cache = self.owner_caches[step.index]
        owner_of = self._owner_function(step)
        get = cache.get
        key: Any = None
        try:
            for item in batch:
                key = item[0]
                owner = get(key)
                if owner is None:
                    if len(cache) >= OWNER_CACHE_LIMIT:
                        cache.clear()
                    owner = cache[key] = owner_of(key)
                shares[owner].append(item)
        except (TypeError, IndexError, KeyError, AttributeError):
            self._diagnose(step, batch)
            raise
        for dest, share in enumerate(shares):
            if share and dest != self.worker_index:
                self._send(dest, encode_tag(KIND_DATA, step.index, epoch), share)
                self.items_sent += len(share)
        return shares[self.worker_index]

    def _owner_function(self, step: PlanStep) -> Callable[[str], int]:
        workers, groups, hash_name = self.worker_count, self.key_groups, self.key_hash
        if step.exchange == EXCHANGE_KEY:

            def key_owner(key: str) -> int:
                if type(key) is not str:
                    raise TypeError(key)
                return group_owner(key_group(key, groups, hash_name), groups, workers)

            return key_owner
        if step.exchange == EXCHANGE_PARTITION:
            config = step.config
            assert isinstance(config, OutputConfig)
            sink = config.sink
            count = self.partition_counts.get(step.index)
            if count is None:
                count = self.partition_counts[step.index] = len(sink.list_parts())

            def partition_owner(key: str) -> int:
                if type(key) is not str:
                    raise TypeError(key)
                return (sink.part_fn(key) % count) % workers

            return partition_owner
        msg = f"step {step.step_id!r} has no keyed exchange"
        raise ValueError(msg)

    def _diagnose(self, step: PlanStep, batch: list[Any]) -> None:
        """Raise the ItemTypeError describing the first malformed item of ``batch``."""
        check_keyed(step.step_id, batch)

    def _spread(self, step: PlanStep, epoch: int, batch: list[Any]) -> list[Any]:
        """Cut the batch into one slice per worker, rotating who gets the remainder."""
        workers = self.worker_count
        size = -(-len(batch) // workers)
        mine: list[Any] = []
        for slot in range(workers):
            dest = (self._rotation + slot) % workers
            share = batch[slot * size : (slot + 1) * size]
            if not share:
                break
            if dest == self.worker_index:
                mine = share
            else:
                self._send(dest, encode_tag(KIND_DATA, step.index, epoch), share)
                self.items_sent += len(share)
        self._rotation = (self._rotation + 1) % workers
        return mine

    def close_epochs(self, step: PlanStep, frontier: int) -> None:
        """Tell every peer that this worker routes nothing more before ``frontier``."""
        if frontier <= self.sent_frontier[step.index]:
            return
        self.sent_frontier[step.index] = frontier
        if frontier == EOF_FRONTIER:
            tag = encode_tag(KIND_EOF, step.index, 0)
        else:
            tag = encode_tag(KIND_MARK, step.index, frontier - 1)
        for dest in self.peers:
            self._send(dest, tag, [])

    def _send(self, dest: int, tag: int, items: list[Any]) -> None:
        try:
            self._put(dest, tag, items)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as ex:
            raise self._unpicklable(dest, items, ex) from ex

    def _unpicklable(self, dest: int, items: list[Any], ex: BaseException) -> Exception:
        """Name the first item that cannot be pickled (only called on the error path)."""
        for item in items:
            try:
                pickle.dumps(item, protocol=5)
            except Exception:
                return ExchangeError(
                    f"cannot send item {type(item).__name__} {item_repr(item)} to worker "
                    f"{dest}: {type(ex).__name__}: {ex}. Items crossing workers (before keyed "
                    "steps, partitioned sinks and redistribute) must be picklable; turn it "
                    "into plain data (tuple, dict, ...) before this step"
                )
        return ExchangeError(f"cannot send a batch to worker {dest}: {type(ex).__name__}: {ex}")

    def _put(self, dest: int, tag: int, items: list[Any]) -> None:
        ring = self.outbound[dest]
        try:
            ring.try_put_batch(items, tag)
            return
        except WouldBlock:
            pass
        except FrameTooLarge:
            self._send_large(ring, dest, tag, items)
            return
        backoff = 1e-5
        started = time.perf_counter_ns()
        while True:
            self._drain_into_backlog()
            self.on_wait()
            time.sleep(backoff)
            self.blocked_ns = self.blocked_ns_before + time.perf_counter_ns() - started
            backoff = min(backoff * 2, MAX_SEND_BACKOFF_S)
            try:
                ring.try_put_batch(items, tag)
                self.blocked_ns_before = self.blocked_ns
                return
            except WouldBlock:
                continue

    def _send_large(self, ring: Ring, dest: int, tag: int, items: list[Any]) -> None:
        """A batch too large for one frame: halve it, or chunk a single huge item."""
        if len(items) > 1:
            middle = len(items) // 2
            self._put(dest, tag, items[:middle])
            self._put(dest, tag, items[middle:])
            return
        # One item larger than the ring: the ring splits it into chunks and the peer
        # reassembles it; put_batch waits (watching the peer) while the ring is full.
        ring.put_batch(items, tag)

    # -- receiving ---------------------------------------------------------------------
    def _drain_into_backlog(self) -> None:
        for sender, ring in self.inbound.items():
            while ring.has_data():
                try:
                    tag, items = ring.try_get_batch_tagged()
                except WouldBlock:
                    break
                self.backlog.append((sender, tag, items))

    def receive(self, deliver: Deliver) -> bool:
        """Deliver what peers sent; return whether anything arrived."""
        busy = False
        while self.backlog:
            busy = True
            self._dispatch(deliver, *self.backlog.popleft())
        for sender, ring in self.inbound.items():
            for _ in range(FRAMES_PER_RING_PER_ROUND):
                if not ring.has_data():
                    break
                try:
                    tag, items = ring.try_get_batch_tagged()
                except WouldBlock:
                    break
                busy = True
                self._dispatch(deliver, sender, tag, items)
        return busy

    def _dispatch(self, deliver: Deliver, sender: int, tag: int, items: list[Any]) -> None:
        kind, step_index, epoch = decode_tag(tag)
        if kind == KIND_DATA:
            self.items_received += len(items)
            deliver(step_index, epoch, items)
        elif kind == KIND_MARK:
            self.marks[step_index].close(sender, epoch)
        elif kind == KIND_EOF:
            self.marks[step_index].eof(sender)
        else:
            msg = f"worker {self.worker_index} got a frame of unknown kind {kind} from {sender}"
            raise EngineRuntimeError(msg, worker_index=self.worker_index)

    def remote_frontier(self, step: PlanStep) -> int:
        """Oldest epoch a peer may still send to ``step``."""
        return self.marks[step.index].frontier

    def backlog_size(self) -> int:
        """Frames read while sending and not yet delivered."""
        return len(self.backlog)
