"""The ``count_final`` kernel (CountKernelNode) against the general path.

The kernel replaces the per-batch pre-count step and counts raw items per epoch; its
results, errors and snapshots must be those of the per-key logics it stands for.
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.operators as op
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError, ItemTypeError
from engine.operators._core import general_path
from engine.runtime.nodes.stateful import CountKernelNode, FoldKernelNode, StatefulNode
from engine.runtime.nodes.stateless import FlatMapBatchNode, PassNode
from engine.runtime.plan import FlatMapBatchConfig, compile_plan
from engine.runtime.worker import node_types
from engine.testing import TestingSink, TestingSource, cluster_main, run_main
from recovery import RecoveryConfig, init_db_dir

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ZERO = timedelta(0)
words = st.lists(st.sampled_from(["a", "b", "c", "dd", "é", ""]), max_size=40)


def _first_letter(word: str) -> str:
    return word[:1]


def _flow(
    items: list[Any], out: list[Any], general: bool, batch_size: int, key: Any = None
) -> Dataflow:
    flow = Dataflow("f")
    s = op.input("inp", flow, TestingSource(items, batch_size=batch_size))
    if general:
        with general_path():
            counts = op.count_final("count", s, key or (lambda w: w))
    else:
        counts = op.count_final("count", s, key or (lambda w: w))
    op.output("out", counts, TestingSink(out))
    return flow


def _counted(items: list[Any], general: bool, batch_size: int, key: Any = None) -> list[Any]:
    out: list[Any] = []
    run_main(_flow(items, out, general, batch_size, key), epoch_interval=ZERO)
    return out


def test_the_kernel_replaces_the_pre_count_step() -> None:
    plan = compile_plan(_flow(["a"], [], general=False, batch_size=1))
    types = dict(zip((s.step_id for s in plan.steps), node_types(plan), strict=True))
    assert types["f.count.count_batch"] is PassNode
    assert types["f.count.stateful_batch"] is CountKernelNode
    plan = compile_plan(_flow(["a"], [], general=True, batch_size=1))
    types = dict(zip((s.step_id for s in plan.steps), node_types(plan), strict=True))
    assert types["f.count.count_batch"] is FlatMapBatchNode
    assert types["f.count.stateful_batch"] is StatefulNode


def test_without_its_pre_count_step_the_kernel_folds_pairs() -> None:
    plan = compile_plan(_flow(["a"], [], general=False, batch_size=1))
    pre = next(s for s in plan.steps if s.step_id == "f.count.count_batch")
    assert isinstance(pre.config, FlatMapBatchConfig)
    mapper = pre.config.mapper
    other = plan.with_steps(
        tuple(
            s.with_config(mapper=lambda batch: mapper(batch)) if s is pre else s for s in plan.steps
        )
    )
    types = dict(zip((s.step_id for s in other.steps), node_types(other), strict=True))
    assert types["f.count.count_batch"] is FlatMapBatchNode
    assert types["f.count.stateful_batch"] is FoldKernelNode


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=words, batch_size=st.sampled_from([1, 3, 50]), by_letter=st.booleans())
def test_kernel_equals_general_path_and_a_counter(
    items: list[str], batch_size: int, by_letter: bool
) -> None:
    key = _first_letter if by_letter else None
    kernel = _counted(items, False, batch_size, key)
    expected = sorted(Counter(map(key or str, items)).items())
    assert kernel == _counted(items, True, batch_size, key) == expected


def test_kernel_on_two_workers_with_epochs() -> None:
    items = [f"w{i % 7}" for i in range(500)]
    out: list[Any] = []
    flow = _flow(items, out, general=False, batch_size=9)
    cluster_main(flow, [], 0, epoch_interval=ZERO, worker_count_per_proc=2)
    assert sorted(out) == sorted(Counter(items).items())


def test_str_subclass_keys_count_as_their_str() -> None:
    class Word(str):
        pass

    items = [Word("a"), "a", Word("b")]
    assert _counted(items, False, 2) == [("a", 2), ("b", 1)]


@pytest.mark.parametrize("general", [False, True])
def test_non_str_key_names_the_step_worker_and_epoch(general: bool) -> None:
    with pytest.raises(ItemTypeError) as caught:
        _counted(["a", "b", "c", 7], general, 2)
    message = str(caught.value)
    assert "key function of step 'f.count' must return a str; it returned int 7" in message
    assert "worker 0, epoch 2" in message
    assert caught.value.step_id.startswith("f.count.")


def test_failing_key_function_names_the_step() -> None:
    def broken(word: str) -> str:
        raise ValueError(f"cannot key {word!r}")

    with pytest.raises(EngineRuntimeError) as caught:
        _counted(["a"], False, 1, broken)
    message = str(caught.value)
    assert "step 'f.count.stateful_batch' on worker 0, epoch 1 failed" in message
    assert "ValueError: cannot key 'a'" in message


def _resumed(items: list[Any], store: Path, first_general: bool) -> list[Any]:
    init_db_dir(store)
    config = RecoveryConfig(store)
    first: list[Any] = []
    run_main(_flow(items, first, first_general, 2), epoch_interval=ZERO, recovery_config=config)
    second: list[Any] = []
    run_main(
        _flow(items, second, not first_general, 2),
        epoch_interval=ZERO,
        recovery_config=config,
    )
    return first + second


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=words, cut=st.integers(0, 40), first_general=st.booleans())
def test_resume_from_snapshots_of_either_path(
    tmp_path_factory: pytest.TempPathFactory, items: list[str], cut: int, first_general: bool
) -> None:
    aborting = [*items[:cut], TestingSource.ABORT(), *items[cut:]]
    resumed = _resumed(aborting, tmp_path_factory.mktemp("store"), first_general)
    # Every batch is an epoch and commits, so nothing is counted twice after the abort.
    assert resumed == sorted(Counter(items).items())
