"""Splitting one file into byte ranges read by several workers (engine.connectors.files).

Property tests check that the ranges of a file together read every line exactly once, in
order within a range, whatever the line lengths and line ends; flow tests check that 1, 2
and 3 worker processes read the same lines, and that an aborted execution resumes every
range from its own byte offset, also with a different worker count.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import cloudpickle
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.operators as op
from engine.connectors import files
from engine.connectors.files import RANGES, SPLIT_BYTES, CSVSource, DirSource, FileSource
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.inputs import AbortExecution, FixedPartitionedSource, StatefulSourcePartition
from engine.outputs import DynamicSink, StatelessSinkPartition
from engine.testing import TestingSink, cluster_main, run_main
from recovery import RecoveryConfig, init_db_dir

ZERO = timedelta(0)


@pytest.fixture(autouse=True)
def _ship_this_module_by_value() -> None:
    # Worker processes get this module's functions by value instead of importing it.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _drain(part: StatefulSourcePartition[Any, int]) -> list[Any]:
    items: list[Any] = []
    while True:
        try:
            items.extend(part.next_batch())
        except StopIteration:
            return items


def _read_parts(source: FixedPartitionedSource[Any, int]) -> dict[str, list[Any]]:
    """Every partition's items, read in the order `list_parts` gives."""
    out: dict[str, list[Any]] = {}
    for name in source.list_parts():
        part = source.build_part("flow.in", name, None)
        try:
            out[name] = _drain(part)
        finally:
            part.close()
    return out


def _concat(per_part: dict[str, list[Any]]) -> list[Any]:
    """All partitions' items, one partition after the other (names are in file order)."""
    return [item for items in per_part.values() for item in items]


def _expected_lines(content: bytes) -> list[str]:
    """The lines of `content` as the sources define them (a reference, line by line)."""
    raw = content.split(b"\n")
    if raw[-1] == b"":
        raw.pop()
    return [(line[:-1] if line.endswith(b"\r") else line).decode() for line in raw]


line_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
    max_size=30,
)


@st.composite
def file_contents(draw: st.DrawFn) -> bytes:
    """Random lines (empty ones too), LF or CRLF ends, with or without a last newline."""
    lines = draw(st.lists(line_text, max_size=25))
    ends = draw(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=len(lines)))
    content = "".join(line + end for line, end in zip(lines, ends, strict=False))
    if content and not draw(st.booleans()):
        content = content.removesuffix("\n")  # no trailing newline (a "\r" may stay)
    return content.encode()


# --- the split: every line exactly once -------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    content=file_contents(),
    ranges=st.integers(min_value=1, max_value=12),
    batch_size=st.integers(min_value=1, max_value=4),
    chunk_bytes=st.integers(min_value=1, max_value=9),
)
def test_ranges_read_every_line_exactly_once_in_order(
    content: bytes, ranges: int, batch_size: int, chunk_bytes: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.txt"
        path.write_bytes(content)
        source = FileSource(path, batch_size=batch_size, split_bytes=0, ranges=ranges)
        with mock.patch.object(files, "_READ_CHUNK_BYTES", chunk_bytes):
            per_range = _read_parts(source)
        # Names are listed in file order, so concatenating the ranges gives the file.
        assert [line for lines in per_range.values() for line in lines] == _expected_lines(content)
        assert len(per_range) <= ranges
        if content:
            assert len(per_range) > ranges // 2 or len(content) < ranges


@settings(max_examples=100, deadline=None)
@given(
    content=file_contents(),
    ranges=st.integers(min_value=1, max_value=8),
    batch_size=st.integers(min_value=1, max_value=3),
    cuts=st.lists(st.integers(min_value=0, max_value=6), min_size=8, max_size=8),
)
def test_each_range_resumes_from_its_snapshot(
    content: bytes, ranges: int, batch_size: int, cuts: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.txt"
        path.write_bytes(content)
        source = FileSource(path, batch_size=batch_size, split_bytes=0, ranges=ranges)
        whole = _read_parts(source)
        for name, cut in zip(source.list_parts(), cuts, strict=False):
            part = source.build_part("flow.in", name, None)
            head: list[str] = []
            for _ in range(cut):
                try:
                    head.extend(part.next_batch())
                except StopIteration:
                    break
            state = part.snapshot()
            part.close()
            resumed = source.build_part("flow.in", name, state)
            assert head + _drain(resumed) == whole[name]
            resumed.close()


def test_a_line_longer_than_several_ranges_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    long_line = "x" * 100
    path.write_text(f"a\n{long_line}\nb\nc\n{long_line}")
    source = FileSource(path, split_bytes=0, ranges=32)
    per_range = _read_parts(source)
    assert len(per_range) == 26  # 207 bytes in ranges of 8
    assert _concat(per_range) == ["a", long_line, "b", "c", long_line]
    # The ranges inside the long lines read nothing; the first one reads the long line.
    assert per_range[f"{path}@0-8"] == ["a", long_line]
    assert per_range[f"{path}@8-16"] == []
    assert per_range[f"{path}@96-104"] == ["b"]  # "b" starts at 103
    assert per_range[f"{path}@104-112"] == ["c", long_line]  # at 105 and 107


def test_crlf_and_a_range_starting_between_cr_and_lf(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"abc\r\ndef\r\n\r\nghi\r")
    source = FileSource(path, batch_size=1, split_bytes=0, ranges=16)  # 1-byte ranges
    per_range = _read_parts(source)
    assert _concat(per_range) == ["abc", "def", "", "ghi"]
    assert per_range[f"{path}@0-1"] == ["abc"]
    assert per_range[f"{path}@4-5"] == []  # the "\n" of "abc\r\n" starts no line
    assert per_range[f"{path}@5-6"] == ["def"]


# --- names and when to split ------------------------------------------------------------


def test_threshold_and_names(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("0123456\n" * 4)  # 32 bytes
    assert FileSource(path, split_bytes=32).list_parts() == [str(path)]
    assert FileSource(path, split_bytes=None, ranges=4).list_parts() == [str(path)]
    split = FileSource(path, split_bytes=31, ranges=4)
    names = [f"{path}@{start}-{start + 8}" for start in range(0, 32, 8)]
    assert split.list_parts() == names
    assert split.list_parts() == names  # deterministic
    assert _read_parts(split) == {name: ["0123456"] for name in names}
    # Whatever the settings, build_part reads what a name says.
    part = FileSource(path, split_bytes=None).build_part("flow.in", names[2], None)
    assert _drain(part) == ["0123456"]
    part.close()


def test_default_split_of_a_large_file(tmp_path: Path) -> None:
    assert (SPLIT_BYTES, RANGES) == (8 * 1024 * 1024, 64)
    path = tmp_path / "big.txt"
    with path.open("wb") as file:
        file.truncate(9 * 1024 * 1024)  # sparse: only its size matters for the names
    names = FileSource(path).list_parts()
    assert len(names) == 36  # ranges of 256 KiB: 9 MiB / 64 rounded up to a power of two
    assert names[0] == f"{path}@0-262144"
    assert names[-1] == f"{path}@9175040-9437184"
    small = tmp_path / "small.txt"
    with small.open("wb") as file:
        file.truncate(SPLIT_BYTES)
    assert FileSource(small).list_parts() == [str(small)]


def test_empty_file_is_one_partition(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.touch()
    source = FileSource(path, split_bytes=0)
    assert source.list_parts() == [str(path)]
    assert _read_parts(source) == {str(path): []}


def test_split_arguments_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split_bytes"):
        FileSource(tmp_path / "x", split_bytes=-1)
    with pytest.raises(ValueError, match="ranges"):
        FileSource(tmp_path / "x", ranges=0)
    with pytest.raises(ValueError, match="ranges"):
        DirSource(tmp_path, ranges=0)
    with pytest.raises(ValueError, match="split_bytes"):
        CSVSource(tmp_path / "x", split_bytes=-5)


def test_bad_range_names_and_states_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("a\nb\n")
    source = FileSource(path, split_bytes=0)
    with pytest.raises(ValueError, match="different path"):
        source.build_part("flow.in", f"{tmp_path / 'other.txt'}@0-2", None)
    with pytest.raises(ValueError, match="empty byte range"):
        source.build_part("flow.in", f"{path}@2-2", None)
    with pytest.raises(ValueError, match="before its range"):
        source.build_part("flow.in", f"{path}@2-4", 0)


def test_a_growing_file_keeps_its_names_and_reads_up_to_the_nominal_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.txt"
    path.write_text("aaa\nbbb\ncc")  # 10 bytes: ranges of 4 (ranges=4 -> 3 ranges)
    source = FileSource(path, split_bytes=0, ranges=4)
    names = source.list_parts()
    assert names == [f"{path}@0-4", f"{path}@4-8", f"{path}@8-12"]
    last = source.build_part("flow.in", names[-1], None)
    with path.open("a") as file:
        file.write("c\ndd\n")  # completes "ccc"; "dd" starts at 12, past the nominal end
    assert _drain(last) == ["ccc"]
    state = last.snapshot()
    last.close()
    assert state == 12
    # Grown to 15 bytes: still ranges of 4, so the old names (and states) still hold.
    assert source.list_parts() == [*names, f"{path}@12-16"]
    assert _read_parts(source)[f"{path}@12-16"] == ["dd"]


# --- DirSource -------------------------------------------------------------------------


def test_dir_source_splits_each_large_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "small.txt").write_text("s\n")
    (tmp_path / "sub" / "big.txt").write_text("".join(f"{n:03}\n" for n in range(8)))
    source = DirSource(tmp_path, glob_pat="**/*.txt", split_bytes=4, ranges=4)
    assert source.list_parts() == [
        "small.txt",
        "sub/big.txt@0-8",
        "sub/big.txt@8-16",
        "sub/big.txt@16-24",
        "sub/big.txt@24-32",
    ]
    per_part = _read_parts(source)
    assert per_part["sub/big.txt@8-16"] == ["002", "003"]
    assert _concat(per_part) == ["s"] + [f"{n:03}" for n in range(8)]


def test_dir_source_file_whose_name_looks_like_a_range(tmp_path: Path) -> None:
    (tmp_path / "odd@0-1").write_text("odd\n")
    source = DirSource(tmp_path)
    assert source.list_parts() == ["odd@0-1"]
    assert _read_parts(source) == {"odd@0-1": ["odd"]}


# --- CSV -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.text(alphabet='ab ,"é;', max_size=6), min_size=1, max_size=4),
        max_size=15,
    ),
    ranges=st.integers(min_value=1, max_value=10),
    crlf=st.booleans(),
)
def test_split_csv_reads_what_dict_reader_reads(
    rows: list[list[str]], ranges: int, crlf: bool
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(["x", "y", "z"])
    writer.writerows(rows)
    content = buffer.getvalue()
    expected = list(csv.DictReader(io.StringIO(content, newline="")))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.csv"
        path.write_bytes(content.encode())
        source = CSVSource(path, batch_size=2, split_bytes=0, ranges=ranges)
        per_range = _read_parts(source)
        assert _concat(per_range) == expected


def test_split_csv_every_range_has_the_header(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,name\n" + "".join(f"{n},n{n}\n" for n in range(10, 40)))
    source = CSVSource(path, batch_size=4, split_bytes=0, ranges=8)
    per_range = _read_parts(source)
    assert len(per_range) == 7  # 218 bytes in ranges of 32
    assert all(per_range.values())
    assert all(list(row) == ["id", "name"] for rows in per_range.values() for row in rows)
    first = per_range[source.list_parts()[0]]
    assert first[0] == {"id": "10", "name": "n10"}  # the header is not a row
    assert [row["id"] for rows in per_range.values() for row in rows] == [
        str(n) for n in range(10, 40)
    ]


def test_split_csv_fieldnames_restval_restkey(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("1,2\n3\n4,5,6\n")
    source = CSVSource(
        path, split_bytes=0, ranges=3, fieldnames=["a", "b"], restval="-", restkey="more"
    )
    assert _concat(_read_parts(source)) == [
        {"a": "1", "b": "2"},
        {"a": "3", "b": "-"},
        {"a": "4", "b": "5", "more": ["6"]},
    ]


def test_split_csv_with_a_quoted_line_break_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('id,note\n1,"two\nlines"\n2,plain\n')
    with pytest.raises(ValueError, match="split_bytes=None"):
        _read_parts(CSVSource(path, split_bytes=0, ranges=2))
    whole = CSVSource(path, split_bytes=None)
    assert _concat(_read_parts(whole)) == [
        {"id": "1", "note": "two\nlines"},
        {"id": "2", "note": "plain"},
    ]


# --- flows on 1, 2 and 3 workers --------------------------------------------------------


def _numbered(path: Path, count: int) -> list[str]:
    lines = [f"line {n:05} " + "z" * (n % 17) for n in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return lines


def _line_flow(source: FixedPartitionedSource[Any, int], out: list[Any]) -> Dataflow:
    flow = Dataflow("split")
    lines = op.input("inp", flow, source)
    op.output("out", lines, TestingSink(out))
    return flow


def test_every_worker_count_reads_the_same_lines(entry_point, tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    lines = _numbered(path, 3000)
    out: list[str] = []
    source = FileSource(path, batch_size=50, split_bytes=0, ranges=16)
    assert len(source.list_parts()) > 8  # between ranges / 2 and ranges
    entry_point(_line_flow(source, out))
    assert Counter(out) == Counter(lines)


def test_split_csv_on_worker_processes(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("n,sq\n" + "".join(f"{n},{n * n}\n" for n in range(2000)))
    for workers in (1, 2, 3):
        out: list[Any] = []
        flow = _line_flow(CSVSource(path, batch_size=64, split_bytes=0, ranges=8), out)
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
        assert sorted(int(row["n"]) for row in out) == list(range(2000))
        assert all(int(row["sq"]) == int(row["n"]) ** 2 for row in out)


def test_one_worker_in_this_process_and_dir_source(tmp_path: Path) -> None:
    expected: list[str] = []
    for name in "ab":
        expected += _numbered(tmp_path / f"{name}.txt", 500)
    out: list[str] = []
    run_main(_line_flow(DirSource(tmp_path, split_bytes=1000, ranges=8, batch_size=9), out))
    assert Counter(out) == Counter(expected)


# --- resume after an abort, with another worker count ------------------------------------


class _AppendPartition(StatelessSinkPartition[str]):
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def write_batch(self, items: list[str]) -> None:
        self._file.write("".join(f"{item}\n" for item in items))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _AppendSink(DynamicSink[str]):
    """Each worker process appends its lines to its own file in `out_dir`.

    Written from the workers themselves (flushed per batch), so what an aborted
    execution output is all on disk when it ends.
    """

    def __init__(self, out_dir: Path) -> None:
        self._out_dir = out_dir

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AppendPartition:
        return _AppendPartition(self._out_dir / f"worker{worker_index}-{os.getpid()}.txt")


def _written(out_dir: Path, skip: set[Path] | None = None) -> list[str]:
    """Every line the `_AppendSink` files in `out_dir` hold, except those in `skip`."""
    skip = skip or set()
    return [
        line
        for path in sorted(out_dir.iterdir())
        if path not in skip
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


class _AbortOnceBothWrote(FixedPartitionedSource[str, None]):
    """One partition that aborts the execution once ``workers`` workers of the first
    execution have each written ``batches`` batches of 10 lines (so each has closed
    epochs to resume from) and the workers in ``exited`` have exited, while the file
    ``armed`` exists; then it ends. A condition, not a timing assumption."""

    def __init__(
        self,
        out_dir: Path,
        armed: Path,
        workers: int,
        batches: int = 2,
        exited: tuple[int, ...] = (),
    ) -> None:
        self.out_dir, self.armed, self.workers = out_dir, armed, workers
        self.batches, self.exited = batches, exited

    def list_parts(self) -> list[str]:
        return ["abort"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _AbortPartition:
        return _AbortPartition(self)

    def ready(self) -> bool:
        files = list(self.out_dir.iterdir())
        written = [f.read_text().count("\n") for f in files]
        if sum(count >= self.batches * 10 for count in written) < self.workers:
            return False
        # `_AppendSink` files are named worker{index}-{pid}.txt
        pids = {int(f.stem.split("-")[0][6:]): int(f.stem.split("-")[1]) for f in files}
        return all(index in pids and not _running(pids[index]) for index in self.exited)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class _AbortPartition(StatefulSourcePartition[str, None]):
    def __init__(self, source: _AbortOnceBothWrote) -> None:
        self.source = source

    def next_batch(self) -> list[str]:
        source = self.source
        if not source.armed.exists():
            raise StopIteration
        if source.ready():
            source.armed.unlink()
            raise AbortExecution("both workers wrote")
        return []

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(milliseconds=1)

    def snapshot(self) -> None:
        return None


def _aborting_flow(
    source: FixedPartitionedSource[Any, int], out_dir: Path, workers: int, **when: Any
) -> Dataflow:
    """`source` merged with a source that aborts the first execution mid-file (``when``:
    more conditions, see `_AbortOnceBothWrote`)."""
    armed = out_dir.parent / "armed"
    armed.touch()
    flow = Dataflow("split_resume")
    lines = op.input("inp", flow, source)
    aborter = op.input("abort", flow, _AbortOnceBothWrote(out_dir, armed, workers, **when))
    merged = op.merge("merge", lines, aborter)
    op.output("out", merged, _AppendSink(out_dir))
    return flow


@pytest.mark.parametrize(("first_workers", "second_workers"), [(2, 3), (3, 1)])
def test_abort_mid_file_then_resume_per_range(
    tmp_path: Path, first_workers: int, second_workers: int
) -> None:
    path = tmp_path / "in.txt"
    lines = _numbered(path, 4000)
    source = FileSource(path, batch_size=10, split_bytes=0, ranges=16)
    per_range = _read_parts(source)
    init_db_dir(tmp_path / "store")
    config = RecoveryConfig(tmp_path / "store")

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # One flow object for both executions: the aborter is disarmed once it fired.
    flow = _aborting_flow(source, out_dir, first_workers)
    cluster_main(
        flow,
        [],
        0,
        epoch_interval=ZERO,
        recovery_config=config,
        worker_count_per_proc=first_workers,
    )
    first = _written(out_dir)
    assert 0 < len(first) < len(lines), "the first execution should stop mid-file"
    first_files = set(out_dir.iterdir())
    cluster_main(
        flow,
        [],
        0,
        epoch_interval=ZERO,
        recovery_config=config,
        worker_count_per_proc=second_workers,
    )
    second = _written(out_dir, skip=first_files)
    assert set(first) | set(second) == set(lines)  # every line at least once
    assert len(second) < len(lines)  # not read again from the start
    # Each range continued from its byte offset: what the second execution read of a
    # range is a suffix of that range's lines, in order.
    for range_lines in per_range.values():
        got = [line for line in second if line in set(range_lines)]
        assert got == range_lines[len(range_lines) - len(got) :]


def test_a_worker_without_input_does_not_hold_back_the_resume(tmp_path: Path) -> None:
    """3 workers, 2 ranges: worker 2 has nothing to read and finishes at once; the
    resume continues from what the other two committed, not from worker 2's last epoch
    (which made the second execution re-read 3,980 of the 4,000 lines)."""
    path = tmp_path / "in.txt"
    lines = _numbered(path, 4000)
    source = FileSource(path, batch_size=10, split_bytes=0, ranges=2)
    init_db_dir(tmp_path / "store")
    config = RecoveryConfig(tmp_path / "store")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    sizes = sorted(len(part) for part in _read_parts(source).values())
    assert sizes[0] >= 600, sizes  # (the ranges are cut at multiples of 64 KiB)
    # Abort once workers 0 and 1 wrote 500 lines each and worker 2 exited.
    flow = _aborting_flow(source, out_dir, 2, batches=50, exited=(2,))
    for workers in (3, 1):
        cluster_main(
            flow,
            [],
            0,
            epoch_interval=ZERO,
            recovery_config=config,
            worker_count_per_proc=workers,
        )
        if workers == 3:
            first = _written(out_dir)
            first_files = set(out_dir.iterdir())
    second = _written(out_dir, skip=first_files)
    assert set(first) | set(second) == set(lines)  # every line at least once
    # Each reading worker committed all but at most its last few batches of >= 500 lines.
    assert len(second) <= len(lines) - 2 * 450


def test_resume_with_a_failing_step_keeps_range_offsets(tmp_path: Path) -> None:
    """A crash in user code: nothing of the failed epoch is committed, the rest resumes."""
    path = tmp_path / "in.txt"
    lines = _numbered(path, 1500)
    marker = tmp_path / "fail_once"
    marker.touch()

    def fail_once(line: str) -> str:
        # Fail once both workers have written two batches: each wrote its second batch
        # after committing its first epoch, so both have closed epochs to resume from,
        # whichever line comes then (no timing assumption).
        written = [f.read_text().count("\n") for f in out_dir.iterdir()]
        if marker.exists() and sum(count >= 2 * 25 for count in written) >= 2:
            marker.unlink()
            raise RuntimeError("injected failure")
        return line

    init_db_dir(tmp_path / "store")
    config = RecoveryConfig(tmp_path / "store")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    flow = Dataflow("split_fail")
    read = op.input("inp", flow, FileSource(path, batch_size=25, split_bytes=0, ranges=8))
    op.output("out", op.map("fail", read, fail_once), _AppendSink(out_dir))
    with pytest.raises(EngineRuntimeError, match=r"split_fail\.fail"):
        cluster_main(
            flow, [], 0, epoch_interval=ZERO, recovery_config=config, worker_count_per_proc=2
        )
    first_files = set(out_dir.iterdir())
    cluster_main(flow, [], 0, epoch_interval=ZERO, recovery_config=config, worker_count_per_proc=3)
    assert set(_written(out_dir)) == set(lines)
    assert len(_written(out_dir, skip=first_files)) < len(lines)
