"""Real jobs for the benchmarks: their input files, the flows and the baselines.

Two jobs a shmflow user runs on one box, each over a file generated deterministically
(seeded) into a directory the caller owns:

- **JSON-log windows** (:func:`write_access_log`): a JSON-lines access log; per line
  ``json.loads`` + ``datetime.fromisoformat``, keyed by path, 1-minute tumbling
  event-time windows of (count, sum of bytes). Result: :data:`WindowCounts`.
- **Word count** (:func:`write_words`): a text file of words, a few per line; count per
  word. Result: :data:`WordCounts`.

Each job comes as a plain Python loop, a ``multiprocessing.Pool`` map-reduce over byte
ranges of the file, a shmflow flow, the same flow on Bytewax 0.21.1 (the flow is built
by one function from either engine's modules, see :class:`Api`), and a Pathway 0.33
program. Every variant returns the same result type, so the benchmark checks that all
of them computed the same thing.

Pathway, and Bytewax on several workers, run in a subprocess (``python -m bench.jobs
...``, see :func:`main`), so their runtimes do not share the measuring process; the
subprocess times the job itself (after its interpreter started and imported the
engine) and prints the seconds as JSON on its last stdout line.

About the log's timestamps: lines are written in the order they were "received", each
up to :data:`MAX_DELAY_MS` after its event time, so the file is not sorted by
timestamp; but two lines of one path are at least :data:`MIN_GAP_MS` apart, more than
any delay, so each path's own lines are in order. The event clock is per key, so with
``wait_for_system_duration=0`` no line is late and every variant sees every line (the
benchmark checks that too: a late line would make the results differ from the loop).
That needs the file read in order: the log flows read it as one partition (see
:func:`_whole_file`), while the word count lets shmflow split a big file into byte
ranges read by all workers.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import argparse
    import subprocess

    import numpy as np

# The harness's modules (multiprocessing, subprocess, socket, tempfile, argparse, ...)
# are imported where they are used: a shmflow worker imports this module to unpickle
# the flows' functions, and a user's flow file does not pay for a benchmark harness
# (~20 ms per worker start here).

__all__ = [
    "MINUTE",
    "SIZES",
    "START",
    "Api",
    "JobSize",
    "WindowCounts",
    "WordCounts",
    "byte_ranges",
    "bytewax_api",
    "bytewax_log_flow",
    "bytewax_words_flow",
    "log_flow",
    "log_loop",
    "log_pool",
    "log_results",
    "main",
    "parallel_ceiling",
    "parse_line",
    "read_range",
    "run_bytewax_cluster",
    "run_pathway",
    "shmflow_api",
    "words_counter",
    "words_flow",
    "words_loop",
    "words_pool",
    "words_results",
    "write_access_log",
    "write_words",
]

START = datetime(2026, 1, 1, tzinfo=UTC)
"""First timestamp of the log, and what the 1-minute windows are aligned to."""
MINUTE = timedelta(minutes=1)
MS_PER_LINE = 36
"""Average log time per line: 300,000 lines span 3 hours."""
MIN_GAP_MS = 1_500
"""Two lines of one path are at least this far apart in event time."""
MAX_DELAY_MS = 1_000
"""A line is written up to this long after its event time (so the file is unsorted)."""

WindowCounts = dict[tuple[str, datetime], tuple[int, int]]
"""(path, window start) -> (lines, sum of bytes)."""
WordCounts = dict[str, int]
"""word -> occurrences."""


@dataclass(frozen=True)
class JobSize:
    """How many lines each job's input file has."""

    log_lines: int
    word_lines: int


SIZES = {
    "small": JobSize(log_lines=30_000, word_lines=200_000),
    "full": JobSize(log_lines=300_000, word_lines=2_000_000),
}


# -- input files ---------------------------------------------------------------------------


def write_access_log(path: Path, lines: int, paths: int = 200, seed: int = 11) -> None:
    """Write a JSON-lines access log of ``lines`` lines over ``paths`` URL paths.

    Each line looks like ``{"ts": "2026-01-01T00:00:00.123+00:00", "path": "/p17",
    "status": 200, "bytes": 1234}``; timestamps start at :data:`START` and cover about
    ``lines * MS_PER_LINE`` ms. Popular paths get up to 5x the lines of rare ones.
    """
    import numpy as np  # here, not at the top: a worker unpickling the flow needs no numpy

    rng = np.random.default_rng(seed)
    weights = 1.0 / (1.0 + np.arange(paths) / 50.0)
    per_path = np.floor(lines * weights / weights.sum()).astype(np.int64)
    per_path[: lines - int(per_path.sum())] += 1
    span_ms = lines * MS_PER_LINE
    stamps, path_ids = [], []
    for path_id, count in enumerate(per_path.tolist()):
        mean_gap = span_ms / count
        gaps = MIN_GAP_MS + rng.exponential(mean_gap - MIN_GAP_MS, count)
        first = rng.integers(0, int(mean_gap))
        stamps.append(first + np.cumsum(gaps).astype(np.int64))
        path_ids.append(np.full(count, path_id))
    ts_ms = np.concatenate(stamps)
    ids = np.concatenate(path_ids)
    written = np.argsort(ts_ms + rng.integers(0, MAX_DELAY_MS, len(ts_ms)), kind="stable")
    statuses = rng.choice([200, 304, 404, 500], size=len(ts_ms), p=[0.9, 0.05, 0.04, 0.01])
    sizes = rng.integers(200, 50_000, size=len(ts_ms))
    with open(path, "w") as out:
        for i in written.tolist():
            ts = (START + timedelta(milliseconds=int(ts_ms[i]))).isoformat(timespec="milliseconds")
            out.write(
                f'{{"ts": "{ts}", "path": "/p{ids[i]}", "status": {statuses[i]}, '
                f'"bytes": {sizes[i]}}}\n'
            )


def _vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    import numpy as np

    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: dict[str, None] = {}
    while len(words) < size:
        length = int(rng.integers(2, 10))
        words["".join(rng.choice(letters, length).tolist())] = None
    return list(words)


def write_words(path: Path, lines: int, vocabulary: int = 10_000, seed: int = 13) -> None:
    """Write ``lines`` lines of 1-4 space-separated words from a Zipf-like vocabulary."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = _vocabulary(vocabulary, rng)
    odds = 1.0 / (np.arange(vocabulary) + 10.0)
    per_line = rng.integers(1, 5, size=lines).tolist()
    picks = rng.choice(vocabulary, size=sum(per_line), p=odds / odds.sum()).tolist()
    words = [vocab[i] for i in picks]
    with open(path, "w") as out:
        at = 0
        for count in per_line:
            out.write(" ".join(words[at : at + count]) + "\n")
            at += count


# -- reading byte ranges (the Pool baselines) ------------------------------------------------


def byte_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """Split the file into ``parts`` contiguous byte ranges ``[start, end)``."""
    size = os.path.getsize(path)
    return [(size * i // parts, size * (i + 1) // parts) for i in range(parts)]


def read_range(path: Path | str, start: int, end: int) -> list[str]:
    """The lines whose first byte is in ``[start, end)`` (so ranges split no line).

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> p = Path(tmp.name) / "f.txt"
    >>> _ = p.write_text("ab\\ncd\\nef\\n")
    >>> [read_range(p, s, e) for s, e in [(0, 3), (3, 4), (4, 9)]]
    [['ab'], ['cd'], ['ef']]
    >>> tmp.cleanup()
    """
    with open(path, "rb") as file:
        if start > 0:
            file.seek(start - 1)
            file.readline()  # to the start of the first line beginning at or after start
        begin = file.tell()
        if begin >= end:
            return []
        data = file.read(end - begin)
        if not data.endswith(b"\n"):
            data += file.readline()  # the last line began before end: it is ours
    return data.decode().splitlines()


def _pool_tasks(path: Path, processes: int) -> list[tuple[str, int, int]]:
    # A few tasks per process, so a slow one does not leave the other core idle.
    return [(str(path), s, e) for s, e in byte_ranges(path, processes * 4)]


# -- JSON-log job: plain loop and Pool -------------------------------------------------------


def parse_line(line: str) -> tuple[str, datetime, int]:
    """``(path, timestamp, bytes)`` of one log line."""
    record = json.loads(line)
    return record["path"], datetime.fromisoformat(record["ts"]), record["bytes"]


def _aggregate_log(lines: Iterable[str]) -> dict[tuple[str, datetime], list[int]]:
    windows: dict[tuple[str, datetime], list[int]] = {}
    for line in lines:
        path, ts, size = parse_line(line)
        key = (path, ts.replace(second=0, microsecond=0))
        acc = windows.get(key)
        if acc is None:
            windows[key] = [1, size]
        else:
            acc[0] += 1
            acc[1] += size
    return windows


def log_loop(path: Path) -> WindowCounts:
    """The loop a user writes: parse each line, add it to its (path, minute) window."""
    with open(path) as file:
        windows = _aggregate_log(file)
    return {key: (count, total) for key, (count, total) in windows.items()}


def _log_task(task: tuple[str, int, int]) -> dict[tuple[str, datetime], list[int]]:
    return _aggregate_log(read_range(*task))


def log_pool(path: Path, processes: int = 2) -> WindowCounts:
    """Map-reduce on a ``multiprocessing.Pool``: byte ranges pre-aggregated, then merged."""
    import multiprocessing

    merged: dict[tuple[str, datetime], list[int]] = {}
    with multiprocessing.Pool(processes) as pool:
        for part in pool.imap_unordered(_log_task, _pool_tasks(path, processes)):
            for key, (count, total) in part.items():
                acc = merged.get(key)
                if acc is None:
                    merged[key] = [count, total]
                else:
                    acc[0] += count
                    acc[1] += total
    return {key: (count, total) for key, (count, total) in merged.items()}


# -- what two cores give ------------------------------------------------------------------


def _parse_lines(lines: list[str]) -> float:
    """Seconds to parse ``lines`` (the log job's per-line work), in this process."""
    started = time.perf_counter()
    for line in lines:
        parse_line(line)
    return time.perf_counter() - started


def parallel_ceiling(path: Path, processes: int = 2, lines: int = 50_000) -> float:
    """How much faster ``processes`` CPU-bound processes are than one, at best, here.

    Each process parses the same ``lines`` lines of the log; the ceiling is
    ``processes`` x (seconds alone / seconds while all run at once). 2.0 on two idle
    cores; less where the cores share caches, memory bandwidth or a host.
    """
    import multiprocessing
    import statistics

    with open(path, encoding="utf-8") as file:
        sample = list(itertools.islice(file, lines))
    ratios = []
    with multiprocessing.Pool(processes) as pool:
        for _ in range(5):  # pairs of measurements close in time: the host's load drifts
            alone = pool.apply(_parse_lines, (sample,))
            together = max(pool.map(_parse_lines, [sample] * processes, chunksize=1))
            ratios.append(min(processes * alone / together, float(processes)))
    return statistics.median(ratios)


# -- word count: plain loop, Counter and Pool --------------------------------------------------


def words_loop(path: Path) -> WordCounts:
    """The loop a user writes: a dict of counts."""
    counts: dict[str, int] = {}
    with open(path) as file:
        for line in file:
            for word in line.split():
                counts[word] = counts.get(word, 0) + 1
    return counts


def words_counter(path: Path) -> WordCounts:
    """``collections.Counter`` updated with each line's words."""
    counts: Counter[str] = Counter()
    with open(path) as file:
        for line in file:
            counts.update(line.split())
    return dict(counts)


def _words_task(task: tuple[str, int, int]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in read_range(*task):
        counts.update(line.split())
    return counts


def words_pool(path: Path, processes: int = 2) -> WordCounts:
    """Map-reduce on a ``multiprocessing.Pool``: a Counter per byte range, then merged."""
    import multiprocessing

    merged: Counter[str] = Counter()
    with multiprocessing.Pool(processes) as pool:
        for part in pool.imap_unordered(_words_task, _pool_tasks(path, processes)):
            merged.update(part)
    return dict(merged)


# -- the flows, for shmflow or Bytewax ---------------------------------------------------------


class Api(NamedTuple):
    """The modules a flow is written against: shmflow's or Bytewax's, same names."""

    Dataflow: Any
    op: ModuleType
    win: ModuleType
    FileSource: Any
    TestingSink: Any


def shmflow_api() -> Api:
    import engine.operators as op
    import engine.operators.windowing as win
    from engine.connectors.files import FileSource
    from engine.dataflow import Dataflow
    from engine.testing import TestingSink

    return Api(Dataflow, op, win, FileSource, TestingSink)


def bytewax_api() -> Api:
    """Bytewax 0.21's modules (ImportError when it is not installed)."""
    import bytewax.operators as op
    import bytewax.operators.windowing as win
    from bytewax.connectors.files import FileSource
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink

    return Api(Dataflow, op, win, FileSource, TestingSink)


def _keyed_event(line: str) -> tuple[str, tuple[datetime, int]]:
    path, ts, size = parse_line(line)
    return path, (ts, size)


def _event_time(event: tuple[datetime, int]) -> datetime:
    return event[0]


def _new_window() -> tuple[int, int]:
    return (0, 0)


def _add_event(acc: tuple[int, int], event: tuple[datetime, int]) -> tuple[int, int]:
    return acc[0] + 1, acc[1] + event[1]


def _merge_windows(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def _whole_file(api: Api, path: Path) -> Any:
    """A ``FileSource`` reading the file as one partition, from its first line to its last.

    shmflow's ``FileSource`` cuts a file larger than ``split_bytes`` (8 MiB) into byte
    ranges read in parallel, so lines of different ranges interleave: a log's lines of one
    path would then reach the window step hours out of order, and with
    ``wait_for_system_duration=0`` most would be late. Bytewax reads a file in order.
    """
    import inspect

    if "split_bytes" in inspect.signature(api.FileSource).parameters:
        return api.FileSource(path, split_bytes=None)
    return api.FileSource(path)


#: How far out of order a split file's lines reach the window step: the log's time span.
WHOLE_LOG_WAIT = timedelta(days=1)


def _log_windows(api: Api, path: Path | str, split: bool = False) -> tuple[Any, Any, Any]:
    """Flow, windows stream (path, (window id, (count, sum))) and late stream.

    ``split``: read the file in byte ranges on every worker (shmflow's default for big
    files); lines then arrive out of order, so the clock waits as long as the log spans
    and the windows close at the end of the input.
    """
    op, win = api.op, api.win
    flow = api.Dataflow("json_log_windows")
    source = api.FileSource(Path(path)) if split else _whole_file(api, Path(path))
    lines = op.input("read", flow, source)
    events = op.map("parse", lines, _keyed_event)
    wait = WHOLE_LOG_WAIT if split else timedelta(0)
    clock = win.EventClock(_event_time, wait_for_system_duration=wait)
    windower = win.TumblingWindower(length=MINUTE, align_to=START)
    # A count and a sum do not care in which order a window's lines come: with a split
    # file, ``ordered=False`` applies lines as they arrive instead of queueing them
    # until the watermark passes them (which, waiting as long as the log, is the end).
    windows = win.fold_window(
        "count_bytes",
        events,
        clock,
        windower,
        _new_window,
        _add_event,
        _merge_windows,
        ordered=not split,
    )
    return flow, windows.down, windows.late


def log_flow(api: Api, path: Path | str, out: list[Any], split: bool = False) -> Any:
    """The JSON-log job as a flow: windows and late lines appended to ``out``.

    Items in ``out``: ``(path, (window_id, (count, bytes)))``, and ``("late", event)``
    for a late line (there should be none; see the module doc). Pass the result to
    :func:`log_results`.

    There is deliberately no ``redistribute`` before the parse (unlike
    :func:`words_flow`): lines of one path would then reach the window step through two
    workers, out of order, and with ``wait_for_system_duration=0`` some would be late.
    """
    flow, down, late = _log_windows(api, path, split)
    sink = api.TestingSink(out)
    marked = api.op.map("mark_late", late, _mark_late)
    api.op.output("out", api.op.merge("all", down, marked), sink)
    return flow


def _mark_late(item: Any) -> tuple[str, Any]:
    return ("late", item)


def log_results(items: Iterable[Any]) -> WindowCounts:
    """:data:`WindowCounts` from a log flow's output items (late lines raise)."""
    results: WindowCounts = {}
    for path, value in items:
        if path == "late":
            raise AssertionError(f"a line was late: {value!r}")
        window_id, (count, total) = value
        results[path, START + MINUTE * window_id] = (count, total)
    return results


def _word_key(word: str) -> str:
    return word


def words_flow(api: Api, path: Path | str, out: list[Any], redistribute: bool = False) -> Any:
    """The word count as a flow: ``(word, count)`` items appended to ``out``.

    The ``FileSource`` has its defaults: shmflow's splits a file larger than 8 MiB into
    byte ranges that the workers read in parallel (counting does not care about order).
    ``redistribute`` spreads the lines over the workers before splitting them into words,
    for a file read as one partition.
    """
    flow, counts = _word_counts(api, path, redistribute)
    api.op.output("out", counts, api.TestingSink(out))
    return flow


def _word_counts(api: Api, path: Path | str, redistribute: bool) -> tuple[Any, Any]:
    op = api.op
    flow = api.Dataflow("word_count")
    lines = op.input("read", flow, api.FileSource(Path(path)))
    if redistribute:
        lines = op.redistribute("spread", lines)
    words = op.flat_map("split", lines, str.split)
    return flow, op.count_final("count", words, _word_key)


def words_results(items: Iterable[tuple[str, int]]) -> WordCounts:
    return dict(items)


# -- Bytewax on several workers (subprocesses) -------------------------------------------------


def _as_json_line(item: tuple[str, Any]) -> tuple[str, str]:
    return item[0], json.dumps(item, default=str)  # a late line holds a datetime


def _bytewax_file_flow(job: str, source: str, output: str) -> Any:
    from bytewax.connectors.files import FileSink

    api = bytewax_api()
    if job == "log":
        flow, down, late = _log_windows(api, source)
        items = api.op.merge("all", down, api.op.map("mark_late", late, _mark_late))
    else:
        flow, items = _word_counts(api, source, redistribute=False)
    api.op.output("out", api.op.map("json", items, _as_json_line), FileSink(Path(output)))
    return flow


def bytewax_log_flow(source: str, output: str) -> Any:
    """The log job on Bytewax, writing JSON lines to ``output`` (for ``bytewax.run``)."""
    return _bytewax_file_flow("log", source, output)


def bytewax_words_flow(source: str, output: str) -> Any:
    """The word count on Bytewax, writing JSON lines to ``output``."""
    return _bytewax_file_flow("words", source, output)


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _seconds_printed(stdout: str) -> float:
    last = [line for line in stdout.splitlines() if line.startswith("{")][-1]
    return float(json.loads(last)["seconds"])


def _run_module(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    import subprocess

    root = str(Path(__file__).resolve().parents[1])
    return subprocess.Popen(
        [sys.executable, "-m", "bench.jobs", *args],
        cwd=root,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_all(procs: list[subprocess.Popen[str]], what: str) -> list[float]:
    seconds = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
        seconds.append(_seconds_printed(stdout))
    return seconds


def _read_json_lines(path: Path) -> list[Any]:
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


def run_bytewax_cluster(
    job: str, source: Path, processes: int, workers_per_process: int
) -> tuple[float, Any]:
    """Run a job on Bytewax in subprocesses; (seconds of the run, results).

    ``processes`` > 1 starts that many processes talking over localhost TCP, as
    ``python -m bytewax.testing -p N`` does. The seconds are the slowest process's
    ``cluster_main`` call (interpreter start and imports excluded).
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="shmflow-jobs-") as tmp:
        output = Path(tmp) / "out.jsonl"
        output.touch()
        addresses = ";".join(f"127.0.0.1:{port}" for port in _free_ports(processes))
        procs = [
            _run_module(
                [
                    "bytewax",
                    job,
                    str(source),
                    str(output),
                    f"--workers={workers_per_process}",
                    f"--proc-id={proc_id}",
                    f"--addresses={addresses if processes > 1 else ''}",
                ]
            )
            for proc_id in range(processes)
        ]
        seconds = max(_wait_all(procs, f"Bytewax {job} on {processes} processes"))
        items = [tuple(item) for item in _read_json_lines(output)]
    return seconds, _file_results(job, items)


def _file_results(job: str, items: list[Any]) -> Any:
    if job == "log":
        return log_results((path, (w, tuple(acc))) for path, (w, acc) in items)
    return words_results(items)


def _bytewax_process(args: argparse.Namespace) -> None:
    from bytewax.testing import cluster_main

    flow = _bytewax_file_flow(args.job, args.source, args.output)
    addresses = args.addresses.split(";") if args.addresses else []
    started = time.perf_counter()
    cluster_main(flow, addresses, args.proc_id, worker_count_per_proc=args.workers)
    print(json.dumps({"seconds": time.perf_counter() - started}))


# -- Pathway (a subprocess) ------------------------------------------------------------------


def pathway_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pathway") is not None


def run_pathway(job: str, source: Path, threads: int) -> tuple[float, Any]:
    """Run a job on Pathway with ``threads`` threads; (seconds of ``pw.run()``, results)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="shmflow-jobs-") as tmp:
        output = Path(tmp) / "out.jsonl"
        proc = _run_module(
            ["pathway", job, str(source), str(output)], env={"PATHWAY_THREADS": str(threads)}
        )
        (seconds,) = _wait_all([proc], f"Pathway {job} on {threads} threads")
        rows = [row for row in _read_json_lines(output) if row.pop("diff", 1) == 1]
    if job == "log":
        results: WindowCounts = {
            (row["path"], _pathway_time(row["start"])): (row["count"], row["total"]) for row in rows
        }
        return seconds, results
    return seconds, {row["word"]: row["count"] for row in rows}


def _pathway_time(text: str) -> datetime:
    # Pathway writes "2026-01-01T00:01:00.000000000+0000" (UTC, nanoseconds).
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def _pathway_process(args: argparse.Namespace) -> None:
    import pathway as pw

    if args.job == "log":

        class AccessLine(pw.Schema):
            ts: str
            path: str
            status: int
            bytes: int

        lines = pw.io.jsonlines.read(args.source, schema=AccessLine, mode="static")
        stamped = lines.select(
            pw.this.path,
            pw.this.bytes,
            at=pw.this.ts.dt.strptime("%Y-%m-%dT%H:%M:%S.%f%z"),
        )
        result = stamped.windowby(
            pw.this.at,
            window=pw.temporal.tumbling(duration=MINUTE, origin=START),
            instance=pw.this.path,
        ).reduce(
            path=pw.this._pw_instance,
            start=pw.this._pw_window_start,
            count=pw.reducers.count(),
            total=pw.reducers.sum(pw.this.bytes),
        )
    else:
        split = pw.udf(deterministic=True)(_split_words)
        text = pw.io.plaintext.read(args.source, mode="static")
        words = text.select(word=split(pw.this.data)).flatten(pw.this.word)
        result = words.groupby(pw.this.word).reduce(pw.this.word, count=pw.reducers.count())
    pw.io.jsonlines.write(result, args.output)
    started = time.perf_counter()
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def _split_words(line: str) -> list[str]:
    return line.split()


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry points: ``python -m bench.jobs {bytewax,pathway} JOB IN OUT``."""
    import argparse

    parser = argparse.ArgumentParser(description="run one job on Bytewax or Pathway")
    parser.add_argument("engine", choices=["bytewax", "pathway"])
    parser.add_argument("job", choices=["log", "words"])
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--workers", type=int, default=1, help="Bytewax workers per process")
    parser.add_argument("--proc-id", type=int, default=0)
    parser.add_argument("--addresses", default="", help="Bytewax: host:port;host:port")
    args = parser.parse_args(argv)
    if args.engine == "bytewax":
        _bytewax_process(args)
    else:
        _pathway_process(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
