"""Chaos: kill workers or the supervisor with SIGKILL at random moments, restart on the
same recovery store until the input is done, and check what users rely on:

- every input item's effect is in the output at least once (lost == 0);
- duplicates are replays, never double counting: each key's running counts are exactly
  1..n over all executions (an item applied twice into the state would push a count
  past n), so the state resumed from is consistent with the input position;
- the final per-key state equals a fault-free run;
- `recovery inspect` shows one execution per start; nothing leaks (autouse fixture).

The default run makes 10 kills; ``-m soak`` runs the long variant (100+ kills).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import psutil
import pytest

from recovery import RecoveryStore, init_db_dir, owned_groups

REPO = Path(__file__).resolve().parents[3]
CHAOS_FLOW = Path(__file__).parents[1] / "chaos_flow.py"
KEYS = [f"key{i}" for i in range(37)]


def _write_input(
    in_dir: Path, partitions: int, lines: int, seed: int
) -> list[tuple[int, int, str]]:
    rng = random.Random(seed)
    in_dir.mkdir()
    items = []
    for p in range(partitions):
        rows = [(p, seq, rng.choice(KEYS)) for seq in range(lines)]
        items.extend(rows)
        (in_dir / f"part{p}.txt").write_text("".join(f"{p} {s} {k}\n" for p, s, k in rows))
    return items


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _start(in_dir: Path, out_dir: Path, store: Path, workers: int, log: Path) -> subprocess.Popen:
    import_str = f"{CHAOS_FLOW}:make_flow({str(in_dir)!r}, {str(out_dir)!r})"
    with log.open("a") as sink:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.run",
                import_str,
                "-w",
                str(workers),
                "-r",
                str(store),
                "-s",
                "0.05",
                "-q",
            ],
            env=_env(),
            stdout=sink,
            stderr=sink,
        )


def _workers_of(process: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _chaos(tmp_path: Path, kills: int, lines: int, seed: int) -> None:
    rng = random.Random(seed)
    in_dir, out_dir, store = tmp_path / "in", tmp_path / "out", tmp_path / "store"
    out_dir.mkdir()
    init_db_dir(store)
    items = _write_input(in_dir, partitions=4, lines=lines, seed=seed)
    log = tmp_path / "runs.log"
    starts = 0
    killed = 0
    while True:
        workers = rng.choice([2, 3])
        process = _start(in_dir, out_dir, store, workers, log)
        starts += 1
        if killed >= kills:
            assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
            break
        deadline = time.monotonic() + 60
        while len(_workers_of(process)) < workers and process.poll() is None:
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.4))  # a random moment of the run, not ordering
        if process.poll() is not None:
            assert process.returncode == 0, log.read_text()[-3000:]
            break  # finished before the kill: the input is done
        victims = [psutil.Process(process.pid), *_workers_of(process)]
        victim = rng.choice(victims)
        try:
            victim.send_signal(signal.SIGKILL)
            killed += 1
        except psutil.NoSuchProcess:
            pass
        if victim.pid == process.pid:
            process.wait(timeout=30)
            _, alive = psutil.wait_procs(victims[1:], timeout=5)
            assert alive == [], "workers outlived their killed supervisor"
        else:
            assert process.wait(timeout=30) != 0
    assert killed >= kills, f"the input ended after {killed} kills; make it longer"
    _check_outputs(items, out_dir)
    _check_store(store, items, starts)


def _check_outputs(items: list[tuple[int, int, str]], out_dir: Path) -> None:
    produced: dict[tuple[int, int], set[tuple[str, int]]] = defaultdict(set)
    counts_seen: dict[str, set[int]] = defaultdict(set)
    for path in out_dir.iterdir():
        for line in path.read_text().splitlines():
            key, count, partition, sequence, _pid = line.split()
            produced[int(partition), int(sequence)].add((key, int(count)))
            counts_seen[key].add(int(count))
    lost = [(p, s) for p, s, _ in items if (p, s) not in produced]
    assert lost == [], f"{len(lost)} input items never reached the output"
    key_of = {(p, s): k for p, s, k in items}
    wrong_key = {ps for ps, outs in produced.items() if {k for k, _ in outs} != {key_of[ps]}}
    assert wrong_key == set()
    expected = Counter(k for _, _, k in items)
    for key, n in expected.items():
        # 1..n all seen; nothing above n: a replayed item is never counted twice into the
        # state (replays may interleave partitions differently within an epoch, so one
        # item's count may differ between executions, but never beyond the true total).
        assert counts_seen[key] == set(range(1, n + 1)), f"counts of {key} are not 1..{n}"


def _check_store(store_dir: Path, items: list[tuple[int, int, str]], starts: int) -> None:
    expected = Counter(k for _, _, k in items)
    with RecoveryStore.open(store_dir) as store:
        executions = store.executions()
        assert len(executions) == starts
        last = executions[-1]
        resume = store.next_resume_epoch()
        states = store.load_keyed_states(
            "chaos.count.stateful_batch", owned_groups(0, last.key_groups, 1), resume
        )
    assert states == dict(expected)
    report = subprocess.run(
        [sys.executable, "-m", "recovery", "inspect", "--json", str(store_dir)],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(json.loads(report.stdout)["executions"]) == starts


@pytest.mark.timeout(600)
def test_chaos_ten_kills(tmp_path: Path) -> None:
    _chaos(tmp_path, kills=10, lines=16_000, seed=11)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_chaos_soak_hundred_kills(tmp_path: Path) -> None:
    _chaos(tmp_path, kills=100, lines=40_000, seed=23)
