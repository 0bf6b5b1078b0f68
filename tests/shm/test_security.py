"""Segments on a machine shared with other users: private, unguessable, never hijacked.

Tests run as root in CI, and root bypasses permission checks: modes are asserted with
``os.stat``, and "another user cannot open it" is checked in a forked child that switched
to ``nobody`` (uid 65534), skipped with the reason when that switch is not permitted.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

import shm
from shm import _segment
from tests._users import NOBODY, as_nobody, mode, needs_root, open_attempts, umask


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277])
def test_segments_rings_and_counters_are_owner_only_whatever_the_umask(mask: int) -> None:
    with umask(mask):
        segment = shm.Segment.create(64, tag="seg")
        ring = shm.Ring.create(4096, tag="ring")
        counters = shm.Counters.create(4, tag="counters")
    try:
        for name in (segment.name, ring.spec.segment.name, counters.spec.segment.name):
            assert mode(f"/dev/shm/{name}") == 0o600, name
    finally:
        segment.close()
        segment.unlink()
        ring.detach()
        ring.unlink()
        counters.detach()
        counters.unlink()


def test_run_ids_are_unguessable_and_names_keep_the_creator_pid_prefix() -> None:
    run_ids = {shm.new_run_id() for _ in range(1000)}
    assert len(run_ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", run_id) for run_id in run_ids)  # 128 bits
    with shm.Segment.create(8, tag="ring-0-1") as segment:
        assert segment.name.startswith(f"shmflow-{os.getpid()}-")
        pid, run_id, tag = _segment.parse_segment_name(segment.name) or (0, "", "")
        assert (pid, len(run_id), tag) == (os.getpid(), 32, "ring-0-1")


def test_a_name_taken_by_a_symlink_is_refused_and_the_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    run_id = shm.new_run_id()
    name = f"shmflow-{os.getpid()}-{run_id}-seg"
    (tmp_path / name).symlink_to(target)
    with pytest.raises(shm.ShmError, match="already exists"):
        shm.Segment.create(4096, run_id=run_id, tag="seg", directory=str(tmp_path))
    assert target.read_bytes() == b"precious"
    assert (tmp_path / name).is_symlink()


@needs_root
def test_a_name_pre_created_by_another_user_is_refused_naming_the_owner(tmp_path: Path) -> None:
    run_id = shm.new_run_id()
    squatted = tmp_path / f"shmflow-{os.getpid()}-{run_id}-seg"
    squatted.write_bytes(b"trap")
    os.chown(squatted, NOBODY, NOBODY)
    with pytest.raises(shm.ShmError, match=rf"belongs to uid {NOBODY}.*refusing to use it"):
        shm.Segment.create(4096, run_id=run_id, tag="seg", directory=str(tmp_path))
    assert squatted.read_bytes() == b"trap"  # never opened, never removed
    assert os.stat(squatted).st_uid == NOBODY


@needs_root
def test_attach_refuses_a_segment_owned_by_another_user() -> None:
    with shm.Segment.create(64, tag="seg") as segment:
        os.chown(segment.spec.path, NOBODY, NOBODY)
        with pytest.raises(shm.ShmError, match=rf"belongs to uid {NOBODY}.*refusing to attach"):
            shm.Segment.attach(segment.spec)


@needs_root
def test_another_user_cannot_open_a_segment() -> None:
    with shm.Segment.create(64, tag="seg") as segment:
        assert as_nobody(lambda: open_attempts(segment.spec.path)) == "EACCES EACCES"


@needs_root
def test_cleanup_stale_leaves_another_users_segments_alone() -> None:
    # Under /tmp, not tmp_path: the child must be able to reach it (pytest's are 0700).
    shared = Path(tempfile.mkdtemp(prefix="shmflow-test-shared-"))
    try:
        os.chmod(shared, 0o1777)  # like /dev/shm: everyone may create, only owners remove
        stale = shared / "shmflow-999999999-abc-ring"  # its creator (no such pid) is gone
        os.close(os.open(stale, os.O_CREAT | os.O_WRONLY, 0o600))
        assert as_nobody(lambda: repr(shm.cleanup_stale(directory=str(shared)))) == "[]"
        assert stale.exists()
        assert shm.cleanup_stale(directory=str(shared)) == [stale.name]  # root sweeps it
    finally:
        shutil.rmtree(shared)
