"""The real jobs of ``bench/jobs.py``, small size, give the plain loop's results on shmflow.

A JSON-log job (parse, 1-minute event-time windows per path, no line late) and a one-file
word count, each run in this process (``run_main``) and on 2 worker processes, compared
item for item with the plain Python loop over the same generated file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from bench import jobs
from engine import run_flow
from engine.testing import run_main

SMALL = jobs.SIZES["small"]


def _in_process(flow: Any) -> None:
    run_main(flow)


def _two_workers(flow: Any) -> None:
    run_flow(flow, workers=2)


RUNS: dict[str, Callable[[Any], None]] = {"run_main": _in_process, "2-workers": _two_workers}


@pytest.fixture(scope="module", autouse=True)
def _ship_jobs_by_value() -> Iterator[None]:
    # Worker processes then need not import `bench` (not an installed package).
    cloudpickle.register_pickle_by_value(jobs)
    yield
    cloudpickle.unregister_pickle_by_value(jobs)


@pytest.fixture(scope="module")
def access_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jobs") / "access.jsonl"
    jobs.write_access_log(path, SMALL.log_lines)
    return path


@pytest.fixture(scope="module")
def words_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jobs") / "words.txt"
    jobs.write_words(path, SMALL.word_lines)
    return path


def test_generated_log_is_unsorted_but_in_order_per_path(access_log: Path) -> None:
    events = [jobs.parse_line(line) for line in access_log.read_text().splitlines()]
    stamps = [ts for _, ts, _ in events]
    assert len(events) == SMALL.log_lines
    assert stamps != sorted(stamps)  # out of order across paths...
    last: dict[str, Any] = {}
    for path, ts, _ in events:  # ...but strictly increasing within each path
        assert path not in last or ts > last[path]
        last[path] = ts
    assert len(last) == 200


@pytest.mark.parametrize("run", list(RUNS))
def test_log_windows_match_loop(access_log: Path, run: str) -> None:
    out: list[Any] = []
    RUNS[run](jobs.log_flow(jobs.shmflow_api(), access_log, out))
    expected = jobs.log_loop(access_log)
    assert jobs.log_results(out) == expected
    assert len(out) == len(expected)  # one item per window, none late


# redistribute on one worker passes items through: only worth running on two.
@pytest.mark.parametrize(
    ("run", "redistribute"), [("run_main", False), ("2-workers", False), ("2-workers", True)]
)
def test_word_count_matches_loop(words_file: Path, run: str, redistribute: bool) -> None:
    out: list[Any] = []
    RUNS[run](jobs.words_flow(jobs.shmflow_api(), words_file, out, redistribute=redistribute))
    expected = jobs.words_loop(words_file)
    assert jobs.words_results(out) == expected
    assert len(out) == len(expected)  # one item per word


def test_baselines_agree(access_log: Path, words_file: Path) -> None:
    assert jobs.log_pool(access_log) == jobs.log_loop(access_log)
    words = jobs.words_loop(words_file)
    assert jobs.words_counter(words_file) == words
    assert jobs.words_pool(words_file) == words
