"""op.enrich_cached and TTLCache: cache hits, TTL expiry with an injected clock, errors."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.operators._enrich import _EnrichBatch
from engine.testing import TestingSink, TestingSource, TimeTestingGetter

EntryPoint = Callable[..., None]

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class _CountingGetter:
    """``getter(k)`` returning ``"k#n"`` for its n-th call: shows when a value was fetched.

    Picklable, so worker processes get their own copy (items stay on one worker).
    """

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, key: str) -> str:
        self.calls += 1
        return f"{key}#{self.calls}"


class _MinuteClock:
    """A ``now_getter`` that moves one minute forward on every call (once per batch)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> datetime:
        now = T0 + self.calls * MINUTE
        self.calls += 1
        return now


def _lookup(cache: op.TTLCache[str, str], item: str) -> tuple[str, str]:
    return item, cache.get(item)


# -- TTLCache ----------------------------------------------------------------------------


def test_cache_fetches_once_until_the_ttl_has_passed() -> None:
    clock = TimeTestingGetter(T0)
    getter = _CountingGetter()
    cache = op.TTLCache(getter, clock.get, ttl=MINUTE)
    assert cache.get("a") == "a#1"
    clock.advance(MINUTE)
    assert cache.get("a") == "a#1"  # exactly ttl old: still fresh
    assert cache.get("b") == "b#2"
    clock.advance(timedelta(microseconds=1))
    assert cache.get("a") == "a#3"
    assert cache.get("b") == "b#2"


def test_cache_remove_forces_a_fetch() -> None:
    getter = _CountingGetter()
    cache = op.TTLCache(getter, TimeTestingGetter(T0).get, ttl=timedelta.max)
    cache.get("a")
    cache.remove("a")
    assert cache.get("a") == "a#2"
    cache.remove("a")
    with pytest.raises(KeyError):
        cache.remove("a")


def test_cache_does_not_store_failed_fetches() -> None:
    def flaky(key: str) -> str:
        raise ConnectionError(key)

    cache: op.TTLCache[str, str] = op.TTLCache(flaky, TimeTestingGetter(T0).get, MINUTE)
    with pytest.raises(ConnectionError):
        cache.get("a")
    assert cache._cache == {}


# -- enrich_cached -----------------------------------------------------------------------


def _run_enrich(
    entry_point: EntryPoint, items: list[Any], ttl: timedelta = timedelta.max, **kwargs: Any
) -> list[Any]:
    flow = Dataflow("enrich_test")
    inp = op.input("inp", flow, TestingSource(items))
    out: list[Any] = []
    enriched = op.enrich_cached("enrich", inp, _CountingGetter(), _lookup, ttl, **kwargs)
    op.output("out", enriched, TestingSink(out))
    entry_point(flow, epoch_interval=timedelta(0))
    return out


def test_values_are_fetched_once_per_key(entry_point: EntryPoint) -> None:
    out = _run_enrich(entry_point, ["a", "b", "a", "c", "a"])
    assert out == [("a", "a#1"), ("b", "b#2"), ("a", "a#1"), ("c", "c#3"), ("a", "a#1")]


def test_values_older_than_ttl_are_fetched_again(entry_point: EntryPoint) -> None:
    # One item per batch, one minute per batch: "a" is fetched at minutes 0 and 3.
    out = _run_enrich(
        entry_point,
        ["a", "a", "a", "a", "a"],
        ttl=timedelta(minutes=2, seconds=30),
        _now_getter=_MinuteClock(),
    )
    assert out == [("a", "a#1"), ("a", "a#1"), ("a", "a#1"), ("a", "a#2"), ("a", "a#2")]


def test_empty_input_calls_nothing(entry_point: EntryPoint) -> None:
    assert _run_enrich(entry_point, []) == []


@pytest.mark.parametrize("where", ["getter", "mapper"])
def test_user_errors_name_the_step(entry_point: EntryPoint, where: str) -> None:
    def getter(key: str) -> str:
        if where == "getter":
            raise LookupError(f"no {key}")
        return key

    def mapper(cache: op.TTLCache[str, str], item: str) -> str:
        value = cache.get(item)
        if where == "mapper":
            raise ZeroDivisionError(value)
        return value

    flow = Dataflow("enrich_fail")
    inp = op.input("inp", flow, TestingSource(["x"]))
    op.output("out", op.enrich_cached("enrich", inp, getter, mapper), TestingSink([]))
    with pytest.raises(EngineRuntimeError, match=r"enrich_fail\.enrich") as info:
        entry_point(flow, epoch_interval=timedelta(0))
    expected = LookupError if where == "getter" else ZeroDivisionError
    assert isinstance(info.value.__cause__, expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"getter": "not callable"}, "getter must be callable"),
        ({"mapper": None}, "mapper must be callable"),
        ({"ttl": 60}, "ttl must be a timedelta"),
    ],
)
def test_bad_arguments_are_type_errors(kwargs: dict[str, Any], match: str) -> None:
    flow = Dataflow("enrich_args")
    inp = op.input("inp", flow, TestingSource(["x"]))
    args: dict[str, Any] = {"getter": str.upper, "mapper": _lookup, **kwargs}
    with pytest.raises(TypeError, match=match):
        op.enrich_cached("enrich", inp, **args)


def test_cache_is_not_shipped_to_workers() -> None:
    mapper = _EnrichBatch(_CountingGetter(), _lookup, timedelta.max, _MinuteClock())
    assert mapper(["a", "b"]) == [("a", "a#1"), ("b", "b#2")]
    shipped = pickle.loads(pickle.dumps(mapper))
    assert shipped.cache._cache == {}
    assert shipped(["a"]) == [("a", "a#3")]  # the getter's own state did travel
