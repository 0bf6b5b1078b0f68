"""Stable key hashing: state keys to key groups, key groups to workers.

Python's ``hash()`` of a str differs between processes, so routing and snapshot
placement use a hash of the key's UTF-8 bytes instead: the same key lands in the same
key group in every process, execution and Python version.

The hash is CRC-32 followed by MurmurHash3's 32-bit finaliser (:data:`DEFAULT_KEY_HASH`).
CRC-32 alone is linear, so keys that differ in a character or two (``/p1`` ... ``/p199``,
``sensor0`` ... ``sensor99``) share hash bits, and the top bits of the group, which pick
the worker, split them unevenly: 200 such paths went 130/70 onto 2 workers. The
finaliser mixes every bit into every other. Stores written before it was added keep
plain CRC-32 (:data:`LEGACY_KEY_HASH`; the store records which hash it uses), so their
state stays where their keys route.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

__all__ = [
    "DEFAULT_KEY_GROUPS",
    "DEFAULT_KEY_HASH",
    "KEY_HASHES",
    "LEGACY_KEY_HASH",
    "group_owner",
    "key_group",
    "key_hash_function",
    "owned_groups",
]

#: Number of key groups of a store; bounds how many workers a resume can spread over.
DEFAULT_KEY_GROUPS = 1024

#: The key hash of new stores and of runs without recovery.
DEFAULT_KEY_HASH = "crc32-fmix32"
#: The key hash of stores that record none (written before the finaliser was added).
LEGACY_KEY_HASH = "crc32"


def _crc32_fmix32(data: bytes) -> int:
    value = zlib.crc32(data)
    value ^= value >> 16
    value = (value * 0x85EBCA6B) & 0xFFFFFFFF
    value ^= value >> 13
    value = (value * 0xC2B2AE35) & 0xFFFFFFFF
    return value ^ (value >> 16)


#: The key hashes by name: UTF-8 bytes of a key -> unsigned 32-bit int.
KEY_HASHES: dict[str, Callable[[bytes], int]] = {
    DEFAULT_KEY_HASH: _crc32_fmix32,
    LEGACY_KEY_HASH: zlib.crc32,
}


def key_hash_function(name: str) -> Callable[[bytes], int]:
    """The key hash called ``name`` (one of :data:`KEY_HASHES`)."""
    try:
        return KEY_HASHES[name]
    except KeyError:
        known = ", ".join(sorted(KEY_HASHES))
        msg = f"unknown key hash {name!r}; this version knows {known}: upgrade shmflow"
        raise ValueError(msg) from None


def key_group(
    key: str, group_count: int = DEFAULT_KEY_GROUPS, key_hash: str = DEFAULT_KEY_HASH
) -> int:
    """The key group of ``key`` (stable across processes and runs).

    >>> key_group("user-17", 1024)
    306
    >>> key_group("user-17", 1024, LEGACY_KEY_HASH)
    185
    """
    return key_hash_function(key_hash)(key.encode("utf-8", "surrogatepass")) % group_count


def group_owner(group: int, group_count: int, worker_count: int) -> int:
    """The worker owning ``group``: workers own contiguous, balanced ranges of groups.

    >>> [group_owner(g, 8, 3) for g in range(8)]
    [0, 0, 0, 1, 1, 1, 2, 2]
    """
    return group * worker_count // group_count


def owned_groups(worker_index: int, group_count: int, worker_count: int) -> range:
    """The contiguous range of key groups ``worker_index`` owns.

    >>> owned_groups(1, 8, 3)
    range(3, 6)
    """
    start = -(-worker_index * group_count // worker_count)
    end = -(-(worker_index + 1) * group_count // worker_count)
    return range(start, end)
