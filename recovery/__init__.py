"""Recovery for shmflow: the LMDB snapshot store, resume calculation and GC.

This package knows nothing of ``shm`` or ``engine`` and never imports them.
"""

from recovery._keys import DEFAULT_KEY_GROUPS, group_owner, key_group, owned_groups

__all__ = ["DEFAULT_KEY_GROUPS", "group_owner", "key_group", "owned_groups"]
