"""File connectors, driven partition by partition like the runtime drives them."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.connectors.files import CSVSource, DirSink, DirSource, FileSink, FileSource
from engine.inputs import StatefulSourcePartition


def _drain(part: StatefulSourcePartition[Any, int]) -> list[Any]:
    items: list[Any] = []
    while True:
        try:
            items.extend(part.next_batch())
        except StopIteration:
            return items


def _read_in_batches(part: StatefulSourcePartition[Any, int]) -> list[tuple[list[Any], int]]:
    """Every batch with the snapshot taken right after it."""
    out: list[tuple[list[Any], int]] = []
    while True:
        try:
            got = list(part.next_batch())
        except StopIteration:
            return out
        out.append((got, part.snapshot()))


# --- FileSource -------------------------------------------------------------------------


def test_file_source_reads_lines_without_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"alpha\nbeta\n\ngamma")
    source = FileSource(path, batch_size=2)
    assert source.list_parts() == [str(path)]
    part = source.build_part("flow.in", str(path), None)
    assert part.next_awake() is None
    assert _read_in_batches(part) == [(["alpha", "beta"], 11), (["", "gamma"], 17)]
    with pytest.raises(StopIteration):  # stays exhausted
        part.next_batch()
    assert part.snapshot() == 17
    part.close()
    part.close()  # idempotent


def test_file_source_accepts_str_paths_and_crlf_and_utf8(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes("día\r\nnoche\r\nfin\r".encode())
    source = FileSource(str(path), get_fs_id=lambda _dir: "SHARED")
    part = source.build_part("flow.in", str(path), None)
    assert _drain(part) == ["día", "noche", "fin"]
    assert part.snapshot() == len("día\r\nnoche\r\nfin\r".encode())
    part.close()


def test_file_source_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.touch()
    part = FileSource(path).build_part("flow.in", str(path), None)
    assert _drain(part) == []
    assert part.snapshot() == 0
    part.close()


def test_file_source_resume_from_every_snapshot_gives_exactly_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    lines = [f"line {n} ✓" for n in range(23)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = FileSource(path, batch_size=4)
    part = source.build_part("flow.in", str(path), None)
    batches = _read_in_batches(part)
    part.close()
    seen: list[str] = []
    for got, state in batches:
        seen.extend(got)
        resumed = source.build_part("flow.in", str(path), state)
        assert _drain(resumed) == lines[len(seen) :]
        resumed.close()
    assert seen == lines


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",))),
        max_size=12,
    ),
    trailing_newline=st.booleans(),
    batch_size=st.integers(min_value=1, max_value=5),
    cut=st.integers(min_value=0, max_value=12),
)
def test_file_source_resume_property(
    lines: list[str], trailing_newline: bool, batch_size: int, cut: int
) -> None:
    content = "".join(line + "\n" for line in lines)
    if not trailing_newline and content:
        content = content[:-1]
        if lines[-1] == "":
            lines = lines[:-1]  # its newline was the one removed: the line is gone
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.txt"
        path.write_text(content, encoding="utf-8")
        source = FileSource(path, batch_size=batch_size)
        part = source.build_part("flow.in", str(path), None)
        head: list[str] = []
        for _ in range(cut):
            try:
                head.extend(part.next_batch())
            except StopIteration:
                break
        state = part.snapshot()
        part.close()
        resumed = source.build_part("flow.in", str(path), state)
        assert head + _drain(resumed) == lines
        resumed.close()


def test_file_source_resume_at_eof_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("a\nb\n")
    part = FileSource(path).build_part("flow.in", str(path), 4)
    assert _drain(part) == []
    part.close()


def test_file_source_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    source = FileSource(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        source.list_parts()


def test_file_source_refuses_another_partition(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("a\n")
    with pytest.raises(ValueError, match="different path"):
        FileSource(path).build_part("flow.in", str(tmp_path / "other.txt"), None)


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        FileSource(tmp_path / "in.txt", batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        DirSource(tmp_path, batch_size=0)


# --- CSVSource --------------------------------------------------------------------------

CSV_TEXT = (
    "id,name,note\r\n"
    '1,Ada,"likes, commas"\r\n'
    '2,"Grace ""Amazing"" Hopper","two\r\nlines"\r\n'
    "3,Linus,\r\n"
    '4,Barbara,"quote "" inside"\r\n'
)
CSV_ROWS = [
    {"id": "1", "name": "Ada", "note": "likes, commas"},
    {"id": "2", "name": 'Grace "Amazing" Hopper', "note": "two\r\nlines"},
    {"id": "3", "name": "Linus", "note": ""},
    {"id": "4", "name": "Barbara", "note": 'quote " inside'},
]


def test_csv_source_reads_rows_as_dicts(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(CSV_TEXT.encode())
    source = CSVSource(path, batch_size=3)
    assert source.list_parts() == [str(path)]
    part = source.build_part("flow.in", str(path), None)
    assert part.snapshot() == len(b"id,name,note\r\n")  # after the header
    assert _drain(part) == CSV_ROWS
    assert part.snapshot() == len(CSV_TEXT.encode())
    part.close()


def test_csv_source_resume_mid_file_keeps_the_header(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(CSV_TEXT.encode())
    source = CSVSource(path, batch_size=2)
    part = source.build_part("flow.in", str(path), None)
    batches = _read_in_batches(part)
    part.close()
    assert [len(got) for got, _state in batches] == [2, 2]
    resumed = source.build_part("flow.in", str(path), batches[0][1])
    assert _drain(resumed) == CSV_ROWS[2:]
    resumed.close()


def test_csv_source_fmtparams(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a;b\n1;'x;y'\n")
    source = CSVSource(path, delimiter=";", quotechar="'")
    part = source.build_part("flow.in", str(path), None)
    assert _drain(part) == [{"a": "1", "b": "x;y"}]
    part.close()


def test_csv_source_header_only_and_empty(tmp_path: Path) -> None:
    for content in ["a,b\n", ""]:
        path = tmp_path / "in.csv"
        path.write_text(content)
        part = CSVSource(path).build_part("flow.in", str(path), None)
        assert _drain(part) == []
        part.close()


# --- DirSource --------------------------------------------------------------------------


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.log").write_text("b1\nb2\nb3\n")
    (folder / "a.log").write_text("a1\n")
    (folder / "notes.txt").write_text("skip me\n")
    (folder / "sub" / "c.log").write_text("c1\nc2\n")
    (folder / "dir.log").mkdir()  # matches the pattern but is not a file
    return folder


def test_dir_source_one_partition_per_matching_file(log_dir: Path) -> None:
    source = DirSource(log_dir, glob_pat="*.log", batch_size=2)
    assert source.list_parts() == ["a.log", "b.log"]
    contents = {}
    for name in source.list_parts():
        part = source.build_part("flow.in", name, None)
        contents[name] = _drain(part)
        part.close()
    assert contents == {"a.log": ["a1"], "b.log": ["b1", "b2", "b3"]}


def test_dir_source_default_pattern_and_recursive_glob(log_dir: Path) -> None:
    assert DirSource(str(log_dir)).list_parts() == ["a.log", "b.log", "notes.txt"]
    source = DirSource(log_dir, glob_pat="**/*.log")
    assert source.list_parts() == ["a.log", "b.log", "sub/c.log"]
    part = source.build_part("flow.in", "sub/c.log", None)
    assert _drain(part) == ["c1", "c2"]
    part.close()


def test_dir_source_resumes_each_file_on_its_own(log_dir: Path) -> None:
    source = DirSource(log_dir, glob_pat="*.log", batch_size=1)
    part = source.build_part("flow.in", "b.log", None)
    assert part.next_batch() == ["b1"]
    state = part.snapshot()
    part.close()
    resumed = source.build_part("flow.in", "b.log", state)
    assert _drain(resumed) == ["b2", "b3"]
    resumed.close()


def test_dir_source_requires_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        DirSource(tmp_path / "missing")
    (tmp_path / "file").touch()
    with pytest.raises(ValueError, match="not a directory"):
        DirSource(tmp_path / "file")


# --- FileSink ---------------------------------------------------------------------------


def test_file_sink_writes_values_and_snapshots_byte_offsets(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    sink = FileSink(path)
    assert sink.list_parts() == [str(path)]
    assert sink.part_fn("any key") == 0
    part = sink.build_part("flow.out", str(path), None)
    assert part.snapshot() == 0
    part.write_batch(["é", 2])
    assert part.snapshot() == len("é\n2\n".encode())
    part.write_batch([])
    assert part.snapshot() == len("é\n2\n".encode())
    part.close()
    assert path.read_text(encoding="utf-8") == "é\n2\n"


def test_file_sink_custom_end(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    part = FileSink(path, end=";").build_part("flow.out", str(path), None)
    part.write_batch(["a", "b"])
    part.close()
    assert path.read_text() == "a;b;"


def test_file_sink_fresh_start_empties_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("left over from an old run\n")
    part = FileSink(path).build_part("flow.out", str(path), None)
    part.write_batch(["new"])
    part.close()
    assert path.read_text() == "new\n"


def test_file_sink_resume_truncates_to_exactly_once(tmp_path: Path) -> None:
    """Crash after writing past the last snapshot; the resumed run rewrites that tail."""
    path = tmp_path / "out.txt"
    sink = FileSink(path)
    first = sink.build_part("flow.out", str(path), None)
    first.write_batch(["1", "2"])
    state = first.snapshot()  # epoch closed here
    first.write_batch(["3", "4"])  # written, but its epoch never closed
    first.close()
    assert path.read_text() == "1\n2\n3\n4\n"
    second = sink.build_part("flow.out", str(path), state)
    assert path.read_text() == "1\n2\n"
    assert second.snapshot() == state
    second.write_batch(["3", "4"])  # the replayed epoch
    second.write_batch(["5"])
    second.close()
    assert path.read_text() == "1\n2\n3\n4\n5\n"


def test_file_sink_refuses_a_file_shorter_than_its_resume_offset(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("ab")
    with pytest.raises(ValueError, match="changed outside the dataflow"):
        FileSink(path).build_part("flow.out", str(path), 10)
    assert path.read_text() == "ab"


def test_file_sink_refuses_another_partition(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="different path"):
        FileSink(tmp_path / "out.txt").build_part("flow.out", "elsewhere.txt", None)


# --- DirSink ----------------------------------------------------------------------------


def _route(sink: DirSink, parts: dict[str, Any], items: list[tuple[str, str]]) -> None:
    """What the runtime does: route each (key, value) by part_fn, write only the value."""
    names = sink.list_parts()
    for key, value in items:
        parts[names[sink.part_fn(key) % len(names)]].write_batch([value])


def test_dir_sink_names_and_routing(tmp_path: Path) -> None:
    sink = DirSink(tmp_path, 3)
    assert sink.list_parts() == ["part_0", "part_1", "part_2"]
    parts = {name: sink.build_part("flow.out", name, None) for name in sink.list_parts()}
    items = [(f"user{n}", f"event {n}") for n in range(30)]
    _route(sink, parts, items)
    for part in parts.values():
        part.close()
    for name in sink.list_parts():
        index = int(name.removeprefix("part_"))
        expected = [value for key, value in items if sink.part_fn(key) % 3 == index]
        assert (tmp_path / name).read_text().splitlines() == expected
    assert sum(len((tmp_path / n).read_text().splitlines()) for n in sink.list_parts()) == 30


def test_dir_sink_custom_namer_assign_file_and_end(tmp_path: Path) -> None:
    sink = DirSink(
        tmp_path,
        2,
        file_namer=lambda i, n: f"{i}-of-{n}.csv",
        assign_file=lambda key: 0 if key.startswith("even") else 1,
        end="|",
    )
    assert sink.list_parts() == ["0-of-2.csv", "1-of-2.csv"]
    parts = {name: sink.build_part("flow.out", name, None) for name in sink.list_parts()}
    _route(sink, parts, [("even", "a"), ("odd", "b"), ("even", "c")])
    for part in parts.values():
        part.close()
    assert (tmp_path / "0-of-2.csv").read_text() == "a|c|"
    assert (tmp_path / "1-of-2.csv").read_text() == "b|"


def test_dir_sink_resume_truncates_each_file(tmp_path: Path) -> None:
    sink = DirSink(tmp_path, 2, assign_file=lambda key: int(key))
    first = {name: sink.build_part("flow.out", name, None) for name in sink.list_parts()}
    _route(sink, first, [("0", "a"), ("1", "b")])
    states = {name: part.snapshot() for name, part in first.items()}
    _route(sink, first, [("0", "c"), ("1", "d")])
    for part in first.values():
        part.close()
    second = {name: sink.build_part("flow.out", name, states[name]) for name in states}
    _route(sink, second, [("0", "c"), ("1", "d"), ("1", "e")])
    for part in second.values():
        part.close()
    assert (tmp_path / "part_0").read_text() == "a\nc\n"
    assert (tmp_path / "part_1").read_text() == "b\nd\ne\n"


def test_dir_sink_validates_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file_count"):
        DirSink(tmp_path, 0)
    with pytest.raises(ValueError, match="distinct names"):
        DirSink(tmp_path, 2, file_namer=lambda i, n: "same")


# --- end to end through run_main ----------------------------------------------------------

import engine.operators as op  # noqa: E402 - grouped with the tests that use it
from engine.dataflow import Dataflow  # noqa: E402
from engine.errors import EngineRuntimeError  # noqa: E402
from engine.testing import TestingSink, TestingSource, run_main  # noqa: E402


def test_e2e_file_to_file(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    lines = [f"word{n}" for n in range(2500)]
    src.write_text("\n".join(lines) + "\n")
    dst.write_text("stale content\n")
    flow = Dataflow("file_to_file")
    text = op.input("inp", flow, FileSource(src, batch_size=100))
    keyed = op.map("key", text, lambda line: ("all", line.upper()))
    op.output("out", keyed, FileSink(dst))
    run_main(flow)
    assert dst.read_text() == "".join(f"{line.upper()}\n" for line in lines)


def test_e2e_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(CSV_TEXT.encode())
    out: list[tuple[str, str]] = []
    flow = Dataflow("csv_rows")
    rows = op.input("inp", flow, CSVSource(path, batch_size=3))
    op.output("out", op.map("pick", rows, lambda row: (row["id"], row["note"])), TestingSink(out))
    run_main(flow)
    assert out == [(row["id"], row["note"]) for row in CSV_ROWS]


def test_e2e_dir_to_dir(tmp_path: Path) -> None:
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    expected: list[str] = []
    for name in ["x", "y", "z"]:
        file_lines = [f"{name}-{n}" for n in range(50)]
        (in_dir / f"{name}.txt").write_text("\n".join(file_lines) + "\n")
        expected.extend(file_lines)
    flow = Dataflow("dir_to_dir")
    text = op.input("inp", flow, DirSource(in_dir, glob_pat="*.txt", batch_size=7))
    keyed = op.map("key", text, lambda line: (line.split("-")[0], line))
    op.output("out", keyed, DirSink(out_dir, 2, assign_file=lambda key: ord(key)))
    run_main(flow)
    part_0 = (out_dir / "part_0").read_text().splitlines()
    part_1 = (out_dir / "part_1").read_text().splitlines()
    assert sorted(part_0 + part_1) == sorted(expected)
    # ord("x") and ord("z") are even, ord("y") is odd. Files interleave, but the lines
    # of each input file keep their order.
    assert {line[0] for line in part_0} == {"x", "z"}
    assert part_1 == [line for line in expected if line.startswith("y")]
    assert [line for line in part_0 if line.startswith("z")] == [f"z-{n}" for n in range(50)]


def test_e2e_file_sink_needs_key_value_pairs(tmp_path: Path) -> None:
    flow = Dataflow("unkeyed")
    nums = op.input("inp", flow, TestingSource(["not a pair"]))
    op.output("out", nums, FileSink(tmp_path / "out.txt"))
    with pytest.raises(TypeError, match=r"unkeyed\.out"):
        run_main(flow)


def test_e2e_missing_input_file_names_the_step(tmp_path: Path) -> None:
    flow = Dataflow("missing")
    text = op.input("inp", flow, FileSource(tmp_path / "nope.txt"))
    op.output("out", text, TestingSink([]))
    with pytest.raises(EngineRuntimeError, match=r"missing\.inp") as info:
        run_main(flow)
    assert isinstance(info.value.__cause__, FileNotFoundError)


# --- Bytewax 0.21 parity and splitting ------------------------------------------------------


def test_unsplit_names_and_resume_states_match_bytewax(log_dir: Path) -> None:
    """Same names as Bytewax without its `fs_id::` prefix; same byte-offset resume states."""
    bytewax_files = pytest.importorskip("bytewax.connectors.files")
    ours = DirSource(log_dir, glob_pat="*.log", batch_size=2)
    theirs = bytewax_files.DirSource(log_dir, glob_pat="*.log", batch_size=2)
    # Bytewax also lists the matching directory "dir.log" (and fails reading it).
    their_names = sorted(name for name in theirs.list_parts() if not name.endswith("dir.log"))
    assert [name.split("::", 1)[1] for name in their_names] == ours.list_parts()
    for our_name, their_name in zip(ours.list_parts(), their_names, strict=True):
        our_part = ours.build_part("flow.in", our_name, None)
        their_part = theirs.build_part("flow.in", their_name, None)
        assert _read_in_batches(our_part) == _read_in_batches(their_part)
        our_part.close()
        their_part.close()
    path = log_dir / "b.log"
    their_file = bytewax_files.FileSource(path, batch_size=2)
    assert [name.split("::", 1)[1] for name in their_file.list_parts()] == FileSource(
        path
    ).list_parts()


def test_large_files_are_split_by_default_and_splitting_can_be_turned_off(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.txt"
    line = "x" * 1023 + "\n"
    path.write_text(line * (9 * 1024))  # 9 MiB, above the 8 MiB default threshold
    split = FileSource(path)
    names = split.list_parts()
    assert len(names) == 36
    assert all(name.startswith(f"{path}@") for name in names)
    assert FileSource(path, split_bytes=None).list_parts() == [str(path)]
    assert CSVSource(path, split_bytes=None).list_parts() == [str(path)]
    total = 0
    for name in names:
        part = split.build_part("flow.in", name, None)
        lines = _drain(part)
        assert len(lines) == 256  # 256 KiB ranges of 1 KiB lines
        total += len(lines)
        part.close()
    assert total == 9 * 1024
