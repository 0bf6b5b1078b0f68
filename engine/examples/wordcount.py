"""Word count over embedded text: the example job of the README.

Run it with ``python -m engine.examples.wordcount``: two worker processes count the
words of four partitions of text; it prints the run summary and the ten most frequent
words. ``python -m engine.run engine.examples.wordcount -w 4`` runs the same flow from
the command line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import engine.operators as op
from engine import run_flow
from engine.dataflow import Dataflow
from engine.inputs import FixedPartitionedSource, StatefulSourcePartition
from engine.testing import TestingSink

TEXT = """\
It was the best of times, it was the worst of times, it was the age of wisdom,
it was the age of foolishness, it was the epoch of belief, it was the epoch of
incredulity, it was the season of Light, it was the season of Darkness, it was
the spring of hope, it was the winter of despair, we had everything before us,
we had nothing before us, we were all going direct to Heaven, we were all going
direct the other way.
"""

#: How many times each partition repeats the text (sized to run in about a second).
REPEATS = 2_000
PARTITIONS = 4


class _TextPartition(StatefulSourcePartition[str, int]):
    """Yields the embedded text's lines ``REPEATS`` times; resume state = lines read."""

    def __init__(self, resume_state: int | None) -> None:
        self._lines = TEXT.splitlines()
        self._read = resume_state or 0
        self._total = len(self._lines) * REPEATS

    def next_batch(self) -> list[str]:
        if self._read >= self._total:
            raise StopIteration
        end = min(self._read + 1_000, self._total)
        batch = [self._lines[i % len(self._lines)] for i in range(self._read, end)]
        self._read = end
        return batch

    def snapshot(self) -> int:
        return self._read


class EmbeddedText(FixedPartitionedSource[str, int]):
    """A few partitions of embedded text; needs no files or network."""

    def list_parts(self) -> list[str]:
        return [f"text-{i}" for i in range(PARTITIONS)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _TextPartition:
        return _TextPartition(resume_state)


_WORD = re.compile(r"[a-z']+")


def _words(line: str) -> Iterator[str]:
    return iter(_WORD.findall(line.lower()))


def build_flow(counts: list[tuple[str, int]]) -> Dataflow:
    """The word-count flow; final ``(word, count)`` pairs are appended to ``counts``."""
    flow = Dataflow("wordcount")
    lines = op.input("lines", flow, EmbeddedText())
    words = op.flat_map("words", lines, _words)
    op.output("out", op.count_final("count", words, lambda w: w), TestingSink(counts))
    return flow


#: For ``python -m engine.run engine.examples.wordcount`` (prints nothing; counts kept here).
flow = build_flow([])


def main() -> None:
    counts: list[tuple[str, int]] = []
    started = time.perf_counter()
    summary = run_flow(build_flow(counts), workers=2)
    elapsed = time.perf_counter() - started
    total = sum(n for _, n in counts)
    print(summary.line())
    print(f"counted {total:,} words ({len(counts)} distinct) in {elapsed:.2f} s")
    for word, n in sorted(counts, key=lambda wc: (-wc[1], wc[0]))[:10]:
        print(f"{n:>8,}  {word}")


if __name__ == "__main__":
    main()
