"""Editing a flow does not strand its store, end to end.

A flow runs on a store until an EOF marker; an edited version of it (an added
stateless step, an added stateful step) then resumes the store: the old step's state
carries over, the new step starts empty. Renaming a stateful step is refused naming
it, unless the config drops its state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.testing import TestingSink, TestingSource, cluster_main, run_main
from recovery import OrphanedStateError, RecoveryConfig, RecoveryStore, init_db_dir

ZERO = timedelta(0)
#: The step id the runtime stores a ``stateful_map`` named ``sum`` under.
SUM_STEP = "edits.sum.stateful_batch"

Run = Callable[[Dataflow, RecoveryConfig], None]


def _in_process(flow: Dataflow, config: RecoveryConfig) -> None:
    run_main(flow, epoch_interval=ZERO, recovery_config=config)


def _two_workers(flow: Dataflow, config: RecoveryConfig) -> None:
    cluster_main(flow, [], 0, epoch_interval=ZERO, recovery_config=config, worker_count_per_proc=2)


@pytest.fixture
def store(tmp_path: Path) -> RecoveryConfig:
    init_db_dir(tmp_path / "store")
    return RecoveryConfig(tmp_path / "store")


@pytest.fixture(autouse=True)
def _ship_this_module_by_value(request: pytest.FixtureRequest) -> None:
    # Worker processes then need not import this test module (nor pytest).
    cloudpickle.register_pickle_by_value(request.module)


def _items() -> list[Any]:
    return [("a", 1), ("b", 2), ("a", 3), TestingSource.EOF(), ("a", 10), ("b", 20)]


def _running_sum(state: int | None, value: int) -> tuple[int, int]:
    total = (state or 0) + value
    return total, total


def _count(state: int | None, value: Any) -> tuple[int, tuple[Any, int]]:
    seen = (state or 0) + 1
    return seen, (value, seen)


def _times_100(item: tuple[str, int]) -> tuple[str, int]:
    return item[0], item[1] * 100


def _first_version(out: list[Any]) -> Dataflow:
    flow = Dataflow("edits")
    s = op.input("inp", flow, TestingSource(_items()))
    op.output("out", op.stateful_map("sum", s, _running_sum), TestingSink(out))
    return flow


def _with_added_steps(out: list[Any]) -> Dataflow:
    """The first version plus a stateless ``map`` before and a ``stateful_map`` after."""
    flow = Dataflow("edits")
    s = op.input("inp", flow, TestingSource(_items()))
    sums = op.stateful_map("sum", op.map("times_100", s, _times_100), _running_sum)
    op.output("out", op.stateful_map("count", sums, _count), TestingSink(out))
    return flow


def _with_sum_renamed(out: list[Any]) -> Dataflow:
    flow = Dataflow("edits")
    s = op.input("inp", flow, TestingSource(_items()))
    op.output("out", op.stateful_map("total", s, _running_sum), TestingSink(out))
    return flow


def _added_steps_resume(run: Run, store: RecoveryConfig) -> None:
    first: list[Any] = []
    run(_first_version(first), store)
    assert sorted(first) == [("a", 1), ("a", 4), ("b", 2)]
    edited: list[Any] = []
    run(_with_added_steps(edited), store)
    # "sum" resumed with a=4, b=2; "count" is new, so every key's count starts at 1.
    assert sorted(edited) == [("a", (1004, 1)), ("b", (2002, 1))]


def test_adding_steps_resumes_with_the_old_state_and_empty_new_steps(
    store: RecoveryConfig,
) -> None:
    _added_steps_resume(_in_process, store)
    with RecoveryStore.open(store.db_dir) as opened:
        recorded = opened.inspect()["state_steps"]
    assert recorded == ["edits.count.stateful_batch", "edits.inp", SUM_STEP]


def test_adding_steps_resumes_on_two_worker_processes(store: RecoveryConfig) -> None:
    _added_steps_resume(_two_workers, store)


def test_renaming_a_stateful_step_is_refused_naming_it(store: RecoveryConfig) -> None:
    _in_process(_first_version([]), store)
    with pytest.raises(OrphanedStateError) as info:
        _in_process(_with_sum_renamed([]), store)
    assert info.value.step_ids == (SUM_STEP,)
    assert "drop_state" in str(info.value)
    again: list[Any] = []
    _in_process(_first_version(again), store)  # the refusal left the store as it was
    assert sorted(again) == [("a", 14), ("b", 22)]


def test_drop_state_runs_the_renamed_step_from_empty(store: RecoveryConfig) -> None:
    _in_process(_first_version([]), store)
    out: list[Any] = []
    dropping = RecoveryConfig(store.db_dir, drop_state={SUM_STEP})
    _in_process(_with_sum_renamed(out), dropping)
    assert sorted(out) == [("a", 10), ("b", 20)]  # input resumed, "total" started empty
    with RecoveryStore.open(store.db_dir) as opened:
        report = opened.inspect()
    assert SUM_STEP not in report["steps"] and SUM_STEP not in report["state_steps"]
