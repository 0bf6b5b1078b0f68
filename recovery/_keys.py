"""Stable key hashing: state keys to key groups, key groups to workers.

Python's ``hash()`` of a str differs between processes, so routing and snapshot
placement use CRC-32 of the key's UTF-8 bytes instead: the same key lands in the same
key group in every process, execution and Python version.
"""

from __future__ import annotations

import zlib

__all__ = ["DEFAULT_KEY_GROUPS", "group_owner", "key_group", "owned_groups"]

#: Number of key groups of a store; bounds how many workers a resume can spread over.
DEFAULT_KEY_GROUPS = 1024


def key_group(key: str, group_count: int = DEFAULT_KEY_GROUPS) -> int:
    """The key group of ``key`` (stable across processes and runs).

    >>> key_group("user-17", 1024)
    185
    """
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % group_count


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
