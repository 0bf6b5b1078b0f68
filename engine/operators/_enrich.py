"""Enriching items from a cached lookup: :func:`enrich_cached` and :class:`TTLCache`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from engine._checks import require_callable
from engine.dataflow import Stream, current_step_id, operator
from engine.operators._core import flat_map_batch

__all__ = ["TTLCache", "enrich_cached"]

X = TypeVar("X")
Y = TypeVar("Y")
DK = TypeVar("DK")
DV = TypeVar("DV")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TTLCache(Generic[DK, DV]):
    """A cache that calls ``v_getter(key)`` on a miss or when the entry is older than ``ttl``.

    ``now_getter`` is the clock entries are aged by. There is no size limit.

    >>> from engine.testing import TimeTestingGetter
    >>> clock = TimeTestingGetter(datetime(2024, 1, 1, tzinfo=UTC))
    >>> calls = []
    >>> def lookup(code):
    ...     calls.append(code)
    ...     return code.upper()
    >>> cache = TTLCache(lookup, clock.get, timedelta(seconds=10))
    >>> cache.get("eur"), cache.get("eur"), calls
    ('EUR', 'EUR', ['eur'])
    >>> clock.advance(timedelta(seconds=11))
    >>> cache.get("eur"), calls
    ('EUR', ['eur', 'eur'])
    """

    v_getter: Callable[[DK], DV]
    now_getter: Callable[[], datetime]
    ttl: timedelta
    _cache: dict[DK, tuple[datetime, DV]] = field(default_factory=dict)

    def get(self, k: DK) -> DV:
        """The value for ``k``: cached, or freshly fetched if missing or expired."""
        now = self.now_getter()
        entry = self._cache.get(k)
        if entry is not None and now - entry[0] <= self.ttl:
            return entry[1]
        value = self.v_getter(k)
        self._cache[k] = (now, value)
        return value

    def remove(self, k: DK) -> None:
        """Forget the cached value for ``k`` (``KeyError`` if there is none)."""
        del self._cache[k]


class _EnrichBatch(Generic[X, Y, DK, DV]):
    """The batch mapper of :func:`enrich_cached`, owning one worker's cache.

    The clock is read once per batch. The cache is not pickled: every worker process
    starts with an empty one instead of a copy of the caller's.
    """

    def __init__(
        self,
        getter: Callable[[DK], DV],
        mapper: Callable[[TTLCache[DK, DV], X], Y],
        ttl: timedelta,
        now_getter: Callable[[], datetime],
    ) -> None:
        self.getter = getter
        self.mapper = mapper
        self.ttl = ttl
        self.now_getter = now_getter
        self.batch_now: datetime | None = None
        self.cache = TTLCache(getter, self._batch_now, ttl)

    def _batch_now(self) -> datetime:
        assert self.batch_now is not None, "the cache is only used while mapping a batch"
        return self.batch_now

    def __call__(self, batch: list[X]) -> list[Y]:
        self.batch_now = self.now_getter()
        mapper, cache = self.mapper, self.cache
        return [mapper(cache, x) for x in batch]

    def __getstate__(self) -> dict[str, Any]:
        return {
            "getter": self.getter,
            "mapper": self.mapper,
            "ttl": self.ttl,
            "now_getter": self.now_getter,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]


@operator
def enrich_cached(
    step_id: str,
    up: Stream[X],
    getter: Callable[[DK], DV],
    mapper: Callable[[TTLCache[DK, DV], X], Y],
    ttl: timedelta = timedelta.max,
    _now_getter: Callable[[], datetime] = _utc_now,
) -> Stream[Y]:
    """Emit ``mapper(cache, item)`` for every item, ``cache`` being a :class:`TTLCache`.

    ``mapper`` looks values up with ``cache.get(k)``, which calls ``getter(k)`` on a miss
    or when the cached value is older than ``ttl``. Every worker has its own cache; items
    are not keyed and stay on their worker. The cache is not part of recovery, so values
    may differ after a resume if what ``getter`` returns changed. ``_now_getter`` is the
    clock (read once per batch), for tests.

    >>> import engine.operators as op
    >>> from engine.dataflow import Dataflow
    >>> from engine.testing import TestingSource, run_main
    >>> rates = {"eur": 1.1, "gbp": 1.3}
    >>> flow = Dataflow("enrich_eg")
    >>> orders = op.input("inp", flow, TestingSource([("eur", 10), ("gbp", 5), ("eur", 2)]))
    >>> in_usd = op.enrich_cached("usd", orders, rates.__getitem__,
    ...                           lambda cache, o: (o[0], round(o[1] * cache.get(o[0]), 2)))
    >>> _ = op.inspect("show", in_usd)
    >>> run_main(flow)
    enrich_eg.show: ('eur', 11.0)
    enrich_eg.show: ('gbp', 6.5)
    enrich_eg.show: ('eur', 2.2)
    """
    outer = current_step_id()
    for name, fn in (("getter", getter), ("mapper", mapper), ("_now_getter", _now_getter)):
        require_callable(fn, name, where=f"enrich_cached {outer!r}")
    if not isinstance(ttl, timedelta):
        msg = f"enrich_cached {outer!r}: ttl must be a timedelta; got {ttl!r}"
        raise TypeError(msg)
    return flat_map_batch("flat_map_batch", up, _EnrichBatch(getter, mapper, ttl, _now_getter))
