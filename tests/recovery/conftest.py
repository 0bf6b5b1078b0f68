"""Fixtures for recovery tests: an initialised store directory and an open store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recovery import RecoveryStore, init_db_dir


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """An initialised, empty recovery store directory."""
    path = tmp_path / "store"
    init_db_dir(path)
    return path


@pytest.fixture
def store(store_dir: Path) -> Iterator[RecoveryStore]:
    """The store in ``store_dir``, opened in this process and closed at teardown."""
    with RecoveryStore.open(store_dir) as opened:
        yield opened
