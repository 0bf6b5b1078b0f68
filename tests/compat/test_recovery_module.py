"""``engine.recovery``: Bytewax's ``bytewax.recovery`` names and CLI, over our store."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import engine.operators as op
import engine.recovery
import recovery
from engine.dataflow import Dataflow
from engine.recovery import NoPartitionsError, RecoveryConfig, init_db_dir
from engine.testing import TestingSink, TestingSource, run_main
from tests.compat.conftest import EntryPoint

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.recovery", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def _running_sum_flow(items: list[tuple[str, int]], out: list[tuple[str, int]]) -> Dataflow:
    flow = Dataflow("compat_recovery")
    pairs = op.input("inp", flow, TestingSource(items))
    sums = op.stateful_map("sum", pairs, lambda total, v: ((total or 0) + v,) * 2)
    op.output("out", sums, TestingSink(out))
    return flow


def test_names_are_the_recovery_package_objects() -> None:
    for name in engine.recovery.__all__:
        if name != "main":
            assert getattr(engine.recovery, name) is getattr(recovery, name), name


def test_bytewax_names_are_all_there() -> None:
    bytewax_recovery = pytest.importorskip("bytewax.recovery")
    assert set(bytewax_recovery.__all__) <= set(engine.recovery.__all__)


def test_cli_makes_a_store_that_a_run_then_uses(tmp_path: Path, entry_point: EntryPoint) -> None:
    db_dir = tmp_path / "db"
    result = _cli(str(db_dir), "1")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    config = RecoveryConfig(db_dir)
    items = [("a", 1), ("b", 10), ("a", 2)]

    first: list[tuple[str, int]] = []
    entry_point(_running_sum_flow(items, first), recovery_config=config)
    assert sorted(first) == [("a", 1), ("a", 3), ("b", 10)]

    # The store remembers the input was read to its end: nothing is read twice.
    second: list[tuple[str, int]] = []
    entry_point(_running_sum_flow(items, second), recovery_config=config)
    assert second == []

    # ...and the state: new items add to the sums of the first execution.
    third: list[tuple[str, int]] = []
    entry_point(_running_sum_flow([*items, ("a", 4)], third), recovery_config=config)
    assert third == [("a", 7)]


def test_cli_again_on_a_store_changes_nothing(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    assert _cli(str(db_dir), "1").returncode == 0
    out: list[tuple[str, int]] = []
    run_main(_running_sum_flow([("a", 1)], out), recovery_config=RecoveryConfig(db_dir))
    assert _cli(str(db_dir), "3").returncode == 0  # part_count only for compatibility
    again: list[tuple[str, int]] = []
    run_main(_running_sum_flow([("a", 1)], again), recovery_config=RecoveryConfig(db_dir))
    assert (out, again) == ([("a", 1)], [])


def test_without_a_store_a_run_says_how_to_make_one(tmp_path: Path) -> None:
    flow = _running_sum_flow([("a", 1)], [])
    with pytest.raises(NoPartitionsError, match="create one"):
        run_main(flow, recovery_config=RecoveryConfig(tmp_path / "none"))


def test_init_db_dir_keeps_bytewax_signature(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 1)
    out: list[tuple[str, int]] = []
    run_main(
        _running_sum_flow([("a", 1)], out),
        recovery_config=RecoveryConfig(tmp_path, backup_interval=timedelta(0)),
    )
    assert out == [("a", 1)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["0"], "count must be a positive int"),
        (["x"], "invalid int value: 'x'"),
        ([], "the following arguments are required: part_count"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = _cli(str(tmp_path / "db"), *args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_takes_the_arguments_of_bytewax() -> None:
    pytest.importorskip("bytewax.recovery")
    ours = _cli("--help")
    theirs = subprocess.run(
        [sys.executable, "-m", "bytewax.recovery", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ours.returncode == theirs.returncode == 0
    usage = "[-h] db_dir part_count"
    assert usage in ours.stdout.splitlines()[0]
    assert usage in theirs.stdout.splitlines()[0]
