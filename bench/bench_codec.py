"""Exchange encodings for batches of plain values: pickle protocol 5 vs marshal.

What a batch costs to cross a ring is mostly its encoding: ``dumps`` on the sender and
``loads`` on the receiver. This measures both for batches of 1,000 items of the shapes
that cross workers in real jobs, with pickle protocol 5 (what the rings use) and
:mod:`marshal` (the fastest serializer in the standard library, which cannot encode
datetimes). marshal also writes any buffer-protocol object (numpy arrays, bytearray,
memoryview) as ``bytes``, so a ring could only use it after checking every value's
type; the ``marshal + check`` column includes that check (one C-level pass over the
item and the tuple members' types).

    python -m bench.bench_codec             # table, medians of 7 rounds
    python -m pytest bench/bench_codec.py   # pytest-benchmark
"""

from __future__ import annotations

import marshal
import pickle
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import pytest

BATCH = 1_000
_SAFE = frozenset({str, int, float, bytes, bool, type(None)})


def batches() -> dict[str, list[Any]]:
    rng = random.Random(3)
    words = [f"word{i}" for i in range(10_000)]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "str": [rng.choice(words) for _ in range(BATCH)],
        "int": [rng.randrange(10**6) for _ in range(BATCH)],
        "(str, int)": [(rng.choice(words), rng.randrange(1000)) for _ in range(BATCH)],
        "(str, float)": [(rng.choice(words), rng.random()) for _ in range(BATCH)],
        "(str, (int, int, float))": [
            (rng.choice(words), (i, rng.randrange(9), rng.random())) for i in range(BATCH)
        ],
        "(str, (datetime, int))": [
            (rng.choice(words), (t0 + timedelta(milliseconds=i), i)) for i in range(BATCH)
        ],
    }


def pickle_round_trip(batch: list[Any]) -> list[Any]:
    return pickle.loads(pickle.dumps(batch, 5))


def marshal_round_trip(batch: list[Any]) -> list[Any]:
    return marshal.loads(marshal.dumps(batch, 4))


def _marshal_safe(batch: list[Any]) -> bool:
    types = set(map(type, batch))
    if types <= _SAFE:
        return True
    if types != {tuple}:
        return False
    inner = set(map(type, chain.from_iterable(batch)))
    if inner <= _SAFE:
        return True
    if not inner <= _SAFE | {tuple}:
        return False
    nested = (v for item in batch for v in item if type(v) is tuple)
    return set(map(type, chain.from_iterable(nested))) <= _SAFE


def checked_marshal_round_trip(batch: list[Any]) -> list[Any]:
    if _marshal_safe(batch):
        return marshal.loads(marshal.dumps(batch, 4))
    return pickle.loads(pickle.dumps(batch, 5))


CODECS: dict[str, Callable[[list[Any]], list[Any]]] = {
    "pickle 5": pickle_round_trip,
    "marshal": marshal_round_trip,
    "marshal + check": checked_marshal_round_trip,
}


def _time_us(fn: Callable[[list[Any]], Any], batch: list[Any], rounds: int = 7) -> float | None:
    try:
        fn(batch)
    except ValueError:  # marshal: unmarshallable object
        return None
    samples = []
    for _ in range(rounds):
        count = 200
        started = time.perf_counter()
        for _ in range(count):
            fn(batch)
        samples.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(samples)


def table() -> str:
    lines = [
        "| batch of 1,000 | pickle 5 us | marshal us | marshal + check us | best vs pickle |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, batch in batches().items():
        times = {codec: _time_us(fn, batch) for codec, fn in CODECS.items()}
        base = times["pickle 5"]
        assert base is not None
        checked = times["marshal + check"]
        cells = [f"{t:.0f}" if t is not None else "cannot" for t in times.values()]
        gain = f"{base / checked:.2f}x" if checked is not None else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {gain} |")
    return "\n".join(lines)


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("shape", sorted(batches()))
def test_codec_round_trip(benchmark: Any, codec: str, shape: str) -> None:
    batch = batches()[shape]
    fn = CODECS[codec]
    try:
        fn(batch)
    except ValueError:
        pytest.skip(f"{codec} cannot encode {shape}")
    assert benchmark(fn, batch) == batch


if __name__ == "__main__":
    print(table())
    sys.exit(0)
