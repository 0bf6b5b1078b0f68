"""``python -m recovery init|inspect|gc|verify DIR``: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recovery import TOMBSTONE, RecoveryStore
from recovery.cli import main
from tests.recovery._procs import run_interpreter


def _populate(store_dir: Path) -> None:
    with RecoveryStore.open(store_dir) as store:
        store.begin_execution("wordcount", "fp-9", worker_count=2, key_groups=16)
        first, second = store.epoch_writer(1, 0), store.epoch_writer(1, 1)
        first.commit_epoch(2, [("wordcount.count", "a", 1, 1), ("wordcount.count", "b", 1, 1)])
        first.commit_epoch(3, [("wordcount.count", "a", 2, 2)])
        first.commit_epoch(4, [("wordcount.count", "b", 3, TOMBSTONE)])
        second.commit_epoch(4, partition_snapshots=[("wordcount.inp", "part-0", 3, 17)])


def test_init_creates_a_store_and_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().out == f"initialised recovery store at {tmp_path / 's'}\n"
    assert main(["init", str(tmp_path / "s")]) == 0
    assert "already initialised" in capsys.readouterr().out


def test_inspect_reports_executions_frontiers_and_steps(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(store_dir)]) == 0
    empty = capsys.readouterr().out
    assert "flow: none yet" in empty and "executions (0):\n  none" in empty
    _populate(store_dir)
    assert main(["inspect", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert "flow: 'wordcount' (fingerprint fp-9), 16 key groups" in out
    assert "next execution resumes at epoch 4" in out
    assert "w0=4 w1=4" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    assert lines["wordcount.count"][1:5] == ["2", "0", "4", "1"]  # keys parts snaps tombs
    assert lines["wordcount.inp"][1:5] == ["0", "1", "1", "0"]
    assert main(["inspect", "--json", str(store_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["executions"][0]["frontiers"] == {"0": 4, "1": 4}
    assert report["steps"]["wordcount.count"]["snapshots"] == 4


def test_gc_compacts_up_to_the_durable_frontier(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _populate(store_dir)
    assert main(["gc", "--backup-interval-epochs", "1", str(store_dir)]) == 0
    assert capsys.readouterr().out == "gc: compacted up to epoch 2: deleted 1 snapshots, 4 remain\n"
    assert main(["gc", str(store_dir)]) == 0
    assert capsys.readouterr().out == "gc: compacted up to epoch 3: deleted 1 snapshots, 3 remain\n"
    assert main(["verify", str(store_dir)]) == 0
    assert "no problem found" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["inspect", "{missing}"], "no recovery store at"),
        (["gc", "{missing}"], "no recovery store at"),
        (["gc", "--backup-interval-epochs", "-3", "{store}"], "expected a whole number >= 0"),
        (["frobnicate", "{store}"], "invalid choice"),
        ([], "required"),
    ],
)
def test_errors_are_one_line_with_exit_status_2(
    store_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    paths = {"missing": str(store_dir.parent / "nope"), "store": str(store_dir)}
    assert main([arg.format(**paths) for arg in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert expected in captured.err
    assert "Traceback" not in captured.err


def test_gc_refuses_a_store_in_use(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RecoveryStore.open(store_dir) as store, store.lock_for_execution() as lock:
        assert main(["gc", str(store_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by pid {lock.pid}" in err


def test_python_dash_m_recovery_runs_the_cli(store_dir: Path) -> None:
    _populate(store_dir)
    done = run_interpreter("-m", "recovery", "inspect", str(store_dir))
    assert done.returncode == 0, done.stderr
    assert "wordcount.count" in done.stdout
    usage = run_interpreter("-m", "recovery")
    assert usage.returncode == 2 and "required" in usage.stderr
