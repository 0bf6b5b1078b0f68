"""Connectors for local files: read lines or CSV rows, write lines.

Sources read bytes and decode them as UTF-8; their resume state is the byte offset of
the next unread line (or row), so a resumed execution continues exactly after the last
item of the last closed epoch. Sinks remember the byte offset after their last write
and, on resume, cut the file back to it before writing again: together with a
resumable source this gives exactly-once file output for batch jobs. Do not tail an
output file while the dataflow may still resume; its end can be cut back.

Every worker of a shmflow cluster runs on one machine, so a file is identified by its
path alone. The `get_fs_id` parameters exist so flows written for Bytewax keep working;
they are accepted and not used.
"""

from __future__ import annotations

import csv
import os
import zlib
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import IO, Any

from engine.inputs import FixedPartitionedSource, StatefulSourcePartition
from engine.outputs import FixedPartitionedSink, StatefulSinkPartition

__all__ = ["CSVSource", "DirSink", "DirSource", "FileSink", "FileSource"]


def _get_path_dev(path: Path) -> str:
    """Id of the filesystem holding `path` (kept for signature compatibility)."""
    return hex(path.stat().st_dev)


def _split_lines(chunk: bytes) -> list[str]:
    """Decode raw lines (each ending in b"\\n" except maybe the last) without their ends.

    A "\\r" right before the end of a line is dropped too, so CRLF files read like LF ones.
    """
    text = chunk.decode()
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    elif lines[-1].endswith("\r"):
        lines[-1] = lines[-1][:-1]
    return lines


class _FilePartition(StatefulSourcePartition[str, int]):
    """Reads one file line by line; resume state = byte offset of the next line."""

    def __init__(self, path: Path, batch_size: int, resume_state: int | None) -> None:
        self._batch_size = batch_size
        self._file: IO[bytes] | None = open(path, "rb")  # noqa: SIM115 - closed in close()
        if resume_state is not None:
            self._file.seek(resume_state)
        self._offset = self._file.tell()

    def next_batch(self) -> list[str]:
        if self._file is None:
            raise StopIteration
        raw_lines = list(islice(self._file, self._batch_size))
        self._offset = self._file.tell()
        if not raw_lines:
            # Let go of the file at EOF; `snapshot` still knows the final offset.
            self.close()
            raise StopIteration
        return _split_lines(b"".join(raw_lines))

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _CSVPartition(StatefulSourcePartition[dict[str, str], int]):
    """Reads one CSV file row by row as dicts; resume state = byte offset of the next row."""

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


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size!r}")


class FileSource(FixedPartitionedSource[str, int]):
    """Read a text file line by line, as `str` lines without their line ends.

    The file is one partition, keyed by `str(path)`, read by one worker. The resume
    state is the byte offset of the next line, so a resumed execution reads exactly the
    lines after the last closed epoch. Lines end at "\\n" ("\\r\\n" works too); the
    file is decoded as UTF-8.

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
    >>> tmp.cleanup()

    Args:
        path: The file to read. It must exist when the dataflow starts.
        batch_size: Most lines per batch.
        get_fs_id: Accepted for compatibility with Bytewax; not used.
    """

    def __init__(
        self,
        path: Path | str,
        batch_size: int = 1000,
        get_fs_id: Callable[[Path], str] = _get_path_dev,
    ) -> None:
        _check_batch_size(batch_size)
        self._path = Path(path)
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        if not self._path.is_file():
            raise FileNotFoundError(
                f"input file {str(self._path)!r} does not exist or is not a regular file; "
                "create it or fix the path given to FileSource"
            )
        return [str(self._path)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        _check_part(step_id, for_part, str(self._path))
        return _FilePartition(self._path, self._batch_size, resume_state)


def _check_part(step_id: str, for_part: str, expected: str) -> None:
    if for_part != expected:
        raise ValueError(
            f"step {step_id!r} was asked for partition {for_part!r} but its file is "
            f"{expected!r}; a recovery store cannot be resumed with a different path"
        )


class DirSource(FixedPartitionedSource[str, int]):
    """Read every file of a directory matching a glob pattern, line by line.

    Each matching regular file is one partition, keyed by its path relative to
    `dir_path`; different files are read in parallel by different workers, so lines of
    different files interleave. Lines are read as in `FileSource`, with the same
    byte-offset resume state per file. The set of files is listed when the dataflow
    starts.

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
    >>> tmp.cleanup()

    Args:
        dir_path: The directory; it must exist.
        glob_pat: Which files to read (`pathlib` glob; `**` recurses). Directories that
            match are skipped.
        batch_size: Most lines per batch.
        get_fs_id: Accepted for compatibility with Bytewax; not used.
    """

    def __init__(
        self,
        dir_path: Path | str,
        glob_pat: str = "*",
        batch_size: int = 1000,
        get_fs_id: Callable[[Path], str] = _get_path_dev,
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

    def list_parts(self) -> list[str]:
        return sorted(
            path.relative_to(self._dir_path).as_posix()
            for path in self._dir_path.glob(self._glob_pat)
            if path.is_file()
        )

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        return _FilePartition(self._dir_path / for_part, self._batch_size, resume_state)


class CSVSource(FixedPartitionedSource[dict[str, str], int]):
    """Read a CSV file row by row, as one `dict` per row keyed by the header's columns.

    The first row is the header. Quoted fields may contain delimiters and line breaks.
    Values are `str`, as the `csv` module returns them. The resume state is the byte
    offset of the next row; on resume the header is read again from the top. The file
    is one partition, keyed by `str(path)`, decoded as UTF-8.

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
    >>> tmp.cleanup()

    Args:
        path: The file to read. It must exist when the dataflow starts.
        batch_size: Most rows per batch.
        get_fs_id: Accepted for compatibility with Bytewax; not used.
        **fmtparams: Passed on to `csv.DictReader` (`delimiter`, `quotechar`, ...).
    """

    def __init__(
        self,
        path: Path | str,
        batch_size: int = 1000,
        get_fs_id: Callable[[Path], str] = _get_path_dev,
        **fmtparams: Any,
    ) -> None:
        self._file_source = FileSource(path, batch_size, get_fs_id)
        self._path = Path(path)
        self._batch_size = batch_size
        self._fmtparams = fmtparams

    def list_parts(self) -> list[str]:
        return self._file_source.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _CSVPartition:
        _check_part(step_id, for_part, str(self._path))
        return _CSVPartition(self._path, self._batch_size, resume_state, self._fmtparams)


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
