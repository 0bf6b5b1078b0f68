"""``shmflow tune``: recommendation, dry sinks, --json schema, --plot, --duration, stop."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import engine.operators as op
from engine import run_flow
from engine.connectors.files import FileSink
from engine.dataflow import Dataflow
from engine.runtime.summary import RunSummary, StepSummary, WorkerSummary
from engine.testing import TestingSink, TestingSource, run_main
from engine.tools import cli
from engine.tools import tune as tuning
from engine.tools.flows import CountingPartitionedSink, CountingSink
from tests.engine.cluster_flows import endless_flow

MULTI_CORE = (os.cpu_count() or 1) >= 2


def _tune_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert cli.main(["tune", *argv, "--json", "-q"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # nothing but the document on stdout


# -- the recommendation (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("medians", "workers", "best", "reason"),
    [
        (
            {1: 100.0, 2: 190.0, 4: 195.0},
            2,
            4,
            "2 workers reach 97% of the best throughput (4 workers); more workers add less than 5%",
        ),
        (
            {1: 100.0, 2: 150.0, 4: 200.0},
            4,
            4,
            "4 workers give the best throughput; 2 workers reach only 75% of it",
        ),
        (
            {1: 100.0, 2: 90.0},
            1,
            1,
            "1 worker gives the best throughput; more workers do not make it faster "
            "(2 workers: 90%)",
        ),
        (
            {1: 100.0, 2: 104.0},
            1,
            2,
            "1 worker reaches 96% of the best throughput (2 workers); "
            "more workers add less than 5%",
        ),
        ({3: 10.0}, 3, 3, "only 3 workers measured"),
        ({1: 0.0, 2: 0.0}, 1, 1, "no items were read at any worker count; 1 worker is enough"),
    ],
)
def test_recommend(medians: dict[int, float], workers: int, best: int, reason: str) -> None:
    got = tuning.recommend(medians)
    assert (got.workers, got.best_workers, got.reason) == (workers, best, reason)
    assert 0 < got.share_of_best <= 1


def test_recommend_is_within_tolerance_inclusive_and_needs_counts() -> None:
    assert tuning.recommend({1: 95.0, 2: 100.0}).workers == 1  # exactly 95%: within 5%
    assert tuning.recommend({1: 94.9, 2: 100.0}).workers == 2
    assert tuning.recommend({1: 80.0, 2: 100.0}, tolerance=0.25).workers == 1
    with pytest.raises(ValueError, match="at least one"):
        tuning.recommend({})


def test_recommend_respects_the_input_limit() -> None:
    limit = tuning.InputLimit(workers=1, step_id="work", partitions=1)
    got = tuning.recommend({1: 100.0, 2: 110.0}, limit=limit)
    assert (got.workers, got.best_workers) == (1, 2)
    assert got.reason == (
        "the busiest step (work) runs before any exchange, on the worker(s) reading the "
        "flow's 1 input partition, so more than 1 worker cannot share it "
        "(measured anyway: 2 workers 110%)"
    )
    limit = tuning.InputLimit(workers=2, step_id="work", partitions=2)
    got = tuning.recommend({1: 100.0, 2: 190.0, 4: 200.0}, limit=limit)
    assert got.workers == 2 and got.reason.startswith("2 workers give the best throughput")
    # a limit at or above every count changes nothing
    assert tuning.recommend({1: 100.0, 2: 190.0}, limit=limit).workers == 2


def test_input_limit_only_for_work_before_any_exchange() -> None:
    from engine.examples.cpu_bound import make_flow, single_partition_flow

    one = tuning.input_limit(single_partition_flow(10), "cpu_bound.work.flat_map_batch")
    assert one == tuning.InputLimit(workers=1, step_id="work", partitions=1)
    eight = tuning.input_limit(make_flow(10), "cpu_bound.work.flat_map_batch")
    assert eight is not None and eight.workers == 8
    # the keyed sum is after the exchange: any number of workers can share it
    assert tuning.input_limit(single_partition_flow(10), "cpu_bound.sum.stateful_batch") is None
    assert tuning.input_limit(endless_flow(), "endless.ticks") is None  # dynamic source
    assert tuning.input_limit(make_flow(10), None) is None


def _run(workers: int, rate: float) -> tuning.Run:
    summary = RunSummary(workers=workers, wall_time_s=1.0, items_in=int(rate))
    summary.per_worker = [
        WorkerSummary(i, 0, 0, 0, 0, 0, 0, 0, 0.5, 50.0 + i, 1 << 20, 0.0, 0.0)
        for i in range(workers)
    ]
    return tuning.Run(summary, rate, rate, None)


def test_fold_runs_speedup_efficiency_and_medians() -> None:
    rows = tuning.fold_runs(
        {1: [_run(1, 100), _run(1, 120), _run(1, 110)], 2: [_run(2, 200), _run(2, 180)]}
    )
    assert [r.workers for r in rows] == [1, 2]
    assert rows[0].median == 110 and rows[1].median == 190
    assert rows[1].speedup == pytest.approx(190 / 110)
    assert rows[1].efficiency == pytest.approx(190 / 110 / 2)
    assert rows[1].cpu_percent_per_worker == pytest.approx(50.5)
    assert rows[1].peak_rss_bytes == 1 << 20


def _late_run(workers: int, late: int, items_in: int = 1_000) -> tuning.Run:
    run = _run(workers, items_in)
    run.late_steps = ("f.sum.window.unwrap_late",)
    run.summary.steps = [
        StepSummary("f.sum.window.stateful_batch", items_in, items_in, 1, 0.1),
        StepSummary("f.sum.window.unwrap_late", items_in, late, 1, 0.0),
    ]
    return run


def test_late_items_and_share_per_window_step() -> None:
    late = _late_run(1, 7)
    assert tuning.late_items(late.summary, late.late_steps) == {"f.sum": 7}
    assert tuning.late_items(_run(1, 10).summary, ()) == {}
    row = tuning.fold_runs({2: [_late_run(2, 100), _late_run(2, 300), _late_run(2, 200)]})[0]
    assert row.late_share == {"f.sum": pytest.approx(0.2)}


def test_late_steps_come_from_the_plan_for_every_windowing_operator() -> None:
    from datetime import UTC, datetime, timedelta

    import engine.operators.windowing as win

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    flow = Dataflow("f")
    up = op.key_on("k", op.input("inp", flow, TestingSource([t0])), lambda _: "a")
    clock = win.EventClock(lambda ts: ts, timedelta(0))
    tumbling = win.TumblingWindower(timedelta(seconds=1), t0)
    sums = win.fold_window("sum", up, clock, tumbling, int, lambda a, _: a + 1, int.__add__)
    sessions = win.collect_window("w", up, clock, win.SessionWindower(timedelta(seconds=1)))
    op.output("a", sums.down, TestingSink([]))
    op.output("b", sessions.down, TestingSink([]))
    assert tuning.late_steps(flow) == (
        "f.sum.window.unwrap_late",
        "f.w.fold_window.window.unwrap_late",
    )
    assert tuning.late_steps(endless_flow()) == ()


def test_late_note_only_when_the_worker_count_changes_how_many_are_late() -> None:
    same = tuning.fold_runs({1: [_late_run(1, 50)], 2: [_late_run(2, 50)]})
    assert tuning.late_note(same) is None  # late data, not late workers
    assert tuning.late_note(tuning.fold_runs({1: [_run(1, 10)], 2: [_run(2, 20)]})) is None
    rows = tuning.fold_runs({1: [_late_run(1, 0)], 2: [_late_run(2, 461)]})
    note = tuning.late_note(rows)
    assert note is not None
    assert "window step 'sum': 0.0% at 1 worker, 46.1% at 2 workers" in note
    assert "partition the input by key" in note and "wait_for_system_duration" in note
    # one late item in a million still changes the results
    tiny = tuning.fold_runs({1: [_late_run(1, 0, 10**6)], 2: [_late_run(2, 1, 10**6)]})
    assert tuning.late_note(tiny) is not None
    result = tuning.TuneResult("f", rows, tuning.recommend({1: 1.0, 2: 2.0}), False, 1, None)
    assert f"note: {note}\n" in tuning.format_result(result)
    assert tuning.tune_document(result)["late_note"] == note


def test_running_rate_skips_start_up() -> None:
    # 1 s of start-up, then 1,000 items/s until 3 s
    statuses = [(0.5, 0.0), (1.0, 0.0), (1.5, 1000.0), (2.0, 1000.0), (2.5, 1000.0)]
    assert tuning.running_rate(statuses, items_in=2000, wall_time_s=3.0) == (1000.0, 1.5)
    assert tuning.running_rate([], items_in=10, wall_time_s=0.3) is None


def test_worker_counts() -> None:
    assert tuning.default_worker_counts(8) == [1, 2, 4, 8]
    assert tuning.default_worker_counts(3) == [1, 2, 3]
    assert tuning.parse_worker_counts("3,1") == [1, 3]


# -- dry sinks -----------------------------------------------------------------------------


def test_with_counting_sinks_swaps_every_sink_and_leaves_the_flow_alone(tmp_path: Path) -> None:
    out: list[Any] = []
    seen: list[Any] = []
    flow = Dataflow("dry")
    nums = op.input("inp", flow, TestingSource([1, 2, 3]))
    nums = op.inspect("look", nums, lambda step_id, item: seen.append(item))
    op.output("list", nums, TestingSink(out))
    op.output("file", op.map("kv", nums, lambda x: ("k", x)), FileSink(tmp_path / "f.txt"))

    dry = tuning.with_counting_sinks(flow)
    sinks = {s.step_id: s.config["sink"] for s in dry.core_steps if s.kind == "output"}
    assert isinstance(sinks["dry.list"], CountingSink)
    assert isinstance(sinks["dry.file"], CountingPartitionedSink)
    assert sinks["dry.file"].list_parts() == [str(tmp_path / "f.txt")]
    run_main(dry)
    assert out == [] and seen == [] and not (tmp_path / "f.txt").exists()
    run_main(flow)  # the original still writes
    assert out == [1, 2, 3] and seen == [1, 2, 3]
    assert (tmp_path / "f.txt").read_text() == "1\n2\n3\n"


@pytest.fixture
def file_sink_flow(tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "written.txt"
    module = tmp_path / "file_sink_flow.py"
    module.write_text(
        "import engine.operators as op\n"
        "from engine.connectors.files import FileSink\n"
        "from engine.dataflow import Dataflow\n"
        "from engine.testing import TestingSource\n"
        "flow = Dataflow('to_file')\n"
        "nums = op.input('inp', flow, TestingSource(range(100), batch_size=10))\n"
        f"op.output('out', op.map('kv', nums, lambda x: ('k', x)), FileSink({str(target)!r}))\n"
    )
    return module, target


def test_tune_never_writes_real_sinks_unless_asked(
    file_sink_flow: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    module, target = file_sink_flow
    assert cli.main(["tune", str(module), "-w", "1,2", "-q"]) == 0
    out = capsys.readouterr().out
    assert not target.exists()
    assert "sinks replaced by counting sinks; pass --real-sinks to write to them" in out
    assert "recommendation: " in out

    document = _tune_json(capsys, str(module), "-w", "1", "--real-sinks")
    assert document["sinks"] == "real" and document["note"] is None
    assert target.read_text().splitlines() == [str(i) for i in range(100)]


# -- the tuner on real flows ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_bound_document() -> dict[str, Any]:
    """``shmflow tune --json`` on ~2 s of CPU-bound work in 8 partitions, 1 and 2 workers."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        flow = "engine.examples.cpu_bound:make_flow(100000)"
        status = cli.main(["tune", flow, "-w", "1,2", "--repeat", "2", "--json", "-q"])
    assert status == 0
    return json.loads(buffer.getvalue())


@pytest.mark.skipif(not MULTI_CORE, reason="needs at least 2 CPUs")
@pytest.mark.timeout(90)
def test_cpu_bound_flow_gets_more_than_one_worker(cpu_bound_document: dict[str, Any]) -> None:
    rec = cpu_bound_document["recommendation"]
    assert rec["workers"] > 1, cpu_bound_document["results"]
    two = cpu_bound_document["results"][1]
    assert two["speedup"] > 1.05 and two["bottleneck_step"] == "cpu_bound.work.flat_map_batch"


@pytest.mark.timeout(90)
def test_json_schema(cpu_bound_document: dict[str, Any]) -> None:
    doc = cpu_bound_document
    assert doc["schema_version"] == tuning.TUNE_SCHEMA_VERSION == 1
    expected: dict[str, Any] = {
        "kind": str,
        "flow": str,
        "import_str": str,
        "sinks": str,
        "note": str,
        "worker_counts": list,
        "repeat": int,
        "duration_s": type(None),
        "cpu_count": int,
        "results": list,
        "recommendation": dict,
        "late_note": type(None),
    }
    assert set(doc) == {"schema_version", *expected}
    for key, kind in expected.items():
        assert isinstance(doc[key], kind), key
    assert (doc["kind"], doc["flow"], doc["sinks"]) == ("tune", "cpu_bound", "counting")
    assert doc["worker_counts"] == [1, 2] and doc["repeat"] == 2
    row_types: dict[str, Any] = {
        "workers": int,
        "items_per_s": dict,
        "runs_items_per_s": list,
        "overall_items_per_s": float,
        "items_in": int,
        "wall_time_s": float,
        "running_since_s": (float, type(None)),
        "speedup": float,
        "efficiency": float,
        "cpu_percent_per_worker": float,
        "peak_rss_bytes": int,
        "ring_full_waits": int,
        "bottleneck_step": (str, type(None)),
        "late_share": dict,
    }
    for row in doc["results"]:
        assert set(row) == set(row_types)
        for key, kind in row_types.items():
            assert isinstance(row[key], kind), key
        assert set(row["items_per_s"]) == {"median", "min", "max"}
        rates = row["items_per_s"]
        assert rates["min"] <= rates["median"] <= rates["max"]
        assert len(row["runs_items_per_s"]) == 2 and row["items_in"] == 100_000
        assert row["peak_rss_bytes"] > 0
        assert row["late_share"] == {}  # no windows
    assert set(doc["recommendation"]) == {"workers", "best_workers", "share_of_best", "reason"}


def test_tune_says_when_workers_compile_shmflow_at_start(
    file_sink_flow: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Compiling costs each worker ~0.1 s of wall time, which tune's wall-time column
    # includes: the text output says so, with the command that avoids it.
    import importlib.util

    module, _ = file_sink_flow
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    missing = tmp_path / "engine.cpython.pyc"
    monkeypatch.setattr(importlib.util, "cache_from_source", lambda _path: str(missing))
    assert cli.main(["tune", str(module), "-w", "1", "-q"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("note: PYTHONDONTWRITEBYTECODE is set")
    assert "python -m compileall -q" in first and "recommendation: " in out
    missing.write_bytes(b"")
    assert cli.main(["tune", str(module), "-w", "1", "-q"]) == 0
    assert "PYTHONDONTWRITEBYTECODE" not in capsys.readouterr().out


@pytest.mark.timeout(90)
def test_single_partition_flow_gets_one_worker(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _tune_json(
        capsys,
        "engine.examples.cpu_bound:single_partition_flow(30000)",
        "-w",
        "1,2",
        "--repeat",
        "2",
    )
    rec = doc["recommendation"]
    assert rec["workers"] == 1, doc["results"]
    assert "before any exchange" in rec["reason"] or rec["best_workers"] == 1


def test_duration_stops_an_endless_flow(capsys: pytest.CaptureFixture[str]) -> None:
    flows = str(Path(__file__).resolve().parents[1] / "cluster_flows.py")
    doc = _tune_json(capsys, flows, "-w", "1,2", "--duration", "0.5")
    assert doc["duration_s"] == 0.5 and [r["workers"] for r in doc["results"]] == [1, 2]
    for row in doc["results"]:
        # stopped at 0.5 s after the call (the run's clock starts a moment later), however
        # far start-up got
        assert 0.4 <= row["wall_time_s"] < 5 and row["items_in"] >= 0


def test_run_flow_stop_returns_the_summary_so_far() -> None:
    stop = threading.Event()

    def stop_once_items_flow(status: Any) -> None:
        if status.items_in_per_s > 0:
            stop.set()

    summary = run_flow(endless_flow(), workers=2, on_status=stop_once_items_flow, stop=stop)
    assert stop.is_set()
    assert summary.workers == 2 and summary.items_in > 0 and summary.wall_time_s < 60
    already = threading.Event()
    already.set()
    assert run_flow(endless_flow(), workers=1, stop=already).items_in >= 0


# -- --plot --------------------------------------------------------------------------------


def _result() -> tuning.TuneResult:
    rows = tuning.fold_runs({1: [_run(1, 100), _run(1, 90)], 2: [_run(2, 180), _run(2, 170)]})
    return tuning.TuneResult(
        "f", rows, tuning.recommend({r.workers: r.median for r in rows}), False, 2, None
    )


def test_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "tune.png"
    tuning.write_plot(_result(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(tuning.UsageError, match=r"pip install 'shmflow\[plot\]'"):
        tuning.write_plot(_result(), tmp_path / "x.png")
    # the command fails at once, before running the flow
    status = cli.main(["tune", "engine.examples.cpu_bound", "--plot", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip().splitlines() == [f"shmflow tune: error: {tuning.PLOT_MISSING}"]
    assert not (tmp_path / "x.png").exists()


# -- command-line errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["no_such_module_xyz"], "cannot import module 'no_such_module_xyz'"),
        (["engine.examples.cpu_bound", "-w", "1,x"], "worker count 'x' is not a whole number"),
        (["engine.examples.cpu_bound", "-w", "0"], "worker count must be at least 1"),
        (["engine.examples.cpu_bound", "-w", ","], "names no worker count"),
        (["engine.examples.cpu_bound", "--repeat", "0"], "--repeat must be at least 1"),
        (["engine.examples.cpu_bound", "-r", "2"], "unrecognized arguments: -r"),  # run's flag
        (["engine.examples.cpu_bound", "-d", "0"], "--duration must be more than 0"),
        (["engine.examples.cpu_bound", "-d", "soon"], "interval 'soon' is not a number"),
        (["engine.examples.cpu_bound:TEXT"], "has no attribute 'TEXT'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["tune", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shmflow tune: error: ")
    assert expected in lines[0]
    assert captured.out == ""
