"""``shmflow bench``: built-in flows, baselines in the same run, ratios, --json."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from engine import run_flow
from engine.runtime.summary import RunSummary, StepSummary
from engine.testing import run_main
from engine.tools import bench as _bench_cli
from engine.tools import cli
from engine.tools.flows import (
    BENCHMARKS,
    GeneratedSource,
    ListSource,
    events,
    generated_event,
    queue_baseline,
    window_baseline,
    window_flow,
)
from engine.tools.tune import Run, fold_runs, late_items, late_note, late_steps, recommend


@pytest.mark.timeout(90)
def test_bench_small_json_has_baselines_and_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--size", "small", "-w", "1,2", "--flows", "passthrough,numpy", "--json"]
    assert cli.main([*argv, "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == _bench_cli.BENCH_SCHEMA_VERSION == 1
    assert (doc["kind"], doc["size"], doc["worker_counts"]) == ("bench", "small", [1, 2])
    assert [f["name"] for f in doc["flows"]] == ["passthrough", "numpy"]
    for flow in doc["flows"]:
        assert flow["items"] == BENCHMARKS[flow["name"]].sizes["small"]
        baselines = flow["baselines"]
        assert set(baselines) == {"python_loop", "mp_queue", "bytewax"}
        for key in ("python_loop", "mp_queue"):
            assert baselines[key]["status"] == "ok" and baselines[key]["items_per_s"] > 0
        bytewax = baselines["bytewax"]
        assert (bytewax["status"] == "ok") == (bytewax["items_per_s"] is not None)
        assert [r["workers"] for r in flow["results"]] == [1, 2]
        for row in flow["results"]:
            assert row["items_in"] == flow["items"]
            ratios = row["ratios"]
            assert set(ratios) == {"python_loop", "mp_queue", "bytewax"}
            for key in ("python_loop", "mp_queue"):
                expected = row["items_per_s"]["median"] / baselines[key]["items_per_s"]
                assert ratios[key] == pytest.approx(expected)
        assert flow["recommendation"]["workers"] in (1, 2)


def test_bytewax_missing_shows_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "engine.tools.bytewax_flows", None)
    assert _bench_cli._bytewax_runner("passthrough", [1, 2]) == (None, "not installed")
    assert cli.main(["bench", "--size", "small", "-w", "1", "--flows", "passthrough", "-q"]) == 0
    out = capsys.readouterr().out
    assert "Bytewax 0.21.1, 1 worker n/a (not installed)" in out
    assert "vs loop" in out and "vs mp.Queue" in out and "recommendation: 1 worker" in out


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_each_flow_does_the_loops_work(name: str) -> None:
    bench = BENCHMARKS[name]
    items = bench.make(200)
    state: dict[Any, Any] = {}
    bench.loop(items, state)
    assert state
    run_main(bench.build(items))  # ends in a counting sink; must simply run


@pytest.mark.timeout(120)
@pytest.mark.parametrize("generated", [False, True], ids=["list", "generated"])
def test_window_flow_results_do_not_depend_on_the_worker_count(generated: bool) -> None:
    # Each key's events are in one partition, in time order, so no event is late on any
    # number of workers (were a key dealt into several partitions, workers drifting
    # apart in event time would make some late, and 2 workers would count fewer).
    n = 40_000
    data: Any = GeneratedSource(generated_event, n) if generated else events(n)
    items = data.materialize() if generated else data
    assert {key for key, _, _ in items[1::4]} & {key for key, _, _ in items[::4]} == set()
    windows = window_baseline(items)
    flow = window_flow(data)
    for workers in (1, 2):
        summary = run_flow(flow, workers=workers)
        assert late_items(summary, late_steps(flow)) == {"window_sum.sum": 0}
        assert summary.items_out == windows  # one sum per (key, window)


def test_queue_baseline_moves_every_item() -> None:
    bench = BENCHMARKS["wordcount"]
    assert queue_baseline(bench.make(5_000), bench.loop, 1_000) > 0


def test_bench_dir_re_exports_the_flows() -> None:
    from bench import flows

    assert flows.ListSource is ListSource
    assert set(flows.FLOWS) >= {"passthrough", "wordcount_count_final", "window_sum"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--flows", "nope"], "unknown flow(s) nope; choose from passthrough"),
        (["--size", "huge"], "invalid choice: 'huge'"),
        (["-w", "0"], "worker count must be at least 1"),
        (["-r", "2"], "unrecognized arguments: -r"),  # -r is run's recovery directory
    ],
)
def test_usage_errors(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shmflow bench: error: ")
    assert expected in lines[0]


def test_bytecode_note_warns_only_when_workers_would_compile_shmflow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    bench = _bench_cli
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert bench.bytecode_note() is None
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    missing = tmp_path / "worker.cpython.pyc"
    monkeypatch.setattr(importlib.util, "cache_from_source", lambda _path: str(missing))
    note = bench.bytecode_note()
    assert note is not None and "PYTHONDONTWRITEBYTECODE" in note
    assert "python -m compileall -q" in note
    missing.write_bytes(b"")
    assert bench.bytecode_note() is None


def test_bench_table_says_when_late_items_change_with_the_worker_count() -> None:
    def run(workers: int, late: int) -> Run:
        summary = RunSummary(workers=workers, wall_time_s=1.0, items_in=1_000)
        summary.steps = [StepSummary("window_sum.sum.window.unwrap_late", 1_000, late, 1, 0.0)]
        return Run(summary, 1_000.0, 1_000.0, None, ("window_sum.sum.window.unwrap_late",))

    baselines = {
        key: _bench_cli.Baseline(label, runs_items_per_s=[500.0])
        for key, (_, label) in _bench_cli.BASELINES.items()
    }
    rows = fold_runs({1: [run(1, 0)], 2: [run(2, 300)]})
    result = _bench_cli.FlowResult(
        BENCHMARKS["window"], 1_000, baselines, rows, recommend({1: 1.0, 2: 1.0})
    )
    text = _bench_cli.format_flow(result)
    assert "  note: the share of items that arrive late differs between worker counts" in text
    assert "window step 'sum': 0.0% at 1 worker, 30.0% at 2 workers" in text
    assert result.as_json()["late_note"] == late_note(rows)
    same = fold_runs({1: [run(1, 0)], 2: [run(2, 0)]})
    quiet = _bench_cli.FlowResult(BENCHMARKS["window"], 1_000, baselines, same, recommend({1: 1.0}))
    assert "note:" not in _bench_cli.format_flow(quiet)
    assert quiet.as_json()["late_note"] is None
