"""The same flow on Bytewax's cluster runtime (:mod:`engine.bytewax`, ``--runtime bytewax``).

One flow builder, :func:`operators_flow`, covers every core operator and the main derived
ones, windowing included; it builds the flow with shmflow's API or with Bytewax's, so a
translated flow is checked against shmflow (same output) and against the same flow written
for Bytewax (same top-level step ids, same output). The flow runs on Bytewax in this process
(``bytewax.testing.run_main``, one worker) and on two processes over loopback through
``python -m engine.run ... --runtime bytewax -i I -a ADDRS``; a windowed file job runs on
shmflow's 2 workers and on Bytewax's 2 processes and writes the same rows.

Skipped where Bytewax (the ``cluster`` extra) is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("bytewax")

import bytewax.dataflow
import bytewax.operators
import bytewax.operators.windowing
import bytewax.recovery
import bytewax.testing

import engine.bytewax as engine_bytewax
import engine.operators as op
import engine.operators.windowing as win
from engine.bytewax import (
    BytewaxNotInstalledError,
    BytewaxTranslationError,
    to_bytewax,
)
from engine.connectors.files import FileSource
from engine.dataflow import Dataflow
from engine.inputs import Source
from engine.outputs import DynamicSink, Sink, StatelessSinkPartition
from engine.testing import TestingSink, TestingSource, run_main
from engine.tools.run import main as run_command
from tests.engine._bytewax_procs import free_ports

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
#: One Bytewax run on two processes takes a few seconds; never wait forever.
PROCESS_TIMEOUT_S = 60
T0 = datetime(2024, 1, 1, tzinfo=UTC)

WORDS = ["apple", "bob", "apple", "cat", "bob", "apple", "dog"]
LINES = ["a b", "c a", "b b"]
NUMS = list(range(10))
#: (key, seconds after T0, value); with a 60 s wait, (a, -600) and (b, -300) are late.
EVENTS = [
    ("a", 0, 1),
    ("b", 5, 2),
    ("a", 30, 3),
    ("a", 70, 4),
    ("b", 65, 5),
    ("c", 200, 6),
    ("a", 75, 7),
    ("a", -600, 8),
    ("b", 95, 9),
    ("b", -300, 10),
]
OTHER_EVENTS = [("a", 10, "x"), ("b", 70, "y"), ("c", 190, "z"), ("a", 40, "w")]


# -- one flow, built with either API ---------------------------------------------------------


@dataclass(frozen=True)
class Api:
    """The modules a flow is written against: shmflow's or Bytewax's."""

    op: Any
    win: Any
    Dataflow: Any
    TestingSource: Any


SHMFLOW = Api(op, win, Dataflow, TestingSource)
BYTEWAX = Api(
    bytewax.operators,
    bytewax.operators.windowing,
    bytewax.dataflow.Dataflow,
    bytewax.testing.TestingSource,
)
SinkFactory = Callable[[str], Any]


def _ts(event: tuple[str, int, Any]) -> datetime:
    return T0 + timedelta(seconds=event[1])


def _running_count(count: int | None, _value: Any) -> tuple[int, int]:
    count = (count or 0) + 1
    return count, count


def _quiet_inspector(step_id: str, item: Any, epoch: int, worker: int) -> None:
    pass


def _sum_logic(base: type) -> type:
    """A StatefulBatchLogic (of either API) summing a key's values, emitted at EOF."""

    class SumAtEof(base):  # type: ignore[valid-type,misc]
        def __init__(self, total: int | None) -> None:
            self.total = total or 0

        def on_batch(self, values: list[int]) -> tuple[list[int], bool]:
            self.total += sum(values)
            return [], False

        def on_eof(self) -> tuple[list[int], bool]:
            return [self.total], True

        def snapshot(self) -> int:
            return self.total

    return SumAtEof


def operators_flow(api: Api, sink: SinkFactory) -> Any:
    """Every core operator and the main derived ones; each pipeline ends in ``sink(name)``."""
    o, w = api.op, api.win
    flow = api.Dataflow("bw_ops")

    def out(name: str, stream: Any) -> None:
        o.output(f"out_{name}", stream, sink(name))

    nums = o.input("nums", flow, api.TestingSource(NUMS, batch_size=3))
    words = o.input("words", flow, api.TestingSource(WORDS))
    lines = o.input("lines", flow, api.TestingSource(LINES))
    events = o.input("events", flow, api.TestingSource(EVENTS, batch_size=2))
    others = o.input("others", flow, api.TestingSource(OTHER_EVENTS))

    # stateless
    out("map", o.map("double", nums, lambda x: 2 * x))
    out("filter", o.filter("evens", nums, lambda x: x % 2 == 0))
    out("flat_map", o.flat_map("split", lines, str.split))
    out("filter_map", o.filter_map("odd_sq", nums, lambda x: x * x if x % 2 else None))
    out("batch", o.flat_map_batch("batch_sum", nums, lambda batch: [sum(batch)]))
    keyed_words = o.key_on("key_words", words, lambda word: word)
    out("key_on", keyed_words)
    out("map_value", o.map_value("word_len", keyed_words, len))
    out("filter_value", o.filter_value("long", keyed_words, lambda word: len(word) > 3))
    out("flat_map_value", o.flat_map_value("chars", keyed_words, lambda word: word[:2]))
    out("key_rm", o.key_rm("unkey", keyed_words))
    out("flatten", o.flatten("flat", o.map("pairs", nums, lambda x: [x, -x])))
    out("inspect", o.inspect("show", o.map("first", words, lambda word: word[0])))
    out(
        "enrich",
        o.enrich_cached(
            "enrich", words, lambda word: len(word), lambda cache, word: (word, cache.get(word))
        ),
    )

    # branch, merge, redistribute, inspect_debug
    split = o.branch("even_odd", nums, lambda x: x % 2 == 0)
    merged = o.merge("merged", o.map("negate", split.falses, lambda x: -x), split.trues)
    spread = o.redistribute("spread", merged)
    out("merge", o.inspect_debug("debug", spread, _quiet_inspector))

    # stateful
    pairs = o.map("pair", words, lambda word: (word, 1))
    out("stateful_map", o.stateful_map("running", pairs, _running_count))
    out("count_final", o.count_final("count", words, lambda word: word))
    keyed_nums = o.key_on("parity", nums, lambda x: str(x % 2))
    out("fold_final", o.fold_final("fold", keyed_nums, list, lambda acc, x: [*acc, x]))
    out("reduce_final", o.reduce_final("reduce", keyed_nums, lambda a, b: a + b))
    out("max_final", o.max_final("max", keyed_nums))
    out("min_final", o.min_final("min", keyed_nums))
    out("collect", o.collect("collect", keyed_nums, timeout=timedelta(minutes=10), max_size=2))
    out("stateful_batch", o.stateful_batch("sum_eof", keyed_nums, _sum_logic(o.StatefulBatchLogic)))
    sides_a = o.key_on("key_a", o.filter("small", nums, lambda x: x < 4), lambda x: str(x % 2))
    sides_b = o.key_on("key_b", words, lambda word: str(len(word) % 2))
    out("join_final", o.join("join", sides_a, sides_b, insert_mode="product", emit_mode="final"))
    # One line per initial: "complete" emits once per initial whatever the arrival order.
    initials = o.key_on("key_initial", words, lambda word: word[0])
    line_initials = o.key_on("key_line", lines, lambda line: line[0])
    out("join_complete", o.join("join_once", initials, line_initials, emit_mode="complete"))

    # windowing
    keyed_events = o.key_on("key_events", events, lambda event: event[0])
    keyed_others = o.key_on("key_others", others, lambda event: event[0])
    clock = w.EventClock(_ts, wait_for_system_duration=timedelta(seconds=60))
    tumbling = w.TumblingWindower(timedelta(seconds=60), T0)
    folded = w.fold_window(
        "fold_win",
        keyed_events,
        clock,
        tumbling,
        lambda: 0,
        lambda acc, e: acc + e[2],
        lambda a, b: a + b,
    )
    out("fold_window", folded.down)
    out("fold_window_late", folded.late)
    out("fold_window_meta", folded.meta)
    sliding = w.SlidingWindower(timedelta(seconds=60), timedelta(seconds=30), T0)
    out("count_window", w.count_window("count_win", events, clock, sliding, lambda e: e[0]).down)
    session = w.SessionWindower(timedelta(seconds=20))
    out("collect_window", w.collect_window("collect_win", keyed_events, clock, session).down)
    system = w.SystemClock()
    one_window = w.TumblingWindower(timedelta(days=1), T0)
    counted = w.count_window("count_sys", words, system, one_window, lambda word: word)
    out("count_window_system", o.map("drop_window_id", counted.down, lambda kv: (kv[0], kv[1][1])))
    joined = w.join_window("join_win", clock, tumbling, keyed_events, keyed_others)
    out("join_window", joined.down)
    return flow


def _testing_sinks(results: dict[str, list[Any]], sink_type: type) -> SinkFactory:
    def sink(name: str) -> Any:
        return sink_type(results.setdefault(name, []))

    return sink


def _run_shmflow_reference() -> dict[str, list[str]]:
    results: dict[str, list[Any]] = {}
    run_main(operators_flow(SHMFLOW, _testing_sinks(results, TestingSink)))
    return _sorted_reprs(results)


def _sorted_reprs(results: dict[str, list[Any]]) -> dict[str, list[str]]:
    return {name: sorted(map(repr, items)) for name, items in results.items()}


# -- sinks writing files, for flows run by other processes -------------------------------------


class _LinesPartition(StatelessSinkPartition[Any]):
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def write_batch(self, items: list[Any]) -> None:
        self._file.writelines(f"{item!r}\n" for item in items)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class ReprLinesSink(DynamicSink[Any]):
    """Each worker appends ``repr(item)`` lines to ``<out_dir>/<name>-w<worker>.txt``."""

    def __init__(self, out_dir: str, name: str) -> None:
        self._out_dir = Path(out_dir)
        self._name = name

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LinesPartition:
        return _LinesPartition(self._out_dir / f"{self._name}-w{worker_index}.txt")


def _read_reprs(out_dir: Path) -> dict[str, list[str]]:
    results: dict[str, list[str]] = {}
    for path in sorted(out_dir.glob("*-w*.txt")):
        name = path.name.rsplit("-w", 1)[0]
        results.setdefault(name, []).extend(path.read_text(encoding="utf-8").splitlines())
    return {name: sorted(lines) for name, lines in results.items()}


def cluster_flow(out_dir: str) -> Dataflow:
    """:func:`operators_flow` writing to files (loaded by ``python -m engine.run``)."""
    return operators_flow(SHMFLOW, lambda name: ReprLinesSink(out_dir, name))


def windowed_file_flow(path: str, out_dir: str) -> Dataflow:
    """A windowed job over a file: per-key sums of ``key,seconds,value`` lines per minute."""
    flow = Dataflow("bw_file")
    # Byte ranges, so that both workers read: Bytewax gets the same partitions.
    source = FileSource(path, batch_size=50, split_bytes=0, ranges=4)
    lines = op.input("read", flow, source)
    events = op.map("parse", lines, _parse_line)
    keyed = op.key_on("key", events, lambda event: event[0])
    # The wait covers the file's whole time span: partitions read in parallel are never late.
    clock = win.EventClock(_ts, wait_for_system_duration=timedelta(hours=2))
    sums = win.fold_window(
        "sum",
        keyed,
        clock,
        win.TumblingWindower(timedelta(minutes=1), T0),
        lambda: 0,
        lambda acc, event: acc + event[2],
        lambda a, b: a + b,
    )
    rows = op.map("row", sums.down, lambda kv: f"{kv[0]},{kv[1][0]},{kv[1][1]}")
    op.output("write", rows, ReprLinesSink(out_dir, "rows"))
    return flow


def _parse_line(line: str) -> tuple[str, int, int]:
    key, seconds, value = line.split(",")
    return key, int(seconds), int(value)


# -- running other processes -------------------------------------------------------------------


def _run_processes(commands: list[list[str]]) -> list[tuple[int, str]]:
    """Start every command at once; return each one's exit status and stderr."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for cmd in commands
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=PROCESS_TIMEOUT_S))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [(proc.returncode, err) for proc, (_, err) in zip(procs, outputs, strict=True)]


def _on_bytewax_processes(import_str: str, processes: int = 2) -> list[tuple[int, str]]:
    """Run ``import_str`` on ``processes`` Bytewax processes over loopback via the CLI."""
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(processes))
    base = [sys.executable, "-m", "engine.run", import_str, "--runtime", "bytewax", "-a", addresses]
    return _run_processes([[*base, "-i", str(i)] for i in range(processes)])


def _succeeded(results: list[tuple[int, str]]) -> None:
    failed = [(status, err) for status, err in results if status]
    assert not failed, failed


def aborting_flow() -> Dataflow:
    """A flow whose source aborts the execution halfway (loaded by ``python -m engine.run``)."""
    flow = Dataflow("bw_abort")
    items = op.input("inp", flow, TestingSource([1, 2, TestingSource.ABORT(), 3]))
    op.output("out", items, TestingSink([]))
    return flow


# -- tests -------------------------------------------------------------------------------------


def test_translated_flow_gives_shmflows_output_on_one_bytewax_worker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = _run_shmflow_reference()
    shmflow_printed = sorted(capsys.readouterr().out.splitlines())
    results: dict[str, list[Any]] = {}
    bytewax.testing.run_main(
        to_bytewax(operators_flow(SHMFLOW, _testing_sinks(results, TestingSink)))
    )
    assert _sorted_reprs(results) == expected
    assert sorted(capsys.readouterr().out.splitlines()) == shmflow_printed
    assert shmflow_printed[0].startswith("bw_ops.show: ")
    assert expected["fold_window_late"], "the data must have late items"


def test_top_level_step_ids_and_output_match_a_flow_written_for_bytewax() -> None:
    translated = to_bytewax(operators_flow(SHMFLOW, _testing_sinks({}, TestingSink)))
    native_results: dict[str, list[Any]] = {}
    native = operators_flow(BYTEWAX, _testing_sinks(native_results, bytewax.testing.TestingSink))
    assert [step.step_id for step in translated.substeps] == [
        step.step_id for step in native.substeps
    ]
    assert [type(step).__name__ for step in translated.substeps] == [
        type(step).__name__ for step in native.substeps
    ]
    bytewax.testing.run_main(native)
    assert _sorted_reprs(native_results) == _run_shmflow_reference()


def test_every_stream_id_is_shmflows() -> None:
    flow = operators_flow(SHMFLOW, _testing_sinks({}, TestingSink))
    translated = to_bytewax(flow)

    def core_ids(steps: list[Any]) -> list[str]:
        ids: list[str] = []
        for step in steps:
            ids.extend(core_ids(step.substeps) if step.substeps else [step.step_id])
        return ids

    assert core_ids(translated.substeps) == [step.step_id for step in flow.core_steps]


def test_two_bytewax_processes_over_loopback_give_shmflows_output(tmp_path: Path) -> None:
    _succeeded(_on_bytewax_processes(f"{HERE}:cluster_flow({str(tmp_path)!r})"))
    assert {path.name.rsplit("-w", 1)[1] for path in tmp_path.iterdir()} == {"0.txt", "1.txt"}
    expected = _run_shmflow_reference()
    assert all(expected.values()), "every pipeline must have output"
    assert _read_reprs(tmp_path) == expected


def test_windowed_file_job_writes_the_same_rows_on_both_runtimes(tmp_path: Path) -> None:
    data = tmp_path / "events.csv"
    data.write_text("".join(f"k{i % 7},{(i * 37) % 3600},{i % 11}\n" for i in range(3000)))
    shm_out, bw_out = tmp_path / "shmflow", tmp_path / "bytewax"
    shm_out.mkdir()
    bw_out.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "engine.run",
        f"{HERE}:windowed_file_flow({str(data)!r}, {str(shm_out)!r})",
    ]
    _succeeded(_run_processes([[*cmd, "-w", "2", "-q"]]))
    _succeeded(_on_bytewax_processes(f"{HERE}:windowed_file_flow({str(data)!r}, {str(bw_out)!r})"))
    shm_rows, bw_rows = _read_reprs(shm_out)["rows"], _read_reprs(bw_out)["rows"]
    assert len(shm_rows) == 7 * 60
    assert bw_rows == shm_rows
    parts = FileSource(data, split_bytes=0, ranges=4).list_parts()
    assert len(parts) > 1, "the file must be read in several byte ranges"


def test_recovery_uses_bytewaxs_store_and_resumes(tmp_path: Path) -> None:
    bytewax.recovery.init_db_dir(tmp_path, 1)
    config = bytewax.recovery.RecoveryConfig(tmp_path)
    out: list[Any] = []
    items = [("a", 1), ("b", 1), TestingSource.EOF(), ("a", 1), ("b", 1), ("a", 1)]
    flow = Dataflow("bw_resume")
    pairs = op.input("inp", flow, TestingSource(items))
    op.output("out", op.stateful_map("count", pairs, _running_count), TestingSink(out))
    bytewax.testing.run_main(to_bytewax(flow), recovery_config=config)
    assert out == [("a", 1), ("b", 1)]
    bytewax.testing.run_main(to_bytewax(flow), recovery_config=config)
    assert out == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)]


def test_abort_execution_of_a_testing_source_aborts_bytewaxs_execution() -> None:
    out: list[Any] = []
    flow = Dataflow("bw_abort")
    nums = op.input("inp", flow, TestingSource([1, 2, TestingSource.ABORT(), 3]))
    op.output("out", nums, TestingSink(out))
    bytewax.testing.run_main(to_bytewax(flow))
    assert out == [1, 2]


class _BareSource(Source[Any]):
    """Neither partitioned nor dynamic: nothing to adapt."""


class _BareSink(Sink[Any]):
    """Neither partitioned nor dynamic: nothing to adapt."""


def test_a_source_that_cannot_be_adapted_fails_at_translation_naming_the_step() -> None:
    flow = Dataflow("bw_bad_source")
    op.output("out", op.input("odd_input", flow, _BareSource()), TestingSink([]))
    with pytest.raises(
        BytewaxTranslationError, match=r"step 'bw_bad_source\.odd_input'.*_BareSource"
    ):
        to_bytewax(flow)


def test_a_sink_that_cannot_be_adapted_fails_at_translation_naming_the_step() -> None:
    flow = Dataflow("bw_bad_sink")
    op.output("odd_output", op.input("inp", flow, TestingSource([1])), _BareSink())
    with pytest.raises(BytewaxTranslationError, match=r"step 'bw_bad_sink\.odd_output'.*_BareSink"):
        to_bytewax(flow)


def test_without_bytewax_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    engine_bytewax._bytewax.cache_clear()
    monkeypatch.setitem(sys.modules, "bytewax.operators", None)
    try:
        with pytest.raises(BytewaxNotInstalledError, match=r"pip install 'shmflow\[cluster\]'"):
            to_bytewax(Dataflow("bw_missing"))
    finally:
        engine_bytewax._bytewax.cache_clear()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "0", "-a", "127.0.0.1:1"], "need --runtime bytewax"),
        (["--runtime", "bytewax", "-i", "0"], "go together"),
        (["--runtime", "bytewax", "-i", "1", "-a", "127.0.0.1:1"], "not below the number"),
        (["--runtime", "bytewax", "-i", "0", "-a", "nohost"], "not host:port"),
        (["--runtime", "bytewax", "--restarts", "1"], "cannot be used with --runtime bytewax"),
        (["--runtime", "bytewax", "--bytewax-imports"], "python -m bytewax.run"),
        (["--runtime", "bytewax", "-r", "{store}"], "shmflow recovery store"),
        (["--runtime", "bytewax", "-r", "{empty}"], "python -m bytewax.recovery"),
    ],
)
def test_cli_usage_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, empty = tmp_path / "store", tmp_path / "empty"
    store.mkdir()
    empty.mkdir()
    (store / "data.mdb").write_bytes(b"")
    args = [arg.format(store=store, empty=empty) for arg in args]
    assert run_command(["engine.examples.wordcount", *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_runs_a_flow_on_bytewax_in_this_process() -> None:
    assert run_command(["engine.examples.wordcount", "--runtime", "bytewax", "-w", "2"]) == 0


def test_an_abort_on_two_bytewax_processes_stops_both_as_a_failure() -> None:
    """Bytewax 0.21's own abort would leave both processes waiting forever."""
    results = _on_bytewax_processes(f"{HERE}:aborting_flow()")
    assert [status for status, _ in results] == [1, 1], results
    stderr = "".join(err for _, err in results)
    assert "step 'bw_abort.inp': the source aborted the execution" in stderr, stderr[-3000:]
    assert stderr.count("shmflow: error: the flow failed on Bytewax's runtime") == 2


def test_processes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="processes must be >= 1"):
        to_bytewax(Dataflow("empty"), processes=0)
