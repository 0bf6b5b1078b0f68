"""Connectors for local files: read lines or CSV rows, write lines.

Sources read bytes and decode them as UTF-8; their resume state is the byte offset of
the next unread line (or row), so a resumed execution continues exactly after the last
item of the last closed epoch. Sinks remember the byte offset after their last write
and, on resume, cut the file back to it before writing again: together with a
resumable source this gives exactly-once file output for batch jobs. Do not tail an
output file while the dataflow may still resume; its end can be cut back.

Splitting a file across workers
-------------------------------
A file larger than `split_bytes` (default `SPLIT_BYTES`, 8 MiB) is cut into at most
`ranges` (default `RANGES`, 64) byte ranges, each its own partition, so every worker
count reads one big file in parallel. The cut depends only on the file's size and
`ranges`, never on the worker count: range `i` covers the nominal bytes
`[i * L, (i + 1) * L)`, where `L` is the smallest power of two with `L * ranges >= size`
(so a file has between `ranges / 2` and `ranges` ranges). A range reads every line whose
first byte lies in it, to the line's end (which may lie in a later range): it starts at
the first line start at or after its nominal start and stops before the first line
starting at or after its nominal end. Every line is read exactly once, whatever the line
lengths (a line longer than a range is read by the range its first byte is in; ranges
that lie inside it read nothing). Pass `split_bytes=None` to read every file as one
partition.

Partition names are stable: `str(path)` for a whole `FileSource`/`CSVSource` file and
the path relative to the directory (POSIX form) for a `DirSource` file, as in Bytewax;
a range appends `@START-END`, its nominal byte offsets, e.g. `logs/big.txt@0-262144`.
The resume state of a range is the byte offset (from the start of the file) of its next
unread line, so a resumed execution continues every range where it stopped, also with
a different worker count (ranges are re-assigned to workers by name).

Who reads what: the file sources set `balance_parts`, so their partitions (files and
ranges) are handed out in turn instead of in fixed shares: worker k of N starts with
partition k, and a worker that has read its partition gets the next one in
`list_parts()` order. A worker on a busier core, or with the smaller files, reads more
of them, and the workers finish together (as a `multiprocessing.Pool` map over the same
ranges would). One worker reads a split file in file order; N workers read N ranges at
a time, so lines are out of file order by about N ranges' worth.

A split CSV file has its header read from the start of the file for every range; the
first range skips the header line. Rows must not span lines (no line breaks inside
quoted fields): a split range cannot tell a quoted line break from a row end, so it
fails with a clear error when it meets one; read such files with `split_bytes=None`.

Growing and changing files: the ranges come from the size when the partitions are
listed (each worker lists them when the dataflow starts). Each range reads up to its
nominal end, so the last range also reads lines appended before it gets there; lines
beyond the last range's nominal end are not read by this execution. A whole (unsplit)
file is read to its end as it is when the reader gets there, as in Bytewax. Because
nominal ends do not depend on the exact size, a file that grew between an execution and
its resume keeps its range names (and their resume states) unless its size crossed a
power of two times `ranges` or the `split_bytes` threshold; then the renamed ranges are
read again from their start (at-least-once, nothing skipped). A split file must not be
rewritten, shrunk, or grown while the dataflow starts.

Differences from Bytewax 0.21: Bytewax prefixes partition names with a filesystem id
(`get_fs_id`, by default the device number `st_dev`) so that machines of a cluster
without a shared filesystem read their own copies. Every worker of a shmflow cluster
runs on one machine, so a file is identified by its path alone, and the `get_fs_id`
parameters are accepted (flows written for Bytewax keep working) and not used; a
device number can also change when a filesystem is mounted again (containers), which
would silently restart every file from its beginning on resume. Missing files are a
clear error instead of an empty input, matching directories are skipped instead of
failing, `DirSource` lists files in sorted order, and CRLF line ends are removed.

>>> import tempfile
>>> from pathlib import Path
>>> tmp = tempfile.TemporaryDirectory()
>>> path = Path(tmp.name) / "words.txt"
>>> _ = path.write_text("".join(f"word{n}\\n" for n in range(6)))  # 6 lines, 36 bytes
>>> source = FileSource(path, batch_size=10, split_bytes=16, ranges=4)
>>> [name.removeprefix(str(path)) for name in source.list_parts()]
['@0-16', '@16-32', '@32-48']
>>> first = source.build_part("flow.in", f"{path}@0-16", None)
>>> first.next_batch(), first.snapshot()
(['word0', 'word1', 'word2'], 18)
>>> first.close()
>>> second = source.build_part("flow.in", f"{path}@16-32", None)
>>> second.next_batch(), second.snapshot()
(['word3', 'word4', 'word5'], 36)
>>> second.close()
>>> last = source.build_part("flow.in", f"{path}@32-48", None)  # no line starts there
>>> last.next_batch()
Traceback (most recent call last):
StopIteration
>>> last.close()
>>> tmp.cleanup()
"""

from __future__ import annotations

import csv
import io
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

from engine.inputs import FixedPartitionedSource, StatefulSourcePartition
from engine.outputs import FixedPartitionedSink, StatefulSinkPartition

__all__ = [
    "RANGES",
    "SPLIT_BYTES",
    "CSVSource",
    "DirSink",
    "DirSource",
    "FileSink",
    "FileSource",
]

#: Files larger than this many bytes are split into ranges by default.
SPLIT_BYTES = 8 * 1024 * 1024
#: The most ranges one file is split into by default (a file gets between half as many
#: and this many).
RANGES = 64
#: Bytes read per `read` call; lines are split out of each chunk in bulk.
_READ_CHUNK_BYTES = 256 * 1024
#: `@START-END` at the end of a partition name: a range of the file named before it.
_RANGE_SUFFIX = re.compile(r"@(\d+)-(\d+)\Z")


def _get_path_dev(path: Path) -> str:
    """Id of the filesystem holding `path` (kept for signature compatibility)."""
    return hex(path.stat().st_dev)


# --- splitting ----------------------------------------------------------------------------


def _split_ranges(size: int, ranges: int) -> list[tuple[int, int]]:
    """Nominal `(start, end)` byte ranges of a file of `size` bytes.

    Ranges have one length, the smallest power of two `L` with `L * ranges >= size`, so
    they stay put when the file grows a little; the last one may end past the file.

    >>> _split_ranges(36, 4)
    [(0, 16), (16, 32), (32, 48)]
    >>> _split_ranges(64, 64) == [(n, n + 1) for n in range(64)]
    True
    >>> len(_split_ranges(12_000_000, 64)), _split_ranges(12_000_000, 64)[1]
    (46, (262144, 524288))
    >>> _split_ranges(0, 64)
    []
    """
    if size <= 0:
        return []
    length = 1 << (-(-size // ranges) - 1).bit_length()
    return [(start, start + length) for start in range(0, size, length)]


@dataclass(frozen=True)
class _Splitter:
    """When and how a source cuts its files into ranges (validated arguments)."""

    split_bytes: int | None
    ranges: int

    def __post_init__(self) -> None:
        if self.split_bytes is not None and (
            not isinstance(self.split_bytes, int) or self.split_bytes < 0
        ):
            raise ValueError(
                "split_bytes must be None (never split) or an int >= 0 (split files larger "
                f"than that many bytes); got {self.split_bytes!r}"
            )
        if not isinstance(self.ranges, int) or self.ranges < 1:
            raise ValueError(f"ranges must be a positive int; got {self.ranges!r}")

    def part_names(self, name: str, path: Path) -> list[str]:
        """`name` alone, or `name@START-END` per range if `path` is large enough."""
        size = path.stat().st_size
        if self.split_bytes is None or size <= self.split_bytes:
            return [name]
        return [f"{name}@{start}-{end}" for start, end in _split_ranges(size, self.ranges)]


def _parse_range(for_part: str) -> tuple[str, tuple[int, int] | None]:
    """Split a partition name into the file's name and its `(start, end)` range, if any.

    >>> _parse_range("logs/a.txt@0-4096")
    ('logs/a.txt', (0, 4096))
    >>> _parse_range("logs/a.txt")
    ('logs/a.txt', None)
    """
    match = _RANGE_SUFFIX.search(for_part)
    if match is None:
        return for_part, None
    start, end = int(match[1]), int(match[2])
    if start >= end:
        raise ValueError(f"partition {for_part!r} names an empty byte range")
    return for_part[: match.start()], (start, end)


def _check_part(step_id: str, for_part: str, expected: str) -> None:
    if for_part != expected:
        raise ValueError(
            f"step {step_id!r} was asked for partition {for_part!r} but its file is "
            f"{expected!r}; a recovery store cannot be resumed with a different path"
        )


def _file_span(step_id: str, for_part: str, expected: str) -> tuple[int, int] | None:
    """The range `for_part` names in the file `expected` (`None`: the whole file)."""
    if for_part == expected:
        return None
    name, span = _parse_range(for_part)
    _check_part(step_id, name, expected)
    return span


# --- reading lines in bulk ----------------------------------------------------------------


class _LineReader:
    """Reads the lines of a file whose first byte lies in `[start, end)`, in bulk.

    Lines come out as raw `bytes` without their "\\n" (a "\\r" before it stays).
    `position` is the byte offset of the next line not yet returned: the resume state.
    The file is read in large chunks that are split into lines at once; `end=None`
    reads to the end of the file.
    """

    def __init__(
        self,
        path: Path,
        span: tuple[int, int] | None,
        resume_state: int | None,
        *,
        skip_to: int = 0,
        chunk_bytes: int | None = None,
    ) -> None:
        start, end = (0, None) if span is None else span
        if resume_state is not None and not start <= resume_state:
            raise ValueError(
                f"resume state {resume_state!r} of {str(path)!r} lies before its range "
                f"{start}-{end}; the recovery store does not belong to this file"
            )
        self._chunk_bytes = _READ_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        self._end = end
        self._file: IO[bytes] = open(path, "rb", buffering=0)  # noqa: SIM115 - see close()
        if resume_state is None:
            resume_state = max(self._first_line_start(start), skip_to)
        self.position = resume_state
        self._read_at = resume_state
        self._file.seek(resume_state)
        self._lines: list[bytes] = []  # complete lines read, from `_next` on not returned
        self._next = 0
        self._tail: list[bytes] = []  # pieces of the line being read (no "\n" yet)
        self._unterminated = False  # the last of `_lines` ends the file without "\n"
        self._exhausted = end is not None and resume_state >= end

    def _first_line_start(self, start: int) -> int:
        """Offset of the first line starting in `[start, end)`, or `end` if none does."""
        if start == 0:
            return 0
        assert self._end is not None
        # A line starts at `start` exactly when the byte before it is a "\n".
        at = start - 1
        self._file.seek(at)
        while at < self._end - 1:
            chunk = self._file.read(min(self._chunk_bytes, self._end - 1 - at))
            if not chunk:
                break
            newline = chunk.find(b"\n")
            if newline >= 0:
                return at + newline + 1
            at += len(chunk)
        return self._end

    def read(self, max_lines: int) -> list[bytes]:
        """Up to `max_lines` next lines; `[]` once the range is read."""
        while len(self._lines) - self._next < max_lines and not self._exhausted:
            self._fill()
        lines = self._lines[self._next : self._next + max_lines]
        self._next += len(lines)
        self.position += sum(map(len, lines)) + len(lines)
        if self._unterminated and self._next == len(self._lines):
            self.position -= 1  # the file's last line has no "\n"
            self._unterminated = False
        return lines

    def _fill(self) -> None:
        """Read one chunk and append the lines it completes."""
        if self._next:
            del self._lines[: self._next]
            self._next = 0
        past_end = self._end is not None and self._read_at >= self._end
        size = self._chunk_bytes
        if self._end is not None and not past_end:
            size = min(size, self._end - self._read_at)
        chunk = self._file.read(size)
        if not chunk:
            self._exhausted = True
            if self._tail:  # the file ends without "\n"
                self._lines.append(b"".join(self._tail))
                self._tail = []
                self._unterminated = True
            return
        self._read_at += len(chunk)
        if past_end:
            # Only the rest of the line that started before `end` is still ours.
            newline = chunk.find(b"\n")
            if newline >= 0:
                chunk = chunk[: newline + 1]
                self._exhausted = True
        elif self._read_at == self._end and chunk.endswith(b"\n"):
            self._exhausted = True  # the next line starts at `end`: the next range's
        pieces = chunk.split(b"\n")
        if len(pieces) == 1:
            self._tail.append(chunk)
            return
        if self._tail:
            self._tail.append(pieces[0])
            pieces[0] = b"".join(self._tail)
            self._tail = []
        rest = pieces.pop()
        if rest:
            self._tail.append(rest)
        self._lines.extend(pieces)

    def close(self) -> None:
        self._file.close()


def _decode_lines(raw_lines: list[bytes]) -> list[str]:
    """Decode raw lines (without "\\n") at once; a "\\r" ending a line is dropped too."""
    text = b"\n".join(raw_lines).decode()
    if "\r" not in text:
        return text.split("\n")
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1].endswith("\r"):
        lines[-1] = lines[-1][:-1]
    return lines


class _FilePartition(StatefulSourcePartition[str, int]):
    """Reads one file, or one range of it, in batches of lines.

    Resume state = byte offset of the next line.
    """

    def __init__(
        self,
        path: Path,
        span: tuple[int, int] | None,
        batch_size: int,
        resume_state: int | None,
    ) -> None:
        self._batch_size = batch_size
        self._reader: _LineReader | None = _LineReader(path, span, resume_state)
        self._offset = self._reader.position

    def next_batch(self) -> list[str]:
        if self._reader is None:
            raise StopIteration
        raw_lines = self._reader.read(self._batch_size)
        self._offset = self._reader.position
        if not raw_lines:
            # Let go of the file at the end; `snapshot` still knows the final offset.
            self.close()
            raise StopIteration
        return _decode_lines(raw_lines)

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


# --- CSV ------------------------------------------------------------------------------------


class _CSVPartition(StatefulSourcePartition[dict[str, str], int]):
    """Reads one whole CSV file row by row as dicts; resume state = offset of the next row.

    Rows may span lines (quoted line breaks), so this one reads line by line through
    the `csv` module (buffered: still no system call per line).
    """

    def __init__(
        self,
        path: Path,
        batch_size: int,
        resume_state: int | None,
        fmtparams: dict[str, Any],
    ) -> None:
        self._batch_size = batch_size
        self._file: IO[bytes] | None = open(path, "rb")  # noqa: SIM115 - closed in close()
        # Lines keep their line ends, as the csv module wants (like newline="").
        lines = (raw_line.decode() for raw_line in self._file)
        self._reader = csv.DictReader(lines, **fmtparams)
        # The header is always read from the top, also when resuming further down.
        _ = self._reader.fieldnames
        if resume_state is not None:
            self._file.seek(resume_state)
        self._offset = self._file.tell()

    def next_batch(self) -> list[dict[str, str]]:
        if self._file is None:
            raise StopIteration
        rows = list(islice(self._reader, self._batch_size))
        self._offset = self._file.tell()
        if not rows:
            self.close()
            raise StopIteration
        return rows

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


#: `csv.DictReader` arguments that are not `csv.reader` format parameters.
_DICT_READER_ARGS = ("fieldnames", "restkey", "restval")


def _read_csv_header(path: Path, reader_params: dict[str, Any]) -> tuple[list[str], int]:
    """The header row of a CSV file and the byte offset right after it."""
    with open(path, "rb") as file:
        reader = csv.reader((raw_line.decode() for raw_line in file), **reader_params)
        header = next(reader, [])
        return header, file.tell()


class _CSVRangePartition(StatefulSourcePartition[dict[str, str], int]):
    """Reads one byte range of a CSV file, one row per line, in batches of lines.

    The header comes from the start of the file; resume state = offset of the next row.
    """

    def __init__(
        self,
        path: Path,
        span: tuple[int, int],
        batch_size: int,
        resume_state: int | None,
        fmtparams: dict[str, Any],
    ) -> None:
        self._path = path
        self._span = span
        self._batch_size = batch_size
        self._reader_params = {k: v for k, v in fmtparams.items() if k not in _DICT_READER_ARGS}
        self._restkey = fmtparams.get("restkey")
        self._restval = fmtparams.get("restval")
        fieldnames = fmtparams.get("fieldnames")
        header_end = 0
        if fieldnames is None:  # as csv.DictReader: the first row is the header
            fieldnames, header_end = _read_csv_header(path, self._reader_params)
        self._fieldnames = list(fieldnames)
        self._lines: _LineReader | None = _LineReader(path, span, resume_state, skip_to=header_end)
        self._offset = self._lines.position

    def next_batch(self) -> list[dict[str, str]]:
        if self._lines is None:
            raise StopIteration
        raw_lines = self._lines.read(self._batch_size)
        if not raw_lines:
            self.close()
            raise StopIteration
        rows = self._parse(raw_lines)
        self._offset = self._lines.position
        fieldnames = self._fieldnames
        width = len(fieldnames)
        return [
            dict(zip(fieldnames, row, strict=True)) if len(row) == width else self._as_dict(row)
            for row in rows
            if row
        ]

    def _parse(self, raw_lines: list[bytes]) -> list[list[str]]:
        # An empty line at the end makes a row left open by a quote visible: it swallows
        # the empty line instead of coming out as a row of its own.
        text = (b"\n".join(raw_lines) + b"\n\n").decode()
        reader = csv.reader(io.StringIO(text, newline=""), **self._reader_params)
        rows = list(reader)
        if len(rows) != reader.line_num or rows[-1]:
            start, end = self._span
            raise ValueError(
                f"CSV file {str(self._path)!r} has a row spanning lines (a line break "
                f"inside a quoted field) in its byte range {start}-{end}: a CSV file read "
                "in ranges needs one row per line; pass split_bytes=None to CSVSource to "
                "read it as one partition"
            )
        rows.pop()
        return rows

    def _as_dict(self, row: list[str]) -> dict[str, Any]:
        """A row as `csv.DictReader` gives it (`restkey`/`restval` for odd lengths)."""
        fieldnames = self._fieldnames
        values: dict[Any, Any] = dict(zip(fieldnames, row, strict=False))
        if len(row) > len(fieldnames):
            values[self._restkey] = row[len(fieldnames) :]
        else:
            for key in fieldnames[len(row) :]:
                values[key] = self._restval
        return values

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()
            self._lines = None


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size!r}")


class FileSource(FixedPartitionedSource[str, int]):
    """Read a text file line by line, as `str` lines without their line ends.

    A file of at most `split_bytes` bytes is one partition, named `str(path)` and read
    by one worker. A larger one is cut into at most `ranges` byte ranges aligned to line
    starts, named `f"{path}@{start}-{end}"`, which the workers read in parallel (see
    the module docstring for how the cut is made and how growing files are handled):
    lines of different ranges then interleave, lines of one range keep their order.
    So event-time windows over a time-ordered file see timestamps out of order: give
    the ``EventClock`` a ``wait_for_system_duration`` that covers the time span of the
    file (windows then close at the end of the input), or pass ``split_bytes=None`` to
    keep file order (one partition, read by one worker).
    The resume state of a partition is the byte offset of its next line, so a resumed
    execution reads exactly the lines of each file or range after the last closed
    epoch, with any worker count. Lines end at "\\n" ("\\r\\n" works too); the file is
    decoded as UTF-8. Reading goes by chunks of bytes split into lines in bulk and
    decoded once per batch.

    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "in.txt"
    >>> _ = path.write_text("one\\ntwo\\nthree\\n")
    >>> source = FileSource(path, batch_size=2)
    >>> part = source.build_part("flow.in", source.list_parts()[0], None)
    >>> part.next_batch(), part.snapshot()
    (['one', 'two'], 8)
    >>> part.close()
    >>> resumed = source.build_part("flow.in", str(path), 8)
    >>> resumed.next_batch()
    ['three']
    >>> resumed.close()

    Split in ranges of 4 bytes, each range resumes on its own from a byte offset:

    >>> split = FileSource(path, split_bytes=0, ranges=4)
    >>> [name.removeprefix(str(path)) for name in split.list_parts()]
    ['@0-4', '@4-8', '@8-12', '@12-16']
    >>> part = split.build_part("flow.in", f"{path}@8-12", None)  # "three" starts at 8
    >>> part.next_batch(), part.snapshot()
    (['three'], 14)
    >>> part.close()
    >>> resumed = split.build_part("flow.in", f"{path}@0-4", 4)  # "one" was read
    >>> resumed.next_batch()
    Traceback (most recent call last):
    StopIteration
    >>> resumed.close()
    >>> tmp.cleanup()

    Args:
        path: The file to read. It must exist when the dataflow starts.
        batch_size: Most lines per batch.
        get_fs_id: Accepted for compatibility with Bytewax; not used.
        split_bytes: Files larger than this many bytes are read in ranges; `None`
            reads the file as one partition whatever its size.
        ranges: The most ranges a split file is cut into (it gets at least half as
            many). Changing it, or `split_bytes`, renames the ranges: a resumed
            execution then reads the renamed ones from their start.
    """

    balance_parts = True  # finite partitions: handed out in turn (module doc)

    def __init__(
        self,
        path: Path | str,
        batch_size: int = 1000,
        get_fs_id: Callable[[Path], str] = _get_path_dev,
        *,
        split_bytes: int | None = SPLIT_BYTES,
        ranges: int = RANGES,
    ) -> None:
        _check_batch_size(batch_size)
        self._path = Path(path)
        self._batch_size = batch_size
        self._splitter = _Splitter(split_bytes, ranges)

    def list_parts(self) -> list[str]:
        if not self._path.is_file():
            raise FileNotFoundError(
                f"input file {str(self._path)!r} does not exist or is not a regular file; "
                "create it or fix the path given to the source"
            )
        return self._splitter.part_names(str(self._path), self._path)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        span = _file_span(step_id, for_part, str(self._path))
        return _FilePartition(self._path, span, self._batch_size, resume_state)


class DirSource(FixedPartitionedSource[str, int]):
    """Read every file of a directory matching a glob pattern, line by line.

    Each matching regular file is one partition, named by its path relative to
    `dir_path` (POSIX form, like Bytewax without its filesystem-id prefix), or, when
    larger than `split_bytes`, several: one per byte range, named
    `f"{relative_path}@{start}-{end}"` (see `FileSource` and the module docstring).
    Different files and ranges are read in parallel by different workers, so lines of
    different partitions interleave. Lines are read as in `FileSource`, with the same
    byte-offset resume state per file or range. The set of files is listed, in sorted
    order, when the dataflow starts.

    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = Path(tmp.name)
    >>> _ = (folder / "a.log").write_text("a1\\na2\\n")
    >>> _ = (folder / "b.log").write_text("b1\\n")
    >>> source = DirSource(folder, glob_pat="*.log")
    >>> source.list_parts()
    ['a.log', 'b.log']
    >>> part = source.build_part("flow.in", "b.log", None)
    >>> part.next_batch()
    ['b1']
    >>> part.close()
    >>> DirSource(folder, glob_pat="*.log", split_bytes=4, ranges=2).list_parts()
    ['a.log@0-4', 'a.log@4-8', 'b.log']
    >>> tmp.cleanup()

    Args:
        dir_path: The directory; it must exist.
        glob_pat: Which files to read (`pathlib` glob; `**` recurses). Directories that
            match are skipped.
        batch_size: Most lines per batch.
        get_fs_id: Accepted for compatibility with Bytewax; not used.
        split_bytes: Files larger than this many bytes are read in ranges; `None`
            reads each file as one partition.
        ranges: The most ranges one file is cut into.
    """

    balance_parts = True  # finite partitions: handed out in turn (module doc)

    def __init__(
        self,
        dir_path: Path | str,
        glob_pat: str = "*",
        batch_size: int = 1000,
        get_fs_id: Callable[[Path], str] = _get_path_dev,
        *,
        split_bytes: int | None = SPLIT_BYTES,
        ranges: int = RANGES,
    ) -> None:
        _check_batch_size(batch_size)
        dir_path = Path(dir_path)
        if not dir_path.exists():
            raise ValueError(f"input directory {str(dir_path)!r} does not exist")
        if not dir_path.is_dir():
            raise ValueError(f"input directory {str(dir_path)!r} is not a directory")
        self._dir_path = dir_path
        self._glob_pat = glob_pat
        self._batch_size = batch_size
        self._splitter = _Splitter(split_bytes, ranges)

    def list_parts(self) -> list[str]:
        files = sorted(
            (path.relative_to(self._dir_path).as_posix(), path)
            for path in self._dir_path.glob(self._glob_pat)
            if path.is_file()
        )
        return [part for name, path in files for part in self._splitter.part_names(name, path)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        name, span = for_part, None
        if not (self._dir_path / for_part).is_file():  # a file named like "x@1-2" wins
            name, span = _parse_range(for_part)
        return _FilePartition(self._dir_path / name, span, self._batch_size, resume_state)


class CSVSource(FixedPartitionedSource[dict[str, str], int]):
    """Read a CSV file row by row, as one `dict` per row keyed by the header's columns.

    The first row is the header. Values are `str`, as the `csv` module returns them.
    The resume state is the byte offset of the next row; on resume the header is read
    again from the top. The file is decoded as UTF-8.

    A file of at most `split_bytes` bytes is one partition, named `str(path)`; quoted
    fields may then contain delimiters and line breaks. A larger file is read in byte
    ranges like `FileSource` (`f"{path}@{start}-{end}"`, read in parallel, resumed per
    range): the header is read from the start of the file for every range and the
    first range skips it. A split file must have one row per line: a range that meets
    a quoted line break fails with an error saying to pass `split_bytes=None`.

    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "in.csv"
    >>> _ = path.write_text('city,motto\\nParis,"fluctuat, nec mergitur"\\n')
    >>> source = CSVSource(path)
    >>> part = source.build_part("flow.in", str(path), None)
    >>> part.next_batch()
    [{'city': 'Paris', 'motto': 'fluctuat, nec mergitur'}]
    >>> part.close()
    >>> _ = path.write_text("city,zip\\nParis,75001\\nLyon,69001\\nNice,06000\\n")
    >>> split = CSVSource(path, split_bytes=0, ranges=2)
    >>> split.list_parts() == [f"{path}@0-32", f"{path}@32-64"]
    True
    >>> first = split.build_part("flow.in", f"{path}@0-32", None)  # skips the header
    >>> first.next_batch()
    [{'city': 'Paris', 'zip': '75001'}, {'city': 'Lyon', 'zip': '69001'}]
    >>> first.close()
    >>> second = split.build_part("flow.in", f"{path}@32-64", None)  # "Nice" is at 32
    >>> second.next_batch()
    [{'city': 'Nice', 'zip': '06000'}]
    >>> second.close()
    >>> tmp.cleanup()

    Args:
        path: The file to read. It must exist when the dataflow starts.
        batch_size: Most rows per batch.
        get_fs_id: Accepted for compatibility with Bytewax; not used.
        split_bytes: Files larger than this many bytes are read in ranges; `None`
            reads the file as one partition (needed for quoted line breaks).
        ranges: The most ranges the file is cut into.
        **fmtparams: Passed on to `csv.DictReader` (`delimiter`, `quotechar`,
            `fieldnames`, `restval`, ...).
    """

    balance_parts = True  # finite partitions: handed out in turn (module doc)

    def __init__(
        self,
        path: Path | str,
        batch_size: int = 1000,
        get_fs_id: Callable[[Path], str] = _get_path_dev,
        *,
        split_bytes: int | None = SPLIT_BYTES,
        ranges: int = RANGES,
        **fmtparams: Any,
    ) -> None:
        self._file_source = FileSource(
            path, batch_size, get_fs_id, split_bytes=split_bytes, ranges=ranges
        )
        self._path = Path(path)
        self._batch_size = batch_size
        self._fmtparams = fmtparams

    def list_parts(self) -> list[str]:
        return self._file_source.list_parts()

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _CSVPartition | _CSVRangePartition:
        span = _file_span(step_id, for_part, str(self._path))
        if span is None:
            return _CSVPartition(self._path, self._batch_size, resume_state, self._fmtparams)
        return _CSVRangePartition(self._path, span, self._batch_size, resume_state, self._fmtparams)


class _FileSinkPartition(StatefulSinkPartition[Any, int]):
    """Appends `str(value) + end` per value; resume state = byte offset after the last write."""

    def __init__(self, path: Path, resume_state: int | None, end: str) -> None:
        offset = 0 if resume_state is None else resume_state
        # Append mode: every write lands at the (possibly just truncated) end.
        self._file = open(path, "ab")  # noqa: SIM115 - closed in close()
        size = os.fstat(self._file.fileno()).st_size
        if offset > size:
            self._file.close()
            raise ValueError(
                f"output file {str(path)!r} has {size} bytes but its resume position is "
                f"byte {offset}: it was changed outside the dataflow; restore it, or "
                "start afresh with an empty recovery store"
            )
        self._file.truncate(offset)
        self._offset = offset
        self._end = end

    def write_batch(self, values: list[Any]) -> None:
        if not values:
            return
        end = self._end
        data = (end.join(map(str, values)) + end).encode()
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._offset += len(data)

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._file.close()


class FileSink(FixedPartitionedSink[Any, int]):
    """Write values to one file, `str(value) + end` each, in UTF-8.

    Upstream items must be `(key, value)` 2-tuples, like for every partitioned sink;
    the key is ignored (there is one partition, keyed by `str(path)`, so one worker
    writes everything) and only the value is written. A fresh execution empties the
    file first. Each batch is fsynced, and the resume state is the byte offset after
    the last write: on resume the file is cut back to it, so together with a resumable
    source the file holds every value exactly once.

    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = Path(tmp.name) / "out.txt"
    >>> sink = FileSink(path)
    >>> part = sink.build_part("flow.out", str(path), None)
    >>> part.write_batch(["a", 1])
    >>> part.snapshot()
    4
    >>> part.close()
    >>> path.read_text()
    'a\\n1\\n'
    >>> tmp.cleanup()

    Args:
        path: The file to write; created if missing (its directory must exist).
        end: Written after every value.
    """

    def __init__(self, path: Path | str, end: str = "\n") -> None:
        self._path = Path(path)
        self._end = end

    def list_parts(self) -> list[str]:
        return [str(self._path)]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _FileSinkPartition:
        _check_part(step_id, for_part, str(self._path))
        return _FileSinkPartition(self._path, resume_state, self._end)


def _default_file_namer(index: int, count: int) -> str:
    return f"part_{index}"


def _default_assign_file(key: str) -> int:
    return zlib.adler32(key.encode())


class DirSink(FixedPartitionedSink[Any, int]):
    """Write values to `file_count` files in a directory, one partition per file.

    Upstream items must be `(key, value)` 2-tuples. `assign_file(key)` modulo
    `file_count` picks the file; `str(value) + end` is written to it. Different files
    are written by different workers in parallel. Each file behaves like a `FileSink`:
    emptied on a fresh start, fsynced per batch, cut back to its resume offset on
    resume.

    >>> import tempfile
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = Path(tmp.name)
    >>> sink = DirSink(folder, 2, file_namer=lambda i, n: f"{i}-of-{n}.txt")
    >>> sink.list_parts()
    ['0-of-2.txt', '1-of-2.txt']
    >>> tmp.cleanup()

    Args:
        dir_path: The directory; it must exist.
        file_count: Number of files (partitions).
        file_namer: `(index, file_count) -> file name`; the default gives `part_{index}`.
        assign_file: `key -> int`, reduced modulo `file_count`; must give the same
            answer in every process (default: Adler-32 of the UTF-8 key).
        end: Written after every value.
    """

    def __init__(
        self,
        dir_path: Path | str,
        file_count: int,
        file_namer: Callable[[int, int], str] = _default_file_namer,
        assign_file: Callable[[str], int] = _default_assign_file,
        end: str = "\n",
    ) -> None:
        if file_count < 1:
            raise ValueError(f"file_count must be at least 1; got {file_count!r}")
        self._dir_path = Path(dir_path)
        self._file_count = file_count
        self._file_namer = file_namer
        self._assign_file = assign_file
        self._end = end
        names = self.list_parts()
        if len(set(names)) != len(names):
            raise ValueError(f"file_namer must give {file_count} distinct names; got {names!r}")

    def list_parts(self) -> list[str]:
        return [self._file_namer(index, self._file_count) for index in range(self._file_count)]

    def part_fn(self, item_key: str) -> int:
        return self._assign_file(item_key)

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _FileSinkPartition:
        return _FileSinkPartition(self._dir_path / for_part, resume_state, self._end)
