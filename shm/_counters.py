"""Single-writer int64 counters in shared memory.

A :class:`Counters` block is ``n_slots`` int64 values in one segment (worker frontiers,
heartbeats, per-step item counts). Rule: **every slot has exactly one writer process**;
anyone may read any slot.

Why no cross-process read-modify-write (no atomic add, no lock) is ever needed: a slot's
only writer is also the only one who computes its next value, so "increment" is the
writer reading its own last value and storing the new one, which no one else races with.
A store is one aligned 8-byte write, atomic on x86-64, so a reader sees either the old or
the new value, never a torn mix. Aggregates over several writers (the cluster frontier as
the min of worker frontiers, a total as the sum of per-worker counts) are folded by the
reader from the individual slots, or published into a slot the folding process owns.

Ownership: ``Counters.create`` makes and owns the segment (only the owner unlinks);
``Counters.attach(spec)`` maps it elsewhere; ``detach()`` unmaps. As a context manager it
detaches on exit and the owner also unlinks. Slots start at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from shm._segment import Segment, SegmentSpec
from shm.errors import ShmError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Counters", "CountersSpec"]

_SLOT_BYTES = 8


@dataclass(frozen=True)
class CountersSpec:
    """What another process needs to attach to a counter block. Picklable."""

    segment: SegmentSpec
    n_slots: int


class Counters:
    """``n_slots`` shared int64 slots, each written by one process. See module docstring."""

    def __init__(self, segment: Segment, n_slots: int) -> None:
        self._segment = segment
        self._n_slots = n_slots
        # A memoryview of int64 ("q"): item stores are single aligned 8-byte writes, and
        # it needs no numpy, which keeps worker start-up short (numpy is imported only
        # by :attr:`array`).
        start = Segment.data_offset
        self._slots: memoryview | None = memoryview(segment.mmap)[
            start : start + n_slots * _SLOT_BYTES
        ].cast("q")

    @classmethod
    def create(
        cls,
        n_slots: int,
        *,
        run_id: str | None = None,
        tag: str = "counters",
        directory: str | None = None,
    ) -> Counters:
        """Create a block of ``n_slots`` zeroed slots, owned by the calling process."""
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1, got {n_slots}")
        segment = Segment.create(n_slots * _SLOT_BYTES, run_id=run_id, tag=tag, directory=directory)
        return cls(segment, n_slots)

    @classmethod
    def attach(cls, spec: CountersSpec) -> Counters:
        """Map the block described by ``spec`` (from :attr:`spec` in another process)."""
        return cls(Segment.attach(spec.segment), spec.n_slots)

    @property
    def spec(self) -> CountersSpec:
        return CountersSpec(segment=self._segment.spec, n_slots=self._n_slots)

    @property
    def name(self) -> str:
        return self._segment.name

    @property
    def is_owner(self) -> bool:
        return self._segment.is_owner

    def __len__(self) -> int:
        return self._n_slots

    def _view(self) -> memoryview:
        if self._slots is None:
            raise ShmError(f"counters {self.name} are detached in this process; attach again")
        return self._slots

    def set(self, slot: int, value: int) -> None:
        """Store ``value`` in ``slot``. Only the slot's single writer may call this."""
        self._view()[slot] = value

    def increment(self, slot: int, by: int = 1) -> int:
        """Add ``by`` to ``slot`` and return the new value (single writer only)."""
        view = self._view()
        value = int(view[slot]) + by
        view[slot] = value
        return value

    def writable_slots(self, start: int, stop: int) -> memoryview:
        """A live, writable int64 view of slots ``start:stop`` for their single writer.

        For hot loops: ``view[0] = value`` is one aligned 8-byte store, cheaper than
        :meth:`set`. Only the process that owns these slots may write through it. Drop
        the view before ``detach()``; a view still alive then keeps the memory mapped
        until it is garbage-collected.
        """
        if not 0 <= start <= stop <= self._n_slots:
            raise IndexError(f"slots {start}:{stop} out of range for {self._n_slots} slots")
        return self._view()[start:stop]

    def get(self, slot: int) -> int:
        """Read one slot (any process)."""
        return int(self._view()[slot])

    def values(self) -> list[int]:
        """All slots as a list of ints, read now (no numpy: cheap in any process)."""
        return self._view().tolist()

    @property
    def array(self) -> npt.NDArray[np.int64]:
        """A read-only numpy copy of all slots, taken now."""
        import numpy as np

        snapshot = np.frombuffer(self._view().tobytes(), dtype=np.int64)
        snapshot.flags.writeable = False
        return snapshot

    def detach(self) -> None:
        """Unmap in this process. Idempotent; does not unlink."""
        if self._slots is not None:
            self._slots.release()
        self._slots = None
        self._segment.close()

    def unlink(self) -> None:
        """Remove the block's name (creator only; :class:`ShmError` otherwise)."""
        if not self._segment.is_owner:
            raise ShmError(
                f"counters {self.name} were attached, not created, by this process; "
                "only their creator unlinks them"
            )
        self._segment.unlink()

    def __enter__(self) -> Counters:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Detach; the owner also unlinks."""
        self.detach()
        if self._segment.is_owner:
            self._segment.unlink()

    def __repr__(self) -> str:
        return f"<Counters {self.name} n_slots={self._n_slots}>"

    def __reduce__(self) -> Any:
        raise TypeError(
            f"a Counters handle ({self.name}) cannot be pickled; send counters.spec to the "
            "other process and call Counters.attach(spec) there"
        )
