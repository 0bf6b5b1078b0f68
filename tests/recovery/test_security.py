"""A store on a machine shared with other users: its directory 0700, its files 0600.

Modes are asserted with ``os.stat`` (root, as in CI, bypasses them); that another user
really cannot read them is checked in a forked child running as ``nobody``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from recovery import ExecutionLock, RecoveryError, RecoveryStore, init_db_dir
from tests._users import as_nobody, mode, needs_root, open_attempts, umask

STORE_FILES = ("data.mdb", "lock.mdb", "execution.lock")


def _use(store_dir: Path) -> None:
    """Open the store, take its lock and commit once: every store file exists after."""
    with RecoveryStore.open(store_dir) as store, store.lock_for_execution():
        execution = store.begin_execution("flow", "fp", worker_count=1)
        store.epoch_writer(execution.execution_id, 0).commit_epoch(2, [("f.s", "k", 1, "v")])


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277])
def test_a_new_store_is_private_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    store_dir = tmp_path / "parent" / "store"
    with umask(mask):
        init_db_dir(store_dir)
        _use(store_dir)
    assert mode(store_dir) == 0o700
    assert {name: mode(store_dir / name) for name in STORE_FILES} == dict.fromkeys(
        STORE_FILES, 0o600
    )


def test_a_directory_the_user_made_keeps_its_mode_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store_dir = tmp_path / "mine"
    store_dir.mkdir()
    os.chmod(store_dir, 0o755)
    with caplog.at_level(logging.WARNING, logger="recovery"):
        init_db_dir(store_dir)
        _use(store_dir)
    assert mode(store_dir) == 0o755  # the user's choice: never chmod-ed
    assert all(mode(store_dir / name) == 0o600 for name in STORE_FILES)
    warnings = [r.getMessage() for r in caplog.records if r.name == "recovery"]
    assert len(warnings) == 1, warnings  # once per process and directory
    assert "has mode 0755: other users can see or enter it" in warnings[0]
    assert f"chmod 700 {store_dir}" in warnings[0]


def test_a_group_writable_directory_warns_that_others_can_replace_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store_dir = tmp_path / "shared"
    store_dir.mkdir()
    os.chmod(store_dir, 0o775)
    with caplog.at_level(logging.WARNING, logger="recovery"):
        init_db_dir(store_dir)
    assert any("can create and replace files in it" in r.getMessage() for r in caplog.records)


def test_a_private_directory_gets_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="recovery"):
        init_db_dir(tmp_path / "store")
        _use(tmp_path / "store")
    assert not [r for r in caplog.records if r.name == "recovery"]


def test_files_of_an_older_store_are_tightened_on_open(tmp_path: Path) -> None:
    store_dir = tmp_path / "old"
    init_db_dir(store_dir)
    _use(store_dir)
    os.chmod(store_dir, 0o700)
    for name in STORE_FILES:  # what shmflow before 0600 files left behind
        os.chmod(store_dir / name, 0o644)
    with RecoveryStore.open(store_dir):
        pass
    assert {name: mode(store_dir / name) for name in STORE_FILES} == dict.fromkeys(
        STORE_FILES, 0o600
    )


def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    init_db_dir(store_dir)
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (store_dir / "execution.lock").symlink_to(target)
    with pytest.raises(RecoveryError, match=r"execution\.lock is a symbolic link"):
        ExecutionLock.acquire(store_dir)
    assert target.read_text() == "keep"


@needs_root
def test_another_user_can_neither_enter_the_store_nor_open_its_files() -> None:
    # Under /tmp, not tmp_path: pytest's directories are 0700 themselves, which would
    # hide the store's own protection.
    parent = Path(tempfile.mkdtemp(prefix="shmflow-test-store-"))
    try:
        os.chmod(parent, 0o755)
        store_dir = parent / "store"
        init_db_dir(store_dir)
        _use(store_dir)
        assert as_nobody(lambda: open_attempts(store_dir / "data.mdb")) == "EACCES EACCES"
        os.chmod(store_dir, 0o755)  # even with the directory open, the files are private
        for name in STORE_FILES:
            assert as_nobody(lambda n=name: open_attempts(store_dir / n)) == "EACCES EACCES"
    finally:
        shutil.rmtree(parent)
