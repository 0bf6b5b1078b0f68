"""The window kernel (engine/runtime/nodes/window.py) against the general window path.

Every kernel-backed window operator must give the same down/late/meta streams as the
per-key logics (``general_path()``), in the same order in one process and as the same
multiset on two workers; snapshots of either path must resume on either path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.operators as op
import engine.operators.windowing as win
from engine.dataflow import Dataflow, Stream
from engine.operators._windowing_core import general_path
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


def _clock(wait: int, getter: Callable[[Any], datetime] = _ts) -> win.EventClock[Any]:
    return win.EventClock(getter, wait * SEC, now_getter=TimeTestingGetter(T0).get)


def _window_op(name: str, up: Stream[Any], wait: int, windower: Any) -> win.WindowOut[Any, Any]:
    """The operator ``name`` over ``up`` (items ``(key, (ts, int))``)."""
    if name == "fold":
        return win.fold_window("w", up, _clock(wait), windower, str, _concat, _plus)
    if name == "fold_unordered":
        return win.fold_window("w", up, _clock(wait), windower, str, _concat, _plus, ordered=False)
    if name == "count":
        return win.count_window("w", up, _clock(wait, _item_ts), windower, _item_key)
    if name == "reduce":
        return win.reduce_window("w", up, _clock(wait), windower, _add_values)
    if name == "max":
        return win.max_window("w", up, _clock(wait), windower, by=_value_of)
    if name == "min":
        return win.min_window("w", up, _clock(wait), windower, by=_value_of)
    raise AssertionError(name)


OPERATORS = ["fold", "fold_unordered", "count", "reduce", "max", "min"]


def _flow(
    items: list[Any],
    name: str,
    wait: int,
    windower: str,
    out: dict[str, list[Any]],
    *,
    general: bool,
    batch_size: int = 1,
) -> Dataflow:
    flow = Dataflow("wk")
    up = op.input("inp", flow, TestingSource(items, batch_size))
    if general:
        with general_path():
            result = _window_op(name, up, wait, WINDOWERS[windower])
    else:
        result = _window_op(name, up, wait, WINDOWERS[windower])
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
