"""The running form of ``stateful_batch``: per-key logics, and two fast kernels.

:class:`StatefulNode` runs one :class:`~engine.operators.StatefulBatchLogic` per key.
Operators that declare a :class:`~engine.operators._core.StatefulKernel` run on a kernel
that keeps plain per-key states in one dict instead: :class:`MapKernelNode`
(``stateful_map``), :class:`FoldKernelNode` (``reduce_final``, ``max_final``,
``min_final``; with several workers it also combines partial results per epoch before
they cross to other workers) and :class:`CountKernelNode` (``count_final``, counting raw
items in C). Results and snapshots are the same.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections import _count_elements  # type: ignore[attr-defined]
from collections.abc import Iterable
from typing import Any

from engine._keyed import check_keyed, group_by_key
from engine.errors import ItemTypeError
from engine.operators._core import StatefulBatchLogic
from engine.operators._stateful import mapper_result_error
from engine.runtime.nodes.base import EpochBuffer, Node, NodeContext, as_timestamp
from engine.runtime.plan import PlanStep, StatefulBatchConfig
from engine.runtime.ports import NullSnapshots
from engine.runtime.progress import EOF_FRONTIER
from recovery import TOMBSTONE

__all__ = ["CountKernelNode", "FoldKernelNode", "MapKernelNode", "StatefulNode"]

#: How many times one wake may notify a key whose on_notify leaves it due.
_MAX_NOTIFY_ROUNDS = 100


class StatefulNode(Node):
    """``stateful_batch``: one logic per key, epoch-ordered, snapshots at epoch close."""

    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        super().__init__(step, ctx)
        config = step.config
        assert isinstance(config, StatefulBatchConfig)
        self.builder = config.builder
        self.kernel = config.kernel
        self.logics: dict[str, StatefulBatchLogic[Any, Any, Any]] = {}
        self.touched: set[str] = set()
        self.timers: dict[str, float] = {}
        self.timer_heap: list[tuple[float, str]] = []
        #: Batches of epochs after the frontier (from faster workers), applied in order.
        self.pending = EpochBuffer()

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        batch = self.route(epoch, batch)
        if batch:
            self.deliver(epoch, batch)

    def deliver(self, epoch: int, batch: list[Any]) -> None:
        """Apply a batch routed to this worker (buffer it if its epoch is not open yet)."""
        if epoch > self.frontier and self.frontier != EOF_FRONTIER:
            self.pending.hold(epoch, batch)
            return
        self.apply(epoch, batch)

    def grouped(self, epoch: int, batch: list[Any]) -> dict[str, list[Any]]:
        """The values of ``batch`` per key; a malformed item fails naming this step."""
        try:
            return group_by_key(self.step_id, batch)
        except ItemTypeError as ex:
            raise self.failure(epoch, ex) from None

    def apply(self, epoch: int, batch: list[Any]) -> None:
        groups = self.grouped(epoch, batch)
        logics, touched = self.logics, self.touched
        out: list[Any] = []
        append = out.append
        key = ""
        try:
            for key, values in groups.items():
                logic = logics.get(key)
                if logic is None:
                    logic = self._build(key)
                emits, discard = logic.on_batch(values)
                for w in emits:
                    append((key, w))
                touched.add(key)
                self._after_call(key, logic, discard)
        except Exception as ex:
            raise self.failure(epoch, ex, f"for key {key!r}") from ex
        if out:
            self.emit(0, epoch, out)

    def _build(self, key: str) -> StatefulBatchLogic[Any, Any, Any]:
        logic = self.builder(None)
        self.logics[key] = logic
        return logic

    def open(self) -> None:
        """Rebuild every key this worker resumes, so timers and EOF reach them too."""
        epoch = self.ctx.config.first_epoch
        key = ""
        try:
            for key, state in self.ctx.snapshots.resume_states(self.step_id).items():
                self.restore(key, state)
        except Exception as ex:
            raise self.failure(epoch, ex, f"while resuming key {key!r}") from ex

    def restore(self, key: str, state: Any) -> None:
        """Bring back ``key`` from its snapshot."""
        logic = self.builder(state)
        self.logics[key] = logic
        self._after_call(key, logic, False)

    def _after_call(
        self, key: str, logic: StatefulBatchLogic[Any, Any, Any], discard: bool
    ) -> None:
        if discard:
            del self.logics[key]
            self.timers.pop(key, None)
            return
        if type(logic).notify_at is StatefulBatchLogic.notify_at:
            return
        when = logic.notify_at()
        if when is None:
            self.timers.pop(key, None)
            return
        at = as_timestamp(when)
        if self.timers.get(key) != at:
            self.timers[key] = at
            heapq.heappush(self.timer_heap, (at, key))

    def next_wake(self) -> float:
        heap, timers = self.timer_heap, self.timers
        while heap and timers.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # stale entry
        return heap[0][0] if heap else math.inf

    def wake(self, wall_now: float) -> bool:
        if self.next_wake() > wall_now:
            return False
        epoch = self.frontier if self.frontier != EOF_FRONTIER else self.ctx.epoch
        fired = False
        # As in Bytewax, a key whose on_notify leaves it still due is notified again
        # before any newer batch reaches it; the cap keeps a logic that stays due forever
        # from starving the worker (it is notified again at the next wake).
        for _ in range(_MAX_NOTIFY_ROUNDS):
            due = []
            while self.timer_heap and self.timer_heap[0][0] <= wall_now:
                at, key = heapq.heappop(self.timer_heap)
                if self.timers.get(key) == at:
                    del self.timers[key]
                    due.append(key)
            if not due:
                break
            fired = True
            self._call_each(epoch, due, "on_notify")
        return fired

    def _call_each(self, epoch: int, keys: Iterable[str], method: str) -> None:
        out: list[Any] = []
        key = ""
        try:
            for key in keys:
                logic = self.logics.get(key)
                if logic is None:
                    continue
                emits, discard = getattr(logic, method)()
                out.extend((key, w) for w in emits)
                self.touched.add(key)
                self._after_call(key, logic, discard)
        except Exception as ex:
            raise self.failure(epoch, ex, f"in {method} for key {key!r}") from ex
        if out:
            self.emit(0, epoch, out)

    def advance(self, frontier: int) -> None:
        old = self.frontier
        # Apply buffered batches of epochs that are now open, in epoch order.
        for epoch, batch in self.pending.take_before(frontier):  # EOF: everything held
            self.frontier = epoch
            self.apply(epoch, batch)
        if frontier == EOF_FRONTIER:
            last = max(old, self.frontier)
            self.frontier = last
            self.wake(self.ctx.config.wall_now())  # timers already due fire before EOF
            self.upstream_eof(last)
            self._snapshot(last)
        else:
            self._snapshot(frontier - 1)
        self.frontier = frontier
        # Batches of the epoch that just opened go next (after the snapshot of the closed
        # epochs, which must not include them; before anything newer arrives).
        for batch in self.pending.take(frontier):
            self.apply(frontier, batch)

    def upstream_eof(self, epoch: int) -> None:
        """Call ``on_eof`` of every live key, in sorted key order.

        Logics that keep the default ``on_eof`` (emit nothing, retain) are skipped: the
        call could not change anything.
        """
        keys = [k for k, logic in sorted(self.logics.items()) if _overrides_on_eof(logic)]
        self._call_each(epoch, keys, "on_eof")

    def state_of(self, key: str) -> Any:
        """The snapshot of ``key``: its logic's snapshot, or a tombstone if discarded."""
        logic = self.logics.get(key)
        return TOMBSTONE if logic is None else logic.snapshot()

    def _snapshot(self, epoch: int) -> None:
        if not self.touched:
            return
        snapshots = self.ctx.snapshots
        key = ""
        try:
            for key in sorted(self.touched):
                snapshots.record(self.step_id, key, epoch, self.state_of(key))
        except Exception as ex:
            raise self.failure(epoch, ex, f"in snapshot for key {key!r}") from ex
        self.touched.clear()


def _overrides_on_eof(logic: StatefulBatchLogic[Any, Any, Any]) -> bool:
    return type(logic).on_eof is not StatefulBatchLogic.on_eof


class MapKernelNode(StatefulNode):
    """``stateful_map`` without a logic object per key: states live in one dict.

    Same semantics as running :class:`~engine.operators._stateful._StatefulMapperLogic` per
    key (a ``None`` state discards the key), at a fraction of the per-key cost.
    """

    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        super().__init__(step, ctx)
        kernel = self.kernel
        assert kernel is not None
        self.mapper = kernel.fn
        self.user_step_id = kernel.user_step_id
        self.states: dict[str, Any] = {}
        #: Whether snapshots are kept: states here run no user code to snapshot, so
        #: without a store there is nothing to track per key.
        self.recording = not isinstance(ctx.snapshots, NullSnapshots)

    def apply(self, epoch: int, batch: list[Any]) -> None:
        states, mapper, step_id = self.states, self.mapper, self.step_id
        get = states.get
        out: list[Any] = []
        append = out.append
        key, value = "", None
        if not set(map(type, batch)) <= _TUPLE_ONLY:
            try:
                check_keyed(step_id, batch)
            except ItemTypeError as bad:
                raise self.failure(epoch, bad) from None
        try:
            for key, value in batch:
                state = get(key)
                if state is None and key.__class__ is not str:
                    check_keyed(step_id, batch)  # raises the diagnosis
                result = mapper(state, value)
                if result.__class__ is not tuple:
                    raise mapper_result_error("stateful_map", self.user_step_id, result, value)
                try:
                    state, emit = result
                except ValueError:
                    raise mapper_result_error(
                        "stateful_map", self.user_step_id, result, value
                    ) from None
                if state is None:
                    states.pop(key, None)
                else:
                    states[key] = state
                append((key, emit))
        except ItemTypeError as ex:
            raise self.failure(epoch, ex) from None
        except (TypeError, ValueError) as ex:
            raise self.keyed_failure(epoch, batch, ex, f"for key {key!r}")  # noqa: B904
        except Exception as ex:
            raise self.failure(epoch, ex, f"for key {key!r}") from ex
        if self.recording:
            self.touched.update(map(_first, batch))
        if out:
            self.emit(0, epoch, out)

    def upstream_eof(self, epoch: int) -> None:
        pass  # stateful_map keeps its state and emits nothing at EOF

    def restore(self, key: str, state: Any) -> None:
        if state is not None:
            self.states[key] = state

    def state_of(self, key: str) -> Any:
        return self.states.get(key, TOMBSTONE)


class FoldKernelNode(StatefulNode):
    """Folds with an associative ``reducer`` (count/reduce/max/min_final): plain dict.

    Same semantics as a per-key logic that reduces values, emits the result at EOF in
    sorted key order and discards itself.
    """

    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        super().__init__(step, ctx)
        assert self.kernel is not None
        self.reducer = self.kernel.fn
        self.states: dict[str, Any] = {}
        #: With several workers, partial results per epoch are combined here and sent
        #: once per key and epoch (at epoch close) instead of once per key and batch.
        self.combine = ctx.config.worker_count > 1
        self.partials: dict[int, dict[str, Any]] = {}

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        if not self.combine:
            super().push(port, epoch, batch)
            return
        partial = self.partials.get(epoch)
        if partial is None:
            partial = self.partials[epoch] = {}
        self._fold_into(partial, epoch, batch)

    def before_marks(self, local_frontier: int) -> None:
        for epoch in sorted(e for e in self.partials if e < local_frontier):
            batch = list(self.partials.pop(epoch).items())
            batch = self.route(epoch, batch)
            if batch:
                self.deliver(epoch, batch)

    def apply(self, epoch: int, batch: list[Any]) -> None:
        self._fold_into(self.states, epoch, batch)
        self.touched.update(map(_first, batch))

    def _fold_into(self, states: dict[str, Any], epoch: int, batch: list[Any]) -> None:
        reducer, get = self.reducer, states.get
        key = ""
        try:
            if not set(map(type, batch)) <= _TUPLE_ONLY:
                check_keyed(self.step_id, batch)
            if reducer is operator.add:
                for key, value in batch:
                    states[key] = get(key, 0) + value
            else:
                for key, value in batch:
                    state = get(key, _MISSING)
                    states[key] = value if state is _MISSING else reducer(state, value)
        except ItemTypeError as bad:
            raise self.failure(epoch, bad) from None
        except (TypeError, ValueError) as ex:
            raise self.keyed_failure(epoch, batch, ex, f"for key {key!r}")  # noqa: B904
        except Exception as ex:
            raise self.failure(epoch, ex, f"for key {key!r}") from ex

    def restore(self, key: str, state: Any) -> None:
        self.states[key] = state

    def upstream_eof(self, epoch: int) -> None:
        out = sorted(self.states.items())
        self.touched.update(self.states)
        self.states.clear()
        if out:
            self.emit(0, epoch, out)

    def state_of(self, key: str) -> Any:
        return self.states.get(key, TOMBSTONE)


class CountKernelNode(FoldKernelNode):
    """``count_final`` on raw items: the per-batch pre-count step before it passes items
    through (see :func:`~engine.runtime.worker.node_types`) and this node counts their
    keys with ``collections``' C-level counting helper into one partial per epoch. At
    epoch close the partials go to the workers owning their keys, which add them up.
    """

    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        super().__init__(step, ctx)
        assert self.kernel is not None
        self.keys_of = self.kernel.params.keys_of
        self.combine = True  # with any worker count: counting per epoch is the fast path

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        try:
            keys = self.keys_of(batch)
        except Exception as ex:
            raise self.failure(epoch, ex) from ex
        partial = self.partials.get(epoch)
        if partial is None:
            partial = self.partials[epoch] = {}
        _count_elements(partial, keys)


_MISSING = object()
_TUPLE_ONLY = {tuple}
_first = operator.itemgetter(0)
