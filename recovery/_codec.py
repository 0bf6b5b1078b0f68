"""Byte layout of the store's sub-databases, and the TOMBSTONE sentinel.

Integers are big-endian so LMDB's byte order is numeric order.

``meta``        ASCII names -> UTF-8 text (``format``, ``flow_id``, ``fingerprint``,
                ``key_groups``, ``key_hash`` (format 4; absent: ``crc32``),
                ``gc_horizon``, ``created_at``, ``state_steps``: a JSON list of the
                step ids that may hold state in ``snapshots``).
``executions``  execution id (u64) -> worker count (u32), resume epoch (u64),
                start time (f64, Unix seconds), supervisor pid (u32).
``frontiers``   execution id (u64) + worker index (u32) -> frontier (u64).
``snapshots``   step component + key group (u32) + key component + epoch (u64)
                -> value. The key without its epoch is the snapshot's *ident*.
``written``     epoch (u64) + sequence (u64) -> idents: the GC index (format 3). Every
                commit adds, per epoch it wrote, records naming the idents it wrote at
                that epoch (at most ``IDENTS_PER_RECORD`` per record, concatenated: an
                ident is self-delimiting); ``sequence`` numbers the records of one epoch
                from 0. GC visits only the records at or before its horizon and deletes
                each record it handled, so its work follows what was written since the
                last GC, not the size of the store.

A *component* is a length byte followed by the UTF-8 text when the text has at most
``INLINE_MAX`` bytes, else ``0xFF`` followed by a 20-byte BLAKE2b digest of it: any str
works as a step id or state key while the whole key stays under LMDB's 511-byte limit
(at most 1 + 200 + 4 + 1 + 200 + 8 = 414 bytes). Components are length-prefixed, so
all epochs of one (step, key) are adjacent and in ascending epoch order; a step's key
groups form one contiguous range (rescaling loads by range scan). Source and sink
partitions live in the reserved group ``PARTITION_GROUP`` after every key group.

Invariant of the GC index: every snapshot with an epoch after ``meta/gc_horizon`` is
named by a record, and no key has two snapshots at or before the newest GC horizon
unless a record (not yet handled) names the newer of them. Commits never write at or
before ``meta/gc_horizon``, which keeps it true.

A snapshot value is the pickle (protocol 5, so it starts with ``0x80``) of the state,
or empty for a TOMBSTONE. When the step id or the state key was digested, the value
starts with ``b"N"``, two u32 lengths and the full step id and key, then the pickle
(or nothing, for a tombstone): the names are never lost.
"""

from __future__ import annotations

import struct
from typing import Any

try:  # the builtin module: ``hashlib`` would also load OpenSSL (~4 ms per worker start)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2b

__all__ = [
    "FORMAT_VERSION",
    "IDENTS_PER_RECORD",
    "INDEXED_FORMAT",
    "INLINE_MAX",
    "KEY_HASH_FORMAT",
    "NAMES_TAG",
    "PARTITION_GROUP",
    "READABLE_FORMATS",
    "TOMBSTONE",
    "RecordDecodeError",
    "decode_execution",
    "decode_value",
    "encode_execution",
    "frontier_key",
    "name_component",
    "names_header",
    "parse_snapshot_key",
    "parse_written_key",
    "split_idents",
    "written_key",
]

#: Version of this layout, stored under ``meta/format``. Format 2 added
#: ``meta/state_steps``; a format-1 store is read as if every step with a snapshot were
#: recorded there, and becomes format 2 at its next execution. Format 3 added the
#: ``written`` GC index; an older shmflow would commit without indexing, so it must not
#: open such a store. A format-1 or -2 store gets its index (one full scan) at its next
#: execution or GC. Format 4 places and routes keys by ``meta/key_hash`` (recorded at the
#: first execution; see :mod:`recovery._keys`); an older shmflow would use plain CRC-32,
#: so it must not open such a store. A store of an older format that has begun an
#: execution keeps CRC-32 and its format; one that never has becomes format 4 at its first.
FORMAT_VERSION = 4
#: The first format whose stores have the ``written`` GC index.
INDEXED_FORMAT = 3
#: The first format whose stores may use another key hash than CRC-32.
KEY_HASH_FORMAT = 4
#: The formats this code opens.
READABLE_FORMATS = (1, 2, 3, 4)
#: Most idents in one ``written`` record (so GC can stop between records).
IDENTS_PER_RECORD = 1024
#: Longest step id or state key (UTF-8 bytes) stored verbatim in an LMDB key.
INLINE_MAX = 200
#: The key group under which source/sink partition states are stored.
PARTITION_GROUP = 0xFFFFFFFF
#: Text encoding of step ids and keys (the same as ``recovery._keys`` hashes).
TEXT_ENCODING = ("utf-8", "surrogatepass")

_HASHED = 0xFF
_DIGEST_SIZE = 20
#: First byte of a snapshot value that carries the full names (never a pickle's 0x80).
NAMES_TAG = b"N"
_NAMES = struct.Struct(">II")
_EXECUTION = struct.Struct(">IQdI")
_FRONTIER_KEY = struct.Struct(">QI")
_WRITTEN_KEY = struct.Struct(">QQ")


class RecordDecodeError(ValueError):
    """A stored record does not decode as this layout (reported as a corrupt store)."""


class _Tombstone:
    """The state of a key that was discarded: it has no state from that epoch on."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOMBSTONE"

    def __reduce__(self) -> str:
        return "TOMBSTONE"


#: Snapshot this for a key whose state was discarded; loading omits such keys.
TOMBSTONE: Any = _Tombstone()


def name_component(raw: bytes) -> bytes:
    """The key component of a step id or state key (see the module docstring).

    >>> name_component(b"ab")
    b'\\x02ab'
    >>> len(name_component(b"x" * 10_000))
    21
    """
    if len(raw) <= INLINE_MAX:
        return bytes((len(raw),)) + raw
    return bytes((_HASHED,)) + blake2b(raw, digest_size=_DIGEST_SIZE).digest()


def component_length(key: bytes | memoryview, offset: int) -> int:
    """Length of the component starting at ``offset`` of ``key``."""
    first = key[offset]
    return 1 + _DIGEST_SIZE if first == _HASHED else 1 + first


def is_digested(component: bytes) -> bool:
    """Whether ``component`` holds a digest rather than the text itself."""
    return component[0] == _HASHED


def component_text(component: bytes) -> str | None:
    """The text of an inline component, or None for a digested one."""
    if is_digested(component):
        return None
    return component[1:].decode(*TEXT_ENCODING)


def parse_snapshot_key(key: bytes) -> tuple[bytes, int, bytes, int]:
    """Split a snapshot key into (step component, group, key component, epoch)."""
    step_end = component_length(key, 0)
    group = int.from_bytes(key[step_end : step_end + 4], "big")
    return key[:step_end], group, key[step_end + 4 : -8], int.from_bytes(key[-8:], "big")


def names_header(step_raw: bytes, key_raw: bytes) -> bytes:
    """The value prefix carrying the full names when a component was digested."""
    return NAMES_TAG + _NAMES.pack(len(step_raw), len(key_raw)) + step_raw + key_raw


def decode_value(value: bytes) -> tuple[tuple[str, str] | None, bytes]:
    """Split a snapshot value into (full names or None, payload); empty payload = TOMBSTONE."""
    if value[:1] != NAMES_TAG:
        return None, value
    step_len, key_len = _NAMES.unpack_from(value, 1)
    start = 1 + _NAMES.size
    step = bytes(value[start : start + step_len]).decode(*TEXT_ENCODING)
    key = bytes(value[start + step_len : start + step_len + key_len]).decode(*TEXT_ENCODING)
    return (step, key), value[start + step_len + key_len :]


def encode_execution(worker_count: int, resume_epoch: int, started_at: float, pid: int) -> bytes:
    """The ``executions`` value of one execution."""
    return _EXECUTION.pack(worker_count, resume_epoch, started_at, pid)


def decode_execution(value: bytes) -> tuple[int, int, float, int]:
    """(worker count, resume epoch, start time, pid) of an ``executions`` value."""
    worker_count, resume, started_at, pid = _EXECUTION.unpack(value)
    return worker_count, resume, started_at, pid


def frontier_key(execution_id: int, worker_index: int) -> bytes:
    """The ``frontiers`` key of one worker of one execution."""
    return _FRONTIER_KEY.pack(execution_id, worker_index)


def parse_frontier_key(key: bytes) -> tuple[int, int]:
    """(execution id, worker index) of a ``frontiers`` key."""
    execution_id, worker_index = _FRONTIER_KEY.unpack(key)
    return execution_id, worker_index


def written_key(epoch: int, sequence: int) -> bytes:
    """The ``written`` key of record ``sequence`` of ``epoch``.

    >>> written_key(3, 1).hex()
    '00000000000000030000000000000001'
    """
    return _WRITTEN_KEY.pack(epoch, sequence)


def parse_written_key(key: bytes) -> tuple[int, int]:
    """(epoch, sequence) of a ``written`` key."""
    epoch, sequence = _WRITTEN_KEY.unpack(key)
    return epoch, sequence


def split_idents(value: bytes) -> list[bytes]:
    """The idents of a ``written`` record (:class:`RecordDecodeError` if they do not add up).

    >>> ident = name_component(b"step") + (7).to_bytes(4, "big") + name_component(b"key")
    >>> split_idents(ident + ident) == [ident, ident]
    True
    """
    idents: list[bytes] = []
    offset, size = 0, len(value)
    while offset < size:
        key_start = offset + component_length(value, offset) + 4
        if key_start >= size:
            break
        end = key_start + component_length(value, key_start)
        if end > size:
            break
        idents.append(bytes(value[offset:end]))
        offset = end
    if offset != size:
        msg = f"a GC index record of {size} bytes ends inside an ident at byte {offset}"
        raise RecordDecodeError(msg)
    return idents
