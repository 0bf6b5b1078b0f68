"""Source interfaces, SimplePollingSource and the batching helpers of engine.inputs."""

from __future__ import annotations

import asyncio
import gc
import queue
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine.inputs as inputs
from engine.inputs import (
    AbortExecution,
    DynamicSource,
    FixedPartitionedSource,
    SimplePollingSource,
    Source,
    StatefulSourcePartition,
    StatelessSourcePartition,
    batch,
    batch_async,
    batch_getter,
    batch_getter_ex,
)

T = TypeVar("T")
T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


# --- interfaces ---------------------------------------------------------------------------


class _ListPartition(StatefulSourcePartition[int, int]):
    def __init__(self, items: list[int], position: int) -> None:
        self.items = items
        self.position = position

    def next_batch(self) -> list[int]:
        if self.position >= len(self.items):
            raise StopIteration
        item = self.items[self.position]
        self.position += 1
        return [item]

    def snapshot(self) -> int:
        return self.position


class _ListSource(FixedPartitionedSource[int, int]):
    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ListPartition:
        return _ListPartition([10, 20, 30], resume_state or 0)


class _RangePartition(StatelessSourcePartition[int]):
    def __init__(self, items: Iterable[int]) -> None:
        self.batches = batch(items, 2)

    def next_batch(self) -> list[int]:
        return next(self.batches)


class _RangeSource(DynamicSource[int]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RangePartition:
        return _RangePartition(range(worker_index, 7, worker_count))


def _drain(part: StatefulSourcePartition[int, int] | StatelessSourcePartition[int]) -> list[int]:
    out: list[int] = []
    while True:
        try:
            out.extend(part.next_batch())
        except StopIteration:
            return out


def test_fixed_partitioned_source_defaults_and_resume() -> None:
    source = _ListSource()
    assert isinstance(source, Source)
    part = source.build_part("flow.in", "only", None)
    assert part.next_awake() is None
    assert part.next_batch() == [10]
    resumed = source.build_part("flow.in", "only", part.snapshot())
    assert _drain(resumed) == [20, 30]
    resumed.close()  # default close is a no-op


def test_dynamic_source_workers_get_disjoint_shares() -> None:
    source = _RangeSource()
    assert isinstance(source, Source)
    shares = []
    for worker_index in range(3):
        part = source.build("flow.in", worker_index, 3)
        assert part.next_awake() is None
        shares.append(_drain(part))
        part.close()
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]


def test_partitions_must_implement_abstract_methods() -> None:
    class NoSnapshot(StatefulSourcePartition[int, int]):
        def next_batch(self) -> list[int]:
            return []

    with pytest.raises(TypeError):
        NoSnapshot()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        StatelessSourcePartition()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        DynamicSource()  # type: ignore[abstract]


def test_abort_execution_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="stop here"):
        raise AbortExecution("stop here")


# --- SimplePollingSource ------------------------------------------------------------------


class _Poller(SimplePollingSource[int, int]):
    """Returns scripted answers; an exception instance in the script is raised."""

    def __init__(
        self,
        script: list[object],
        interval: timedelta = timedelta(minutes=1),
        align_to: datetime | None = None,
    ) -> None:
        super().__init__(interval, align_to)
        self.script = list(script)
        self.polls = 0
        self.resumed_from: int | None = None

    def next_item(self) -> int:
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        self.polls += 1
        return answer  # type: ignore[return-value]

    def snapshot(self) -> int:
        return self.polls

    def resume(self, resume_state: int) -> None:
        self.resumed_from = resume_state
        self.polls = resume_state


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    now = T0 + timedelta(seconds=25)
    monkeypatch.setattr(inputs, "_utc_now", lambda: now)
    return now


def test_polling_without_align_to_starts_now(frozen_now: datetime) -> None:
    source = _Poller([1, 2])
    assert source.list_parts() == ["singleton"]
    part = source.build_part("flow.poll", "singleton", None)
    assert part.next_awake() == frozen_now
    assert part.next_batch() == [1]
    assert part.next_awake() == frozen_now + timedelta(minutes=1)
    assert part.next_batch() == [2]
    assert part.next_awake() == frozen_now + timedelta(minutes=2)


def test_polling_awake_times_are_aligned(frozen_now: datetime) -> None:
    source = _Poller([1, 2], interval=timedelta(seconds=10), align_to=T0)
    part = source.build_part("flow.poll", "singleton", None)
    # 12:00:25 with marks every 10 s from 12:00:00 -> first poll at 12:00:30.
    assert part.next_awake() == T0 + timedelta(seconds=30)
    part.next_batch()
    assert part.next_awake() == T0 + timedelta(seconds=40)


def test_polling_aligned_to_a_mark_in_the_future_or_exactly_now(frozen_now: datetime) -> None:
    on_mark = _Poller([], interval=timedelta(seconds=5), align_to=T0)
    assert on_mark.build_part("s", "singleton", None).next_awake() == frozen_now
    future_anchor = T0 + timedelta(hours=1, seconds=7)
    later = _Poller([], interval=timedelta(seconds=10), align_to=future_anchor)
    # The grid extends backwards from the anchor: ..., 12:00:27, 12:00:37, ...
    assert later.build_part("s", "singleton", None).next_awake() == T0 + timedelta(seconds=27)


def test_polling_none_emits_nothing_but_keeps_the_schedule(frozen_now: datetime) -> None:
    part = _Poller([None, 3]).build_part("flow.poll", "singleton", None)
    assert part.next_batch() == []
    assert part.next_awake() == frozen_now + timedelta(minutes=1)
    assert part.next_batch() == [3]


def test_polling_retry_postpones_by_its_timeout(frozen_now: datetime) -> None:
    retry = SimplePollingSource.Retry(timedelta(seconds=5))
    assert retry.timeout == timedelta(seconds=5)
    part = _Poller([retry, retry, 7]).build_part("flow.poll", "singleton", None)
    assert part.next_batch() == []
    assert part.next_awake() == frozen_now + timedelta(seconds=5)
    assert part.next_batch() == []
    assert part.next_awake() == frozen_now + timedelta(seconds=10)
    assert part.next_batch() == [7]
    assert part.next_awake() == frozen_now + timedelta(seconds=10, minutes=1)


def test_polling_errors_other_than_retry_propagate(frozen_now: datetime) -> None:
    part = _Poller([KeyError("boom")]).build_part("flow.poll", "singleton", None)
    with pytest.raises(KeyError, match="boom"):
        part.next_batch()


def test_polling_snapshot_and_resume(frozen_now: datetime) -> None:
    first = _Poller([1, 2])
    part = first.build_part("flow.poll", "singleton", None)
    assert first.resumed_from is None
    part.next_batch()
    part.next_batch()
    state = part.snapshot()
    assert state == 2
    second = _Poller([3])
    resumed = second.build_part("flow.poll", "singleton", state)
    assert second.resumed_from == 2
    assert resumed.next_batch() == [3]
    assert resumed.snapshot() == 3


def test_polling_default_snapshot_is_none(frozen_now: datetime) -> None:
    class Plain(SimplePollingSource[str, None]):
        def next_item(self) -> str:
            return "x"

    part = Plain(timedelta(seconds=1)).build_part("flow.poll", "singleton", None)
    assert part.next_batch() == ["x"]
    assert part.snapshot() is None


def test_polling_real_clock_is_utc() -> None:
    before = datetime.now(UTC)
    part = _Poller([]).build_part("flow.poll", "singleton", None)
    awake = part.next_awake()
    assert awake is not None
    assert before <= awake <= datetime.now(UTC)


@pytest.mark.parametrize("interval", [timedelta(0), timedelta(seconds=-1)])
def test_polling_interval_must_be_positive(interval: timedelta) -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        _Poller([], interval=interval)


# --- batch, batch_getter, batch_getter_ex -------------------------------------------------


@given(st.lists(st.integers()), st.integers(min_value=1, max_value=10))
def test_batch_keeps_order_and_caps_size(items: list[int], size: int) -> None:
    batches = list(batch(items, size))
    assert [item for chunk in batches for item in chunk] == items
    assert all(1 <= len(chunk) <= size for chunk in batches)
    assert all(len(chunk) == size for chunk in batches[:-1])


def test_batch_consumes_a_shared_iterator_lazily() -> None:
    numbers = iter(range(10))
    batches = batch(numbers, 3)
    assert next(batches) == [0, 1, 2]
    assert next(numbers) == 3  # nothing read ahead
    assert next(batches) == [4, 5, 6]


def _getter(script: list[T]) -> Callable[[], T]:
    answers = iter(script)
    return lambda: next(answers)


def test_batch_getter_stops_a_batch_at_the_sentinel() -> None:
    batches = batch_getter(_getter([1, 2, 3, None, None, 4]), 2)
    assert next(batches) == [1, 2]
    assert next(batches) == [3]
    assert next(batches) == []
    assert next(batches) == [4]  # cut short by StopIteration, then the end
    assert list(batches) == []


def test_batch_getter_yields_a_final_empty_batch_at_eof() -> None:
    assert list(batch_getter(_getter([1, None]), 2)) == [[1], []]


def test_batch_getter_custom_sentinel() -> None:
    batches = batch_getter(_getter(["a", "", "b"]), 10, yield_on="")
    assert list(batches) == [["a"], ["b"]]


def test_batch_getter_ex_default_is_queue_empty() -> None:
    q: queue.Queue[int] = queue.Queue()
    batches = batch_getter_ex(q.get_nowait, 3)
    assert next(batches) == []
    for n in range(4):
        q.put(n)
    assert next(batches) == [0, 1, 2]
    assert next(batches) == [3]
    assert next(batches) == []


def test_batch_getter_ex_custom_exception_and_eof() -> None:
    class NotYet(Exception):
        pass

    script: list[object] = [1, NotYet(), 2, 3]

    def getter() -> object:
        if not script:
            raise StopIteration
        answer = script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert list(batch_getter_ex(getter, 5, yield_ex=NotYet)) == [[1], [2, 3]]


# --- batch_async --------------------------------------------------------------------------

LONG = timedelta(seconds=10)  # never reached when items are ready
SHORT = timedelta(milliseconds=50)


async def _numbers(count: int) -> AsyncIterator[int]:
    for n in range(count):
        await asyncio.sleep(0)  # a real suspension point
        yield n


def test_batch_async_batches_a_finite_generator() -> None:
    assert list(batch_async(_numbers(7), LONG, 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_batch_async_empty_generator() -> None:
    assert list(batch_async(_numbers(0), LONG, 3)) == []


def test_batch_async_returns_partial_batch_at_timeout_and_keeps_in_flight_item() -> None:
    gate = asyncio.Event()
    finished = []

    async def gated() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
            await gate.wait()
            yield 3
        finally:
            finished.append(True)

    batches = batch_async(gated(), SHORT, 5)
    started = time.monotonic()
    assert next(batches) == [1, 2]
    assert time.monotonic() - started >= SHORT.total_seconds() * 0.9
    assert next(batches) == []  # still gated: empty batch after the timeout
    gate.set()
    assert next(batches) == [3]
    assert list(batches) == []
    assert finished == [True]


def test_batch_async_propagates_errors() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise ValueError("bad item")

    batches = batch_async(failing(), LONG, 5)
    with pytest.raises(ValueError, match="bad item"):
        next(batches)


def test_batch_async_close_early_cancels_and_cleans_up() -> None:
    cleaned_up = []

    async def endless() -> AsyncIterator[int]:
        try:
            yield 0
            await asyncio.Event().wait()
            yield 1  # pragma: no cover - never reached
        finally:
            cleaned_up.append(True)

    batches = batch_async(endless(), SHORT, 5)
    assert next(batches) == [0]
    batches.close()
    gc.collect()  # an unclosed loop or pending task would warn (warnings are errors)
    assert cleaned_up == [True]


def test_batch_async_uses_and_keeps_a_given_loop() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert list(batch_async(_numbers(3), LONG, 2, loop=loop)) == [[0, 1], [2]]
        assert not loop.is_closed()
        assert loop.run_until_complete(asyncio.sleep(0, result="still usable")) == "still usable"
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --- end to end through run_main ----------------------------------------------------------

import engine.operators as op  # noqa: E402 - grouped with the tests that use it
from engine.dataflow import Dataflow  # noqa: E402
from engine.testing import TestingSink, run_main  # noqa: E402


class _FinitePoller(SimplePollingSource[int, int]):
    """Polls every millisecond; retries once, skips a None, ends after `count` items."""

    def __init__(self, count: int) -> None:
        super().__init__(timedelta(milliseconds=1))
        self.count = count
        self.calls = 0
        self.emitted = 0

    def next_item(self) -> int | None:  # type: ignore[override]
        self.calls += 1
        if self.calls == 2:
            raise SimplePollingSource.Retry(timedelta(milliseconds=1))
        if self.calls == 3:
            return None
        if self.emitted == self.count:
            raise StopIteration
        self.emitted += 1
        return self.emitted

    def snapshot(self) -> int:
        return self.emitted


def test_e2e_simple_polling_source() -> None:
    out: list[int] = []
    flow = Dataflow("polling")
    nums = op.input("inp", flow, _FinitePoller(4))
    op.output("out", nums, TestingSink(out))
    run_main(flow)
    assert out == [1, 2, 3, 4]


class _AsyncPartition(StatelessSourcePartition[int]):
    def __init__(self, worker_index: int, worker_count: int) -> None:
        async def numbers() -> AsyncIterator[int]:
            for n in range(worker_index, 20, worker_count):
                await asyncio.sleep(0)
                yield n

        self.batches = batch_async(numbers(), timedelta(seconds=1), 6)

    def next_batch(self) -> list[int]:
        return next(self.batches)

    def close(self) -> None:
        self.batches.close()


class _AsyncSource(DynamicSource[int]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AsyncPartition:
        return _AsyncPartition(worker_index, worker_count)


def test_e2e_dynamic_source_over_batch_async() -> None:
    out: list[int] = []
    flow = Dataflow("async_in")
    nums = op.input("inp", flow, _AsyncSource())
    op.output("out", op.map("plus", nums, lambda n: n + 100), TestingSink(out))
    run_main(flow)
    assert out == list(range(100, 120))


class _AbortingPartition(StatefulSourcePartition[int, int]):
    def __init__(self) -> None:
        self.batches = 0

    def next_batch(self) -> list[int]:
        self.batches += 1
        if self.batches > 2:
            raise AbortExecution("abort on purpose")
        return [self.batches]

    def snapshot(self) -> int:
        return self.batches


class _AbortingSource(FixedPartitionedSource[int, int]):
    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _AbortingPartition:
        return _AbortingPartition()


def test_e2e_abort_execution_ends_the_run_without_error() -> None:
    """As in Bytewax: the execution stops where it is and run_main returns normally."""
    out: list[int] = []
    flow = Dataflow("aborting")
    op.output("out", op.input("inp", flow, _AbortingSource()), TestingSink(out))
    run_main(flow)
    assert out == [1, 2]
