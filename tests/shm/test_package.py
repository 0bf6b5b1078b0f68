"""shm's public surface (the layering rule is checked for every package in tests/test_layers.py)."""

from __future__ import annotations

import shm


def test_public_names_are_exported() -> None:
    for name in shm.__all__:
        assert hasattr(shm, name), name
    assert {"Ring", "Counters", "Segment", "cleanup_stale", "ShmError"} <= set(shm.__all__)


def test_every_public_name_has_one_home_module() -> None:
    # The package imports a module when one of its names is first used (shm._HOMES).
    assert sorted(shm.__all__) == sorted(shm._HOMES)
