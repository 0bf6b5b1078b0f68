"""The window kernel (engine/runtime/nodes/window.py) against the general window path.

Every kernel-backed window operator must give the same down/late/meta streams as the
per-key logics (``general_path()``), in the same order in one process and as the same
multiset on two workers; snapshots of either path must resume on either path.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import engine.operators as op
import engine.operators.windowing as win
from engine.dataflow import Dataflow, Stream
from engine.inputs import FixedPartitionedSource, StatefulSourcePartition
from engine.operators._windowing_core import general_path
from engine.outputs import DynamicSink, StatelessSinkPartition
from engine.runtime.plan import StatefulBatchConfig, compile_plan
from engine.testing import TestingSink, TestingSource, TimeTestingGetter, cluster_main, run_main
from recovery import RecoveryConfig, init_db_dir

cloudpickle.register_pickle_by_value(sys.modules[__name__])

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SEC = timedelta(seconds=1)
ZERO = timedelta(0)
WINDOWERS = {
    "tumbling": win.TumblingWindower(10 * SEC, T0),
    "sliding": win.SlidingWindower(10 * SEC, 4 * SEC, T0),
}
MINUTE = timedelta(minutes=1)
#: On the system's clock the watermark also moves with the time a run takes: items and
#: windows a minute apart keep that drift (milliseconds) from deciding anything.
REAL_TIME_WINDOWERS = {
    "tumbling": win.TumblingWindower(10 * MINUTE, T0),
    "sliding": win.SlidingWindower(10 * MINUTE, 4 * MINUTE, T0),
}
REAL_TIME_WAITS = [MINUTE / 2, 3 * MINUTE + MINUTE / 2]


def _ts(value: tuple[datetime, int]) -> datetime:
    return value[0]


def _item_ts(item: tuple[str, tuple[datetime, int]]) -> datetime:
    return item[1][0]


def _concat(acc: str, value: tuple[datetime, int]) -> str:
    return acc + str(value[1])


def _plus(a: Any, b: Any) -> Any:
    return a + b


def _add_values(a: tuple[datetime, int], b: tuple[datetime, int]) -> tuple[datetime, int]:
    return (max(a[0], b[0]), a[1] + b[1])


def _value_of(v: tuple[datetime, int]) -> int:
    return v[1]


def _item_key(item: tuple[str, Any]) -> str:
    return item[0]


def _clock(
    wait: int | timedelta, getter: Callable[[Any], datetime] = _ts, real_time: bool = False
) -> win.EventClock[Any]:
    """An event clock waiting ``wait`` (seconds or a timedelta), on a test clock that
    never moves or (``real_time``) on the system's clock."""
    duration = wait if isinstance(wait, timedelta) else wait * SEC
    if real_time:
        return win.EventClock(getter, duration)
    return win.EventClock(getter, duration, now_getter=TimeTestingGetter(T0).get)


def _window_op(
    name: str, up: Stream[Any], wait: int | timedelta, windower: Any, real_time: bool = False
) -> win.WindowOut[Any, Any]:
    """The operator ``name`` over ``up`` (items ``(key, (ts, int))``)."""
    clock = _clock(wait, real_time=real_time)
    if name == "fold":
        return win.fold_window("w", up, clock, windower, str, _concat, _plus)
    if name == "fold_unordered":
        return win.fold_window("w", up, clock, windower, str, _concat, _plus, ordered=False)
    if name == "count":
        clock = _clock(wait, _item_ts, real_time)
        return win.count_window("w", up, clock, windower, _item_key)
    if name == "reduce":
        return win.reduce_window("w", up, clock, windower, _add_values)
    if name == "max":
        return win.max_window("w", up, clock, windower, by=_value_of)
    if name == "min":
        return win.min_window("w", up, clock, windower, by=_value_of)
    raise AssertionError(name)


OPERATORS = ["fold", "fold_unordered", "count", "reduce", "max", "min"]


def _flow(
    items: list[Any],
    name: str,
    wait: int | timedelta,
    windower: str,
    out: dict[str, list[Any]],
    *,
    general: bool,
    batch_size: int = 1,
    real_time: bool = False,
) -> Dataflow:
    flow = Dataflow("wk")
    up = op.input("inp", flow, TestingSource(items, batch_size))
    windowers = REAL_TIME_WINDOWERS if real_time else WINDOWERS
    if general:
        with general_path():
            result = _window_op(name, up, wait, windowers[windower], real_time)
    else:
        result = _window_op(name, up, wait, windowers[windower], real_time)
    for stream_name in ("down", "late", "meta"):
        out[stream_name] = []
        op.output(stream_name, getattr(result, stream_name), TestingSink(out[stream_name]))
    return flow


def _kernels_of(flow: Dataflow) -> list[Any]:
    plan = compile_plan(flow)
    return [
        s.config.kernel.kind
        for s in plan.steps
        if isinstance(s.config, StatefulBatchConfig) and s.config.kernel is not None
    ]


def _run_both(
    items: list[Any],
    name: str,
    wait: int,
    windower: str,
    batch_size: int,
    run: Callable[[Dataflow], None],
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    kernel: dict[str, list[Any]] = {}
    general: dict[str, list[Any]] = {}
    run(_flow(items, name, wait, windower, kernel, general=False, batch_size=batch_size))
    run(_flow(items, name, wait, windower, general, general=True, batch_size=batch_size))
    return kernel, general


events = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(0, 40), st.integers(0, 9)), max_size=25
)


def _items(raw: list[tuple[str, int, int]]) -> list[Any]:
    return [(key, (T0 + s * SEC, v)) for key, s, v in raw]


def _run_main(flow: Dataflow) -> None:
    run_main(flow, epoch_interval=ZERO)


def _two_workers(flow: Dataflow) -> None:
    cluster_main(flow, [], 0, epoch_interval=ZERO, worker_count_per_proc=2)


def test_the_operators_declare_the_kernel_and_collect_does_not() -> None:
    out: dict[str, list[Any]] = {}
    for name in OPERATORS:
        assert _kernels_of(_flow([], name, 0, "sliding", out, general=False)) == ["window"]
        assert _kernels_of(_flow([], name, 0, "sliding", out, general=True)) == []
    flow = Dataflow("c")
    up = op.input("inp", flow, TestingSource([]))
    op.output(
        "o", win.collect_window("c", up, _clock(0), WINDOWERS["tumbling"]).down, TestingSink([])
    )
    flow2 = Dataflow("s")
    up2 = op.input("inp", flow2, TestingSource([]))
    sessions = win.fold_window("s", up2, _clock(0), win.SessionWindower(SEC), str, _concat, _plus)
    op.output("o", sessions.down, TestingSink([]))
    assert _kernels_of(flow) == [] and _kernels_of(flow2) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=events,
    name=st.sampled_from(OPERATORS),
    wait=st.sampled_from([0, 3]),
    windower=st.sampled_from(list(WINDOWERS)),
    batch_size=st.sampled_from([1, 4]),
)
def test_kernel_equals_general_path_in_process(
    raw: list[tuple[str, int, int]], name: str, wait: int, windower: str, batch_size: int
) -> None:
    kernel, general = _run_both(_items(raw), name, wait, windower, batch_size, _run_main)
    assert kernel == general


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("windower", list(WINDOWERS))
def test_kernel_equals_general_path_on_two_workers(name: str, windower: str) -> None:
    raw = [(k, (i * 7) % 37, i % 10) for i, k in enumerate("abcabbcacbaab" * 3)]
    kernel, general = _run_both(_items(raw), name, 3, windower, 3, _two_workers)
    assert {k: sorted(v, key=repr) for k, v in kernel.items()} == {
        k: sorted(v, key=repr) for k, v in general.items()
    }
    assert kernel["late"], "the input is meant to have late items"


@pytest.mark.parametrize("name", ["fold", "count", "max"])
@pytest.mark.parametrize("windower", list(WINDOWERS))
def test_many_queued_runs_are_merged_in_time_order(name: str, windower: str) -> None:
    # A falling saw of one-item batches: each starts before the last queued value, so
    # each opens a run of the key's queue (more runs than MAX_QUEUE_RUNS).
    seconds = [60 - (i % 25) * 2 + i // 25 for i in range(75)] + [0, 1]
    raw = [("a" if i % 3 else "b", s, i % 10) for i, s in enumerate(seconds)]
    kernel, general = _run_both(_items(raw), name, 50, windower, 1, _run_main)
    assert kernel == general
    assert len(kernel["down"]) > 5 and kernel["late"]


def _resumed(
    items: list[Any], tmp_path: Path, name: str, windower: str, first_general: bool
) -> dict[str, list[Any]]:
    init_db_dir(tmp_path)
    config = RecoveryConfig(tmp_path)
    out: dict[str, list[Any]] = {}
    flow = _flow(items, name, 3, windower, out, general=first_general, batch_size=2)
    run_main(flow, epoch_interval=ZERO, recovery_config=config)
    collected = {k: list(v) for k, v in out.items()}
    flow = _flow(items, name, 3, windower, out, general=not first_general, batch_size=2)
    run_main(flow, epoch_interval=ZERO, recovery_config=config)
    return {k: collected[k] + v for k, v in out.items()}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=events,
    cut=st.integers(0, 25),
    name=st.sampled_from(OPERATORS),
    windower=st.sampled_from(list(WINDOWERS)),
    first_general=st.booleans(),
)
def test_resume_from_snapshots_of_either_path(
    tmp_path_factory: pytest.TempPathFactory,
    raw: list[tuple[str, int, int]],
    cut: int,
    name: str,
    windower: str,
    first_general: bool,
) -> None:
    items = _items(raw)
    plain: dict[str, list[Any]] = {}
    run_main(
        _flow(items, name, 3, windower, plain, general=True, batch_size=2), epoch_interval=ZERO
    )
    aborting = [*items[:cut], TestingSource.ABORT(), *items[cut:]]
    resumed = _resumed(aborting, tmp_path_factory.mktemp("store"), name, windower, first_general)
    # Every batch is an epoch and commits: the resumed run replays nothing, and its
    # outputs are those of the run without the abort.
    assert {k: sorted(v, key=repr) for k, v in resumed.items()} == {
        k: sorted(v, key=repr) for k, v in plain.items()
    }


def _system_clock_counts(general: bool) -> list[Any]:
    flow = Dataflow("sys")
    up = op.input("inp", flow, TestingSource([f"k{i % 5}" for i in range(200)], 7))
    windower = win.TumblingWindower(timedelta(days=3650), datetime(2020, 1, 1, tzinfo=UTC))
    out: list[Any] = []
    if general:
        with general_path():
            result = win.count_window("c", up, win.SystemClock(), windower, str)
    else:
        result = win.count_window("c", up, win.SystemClock(), windower, str)
    op.output("out", result.down, TestingSink(out))
    cluster_main(flow, [], 0, epoch_interval=timedelta(milliseconds=5), worker_count_per_proc=2)
    return sorted(out)


def test_system_clock_pre_aggregates_with_the_same_result() -> None:
    assert _system_clock_counts(False) == _system_clock_counts(True)
    assert _system_clock_counts(False) == [(f"k{i}", (0, 40)) for i in range(5)]


# -- holding: an event clock on the system's time ----------------------------------------


def _minute_items(raw: list[tuple[str, int, int]]) -> list[Any]:
    return [(key, (T0 + s * MINUTE, v)) for key, s, v in raw]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=events,
    name=st.sampled_from(OPERATORS),
    wait=st.sampled_from(REAL_TIME_WAITS),
    windower=st.sampled_from(list(REAL_TIME_WINDOWERS)),
    batch_size=st.sampled_from([1, 4]),
)
# Held batches close windows -1 and 0 in one pass; item by item, -1 closes first. Both
# paths close in order of close time, so the key's outputs keep that order either way.
@example(
    raw=[("b", 6, 0), ("b", 3, 0), ("b", 10, 0), ("b", 14, 0)],
    name="fold_unordered",
    wait=timedelta(seconds=210),
    windower="sliding",
    batch_size=1,
)
def test_real_time_kernel_holds_batches_and_equals_general_path(
    raw: list[tuple[str, int, int]], name: str, wait: timedelta, windower: str, batch_size: int
) -> None:
    items = _minute_items(raw)
    kernel: dict[str, list[Any]] = {}
    general: dict[str, list[Any]] = {}
    for out, is_general in ((kernel, False), (general, True)):
        flow = _flow(
            items,
            name,
            wait,
            windower,
            out,
            general=is_general,
            batch_size=batch_size,
            real_time=True,
        )
        run_main(flow, epoch_interval=timedelta(minutes=10))
    # Held batches are applied in one pass, key by key: each key's outputs keep their
    # order, outputs of different keys may interleave differently.
    assert _per_key(kernel) == _per_key(general)


def _per_key(out: dict[str, list[Any]]) -> dict[str, dict[str, list[Any]]]:
    """Each stream's items by key, in the order they came."""
    split: dict[str, dict[str, list[Any]]] = {}
    for stream, items in out.items():
        by_key = split[stream] = {}
        for key, value in items:
            by_key.setdefault(key, []).append(value)
    return split


def test_real_time_kernel_applies_held_batches_together(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.runtime.nodes.window import WindowKernelNode

    passes: list[int] = []
    apply = WindowKernelNode._apply

    def counted(node: WindowKernelNode, epoch: int, batch: list[Any]) -> None:
        passes.append(len(batch))
        apply(node, epoch, batch)

    monkeypatch.setattr(WindowKernelNode, "_apply", counted)
    raw = [(f"k{i % 50}", i // 40, i % 10) for i in range(2000)]
    kernel: dict[str, list[Any]] = {}
    flow = _flow(
        _minute_items(raw),
        "count",
        MINUTE / 2,
        "tumbling",
        kernel,
        general=False,
        batch_size=10,
        real_time=True,
    )
    run_main(flow, epoch_interval=timedelta(minutes=10))
    # 200 batches of 10 (5 values per key and batch at most) went in far fewer passes.
    assert sum(passes) == 2000
    assert len(passes) < 50, passes
    expected: dict[tuple[str, int], int] = {}
    for key, minute, _ in raw:
        expected[key, minute // 10] = expected.get((key, minute // 10), 0) + 1
    assert {(k, w): n for k, (w, n) in kernel["down"]} == expected


class _PausingPartition(StatefulSourcePartition[Any, None]):
    """Gives one batch, then nothing until ``released`` is set, then ends."""

    def __init__(self, batch: list[Any], released: threading.Event) -> None:
        self.batch: list[Any] | None = batch
        self.released = released

    def next_batch(self) -> list[Any]:
        if self.batch is not None:
            batch, self.batch = self.batch, None
            return batch
        if self.released.is_set():
            raise StopIteration
        return []

    def snapshot(self) -> None:
        return None


class _PausingSource(FixedPartitionedSource[Any, None]):
    def __init__(self, batch: list[Any], released: threading.Event) -> None:
        self.batch = batch
        self.released = released

    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PausingPartition:
        return _PausingPartition(self.batch, self.released)


class _ReleasingSink(DynamicSink[Any]):
    """Sets ``released`` once an item reaches it."""

    def __init__(self, out: list[Any], released: threading.Event) -> None:
        self.out = out
        self.released = released

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        sink = self

        class _Part(StatelessSinkPartition[Any]):
            def write_batch(self, items: list[Any]) -> None:
                sink.out.extend(items)
                sink.released.set()

        return _Part()


@pytest.mark.timeout(60)
def test_real_time_kernel_releases_held_values_when_input_pauses() -> None:
    """A window that closes in a batch reaches the sink while the source waits for it,
    long before the epoch ends: values are not held while no more arrive."""
    released = threading.Event()
    batch = [("a", (T0, 1)), ("a", (T0 + 11 * MINUTE, 2))]
    flow = Dataflow("pause")
    up = op.input("inp", flow, _PausingSource(batch, released))
    windows = win.count_window(
        "w",
        up,
        _clock(ZERO, _item_ts, real_time=True),
        REAL_TIME_WINDOWERS["tumbling"],
        _item_key,
    )
    out: list[Any] = []
    op.output("out", windows.down, _ReleasingSink(out, released))
    run_main(flow, epoch_interval=timedelta(minutes=30))
    assert out == [("a", (0, 1)), ("a", (1, 1))]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=events,
    cut=st.integers(0, 25),
    name=st.sampled_from(OPERATORS),
    windower=st.sampled_from(list(REAL_TIME_WINDOWERS)),
)
def test_real_time_kernel_snapshots_what_it_holds(
    tmp_path_factory: pytest.TempPathFactory,
    raw: list[tuple[str, int, int]],
    cut: int,
    name: str,
    windower: str,
) -> None:
    items = _minute_items(raw)
    wait = REAL_TIME_WAITS[1]
    plain: dict[str, list[Any]] = {}
    flow = _flow(items, name, wait, windower, plain, general=True, batch_size=2, real_time=True)
    run_main(flow, epoch_interval=ZERO)
    store = tmp_path_factory.mktemp("store")
    init_db_dir(store)
    config = RecoveryConfig(store)
    out: dict[str, list[Any]] = {}
    aborting = [*items[:cut], TestingSource.ABORT(), *items[cut:]]
    flow = _flow(aborting, name, wait, windower, out, general=False, batch_size=2, real_time=True)
    run_main(flow, epoch_interval=ZERO, recovery_config=config)
    first = {k: list(v) for k, v in out.items()}
    flow = _flow(aborting, name, wait, windower, out, general=False, batch_size=2, real_time=True)
    run_main(flow, epoch_interval=ZERO, recovery_config=config)
    resumed = {k: first[k] + v for k, v in out.items()}
    # Each batch is an epoch: what the kernel held when the epoch closed is in its
    # snapshot, so the resumed run replays nothing and loses nothing.
    assert {k: sorted(v, key=repr) for k, v in resumed.items()} == {
        k: sorted(v, key=repr) for k, v in plain.items()
    }


# -- streams handed over directly, unread streams not made -----------------------------


READ_SUBSETS = [("down",), ("meta",), ("late",), ("down", "late"), ("late", "meta")]


def _partial_flow(
    items: list[Any], name: str, read: tuple[str, ...], out: dict[str, list[Any]], general: bool
) -> Dataflow:
    flow = Dataflow("wk")
    up = op.input("inp", flow, TestingSource(items, 3))
    if general:
        with general_path():
            result = _window_op(name, up, 2, WINDOWERS["sliding"])
    else:
        result = _window_op(name, up, 2, WINDOWERS["sliding"])
    for stream_name in read:
        out[stream_name] = []
        op.output(stream_name, getattr(result, stream_name), TestingSink(out[stream_name]))
    return flow


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=events, name=st.sampled_from(OPERATORS), read=st.sampled_from(READ_SUBSETS))
def test_kernel_equals_general_path_when_only_some_streams_are_read(
    raw: list[tuple[str, int, int]], name: str, read: tuple[str, ...]
) -> None:
    kernel: dict[str, list[Any]] = {}
    general: dict[str, list[Any]] = {}
    _run_main(_partial_flow(_items(raw), name, read, kernel, general=False))
    _run_main(_partial_flow(_items(raw), name, read, general, general=True))
    assert kernel == general and set(kernel) == set(read)


def _merged_streams(items: list[Any], general: bool) -> list[Any]:
    out: list[Any] = []
    flow = Dataflow("wk")
    up = op.input("inp", flow, TestingSource(items, 4))
    if general:
        with general_path():
            result = _window_op("fold", up, 0, WINDOWERS["tumbling"])
    else:
        result = _window_op("fold", up, 0, WINDOWERS["tumbling"])
    both = op.merge("both", result.meta, result.down, result.late)
    op.output("out", both, TestingSink(out))
    op.output("again", result.down, TestingSink(out))  # a second reader of down
    _run_main(flow)
    return out


def test_merged_streams_and_a_second_reader_see_the_general_paths_order() -> None:
    items = _items([("a", 1, 1), ("b", 2, 2), ("a", 12, 3), ("a", 0, 4), ("b", 25, 5)])
    kernel = _merged_streams(items, general=False)
    assert kernel == _merged_streams(items, general=True)
    # per pass: down (both readers), then late, then meta, whatever the merge's order
    assert kernel[:2] == [("a", (0, "1"))] * 2 and kernel[2][1][1][1] == 4
    assert type(kernel[3][1][1]) is win.WindowMetadata


def test_unwrap_steps_pass_through_and_unread_metadata_is_not_made() -> None:
    from engine.runtime.nodes.stateless import FlatMapBatchNode, PassNode
    from engine.runtime.nodes.window import WindowKernelNode
    from engine.runtime.worker import Worker, WorkerConfig, node_types

    out: dict[str, list[Any]] = {}
    items = _items([("a", 1, 1), ("a", 3, 2), ("b", 2, 3), ("a", 30, 4), ("a", 2, 5)])
    plan = compile_plan(_partial_flow(items, "fold", ("down",), out, general=False))
    types = dict(zip((s.step_id for s in plan.steps), node_types(plan), strict=True))
    assert types["wk.w.window.stateful_batch"] is WindowKernelNode
    for kind in ("down", "late", "meta"):
        assert types[f"wk.w.window.unwrap_{kind}"] is PassNode
    worker = Worker(plan, WorkerConfig(epoch_interval_s=0.0))
    worker.run()
    stats = {node.step_id: node for node in worker.nodes}
    assert out["down"] == [
        ("a", (-2, "1")),
        ("a", (-1, "12")),
        ("a", (0, "12")),
        ("a", (6, "4")),
        ("a", (7, "4")),
        ("b", (-1, "3")),
        ("b", (0, "3")),
    ]
    assert stats["wk.w.window.unwrap_down"].items_in == 7
    assert stats["wk.w.window.unwrap_meta"].items_in == 0  # nobody reads the metadata
    # The late item (2 s, after the watermark reached 28 s; in two sliding windows) is
    # still counted: it tells when results change with the worker count (see
    # engine.tools.tune.late_note).
    assert stats["wk.w.window.unwrap_late"].items_out == 2
    # a flow built on the general path keeps its unwrap steps
    general = compile_plan(_partial_flow(items, "fold", ("down",), {}, general=True))
    assert FlatMapBatchNode in node_types(general) and PassNode not in node_types(general)
