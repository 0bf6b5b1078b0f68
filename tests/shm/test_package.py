"""shm's public surface (the layering rule is checked for every package in tests/test_layers.py)."""

from __future__ import annotations

import shm


def test_public_names_are_exported() -> None:
    for name in shm.__all__:
        assert hasattr(shm, name), name
    assert {"Ring", "Counters", "Segment", "cleanup_stale", "ShmError"} <= set(shm.__all__)
