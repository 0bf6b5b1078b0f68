"""Segments: naming, create vs attach, close vs unlink, who may unlink."""

from __future__ import annotations

import os
import pickle
from typing import Any

import pytest

import shm
from shm import _segment


def test_create_attach_share_memory_and_owner_unlinks() -> None:
    run_id = shm.new_run_id()
    segment = shm.Segment.create(100, run_id=run_id, tag="a.b-c_1")
    try:
        assert segment.name == f"shmflow-{os.getpid()}-{run_id}-a.b-c_1"
        assert segment.name.startswith(shm.SEGMENT_PREFIX)
        assert os.path.getsize(f"/dev/shm/{segment.name}") == segment.data_offset + 100
        spec = pickle.loads(pickle.dumps(segment.spec))
        other = shm.Segment.attach(spec)
        assert not other.is_owner and segment.is_owner
        segment.mmap[segment.data_offset] = 42
        assert other.mmap[other.data_offset] == 42
        with pytest.raises(shm.ShmError, match="only its creator unlinks"):
            other.unlink()
        other.close()
        other.close()
        assert other.closed
        with pytest.raises(shm.ShmError, match="closed"):
            other.mmap  # noqa: B018
    finally:
        segment.close()
        segment.unlink()
        segment.unlink()
    assert not os.path.exists(f"/dev/shm/{segment.name}")
    with pytest.raises(shm.ShmError, match="does not exist"):
        shm.Segment.attach(spec)


def test_context_manager_closes_and_owner_unlinks() -> None:
    with shm.Segment.create(8, tag="ctx") as segment:
        path = f"/dev/shm/{segment.name}"
        assert os.path.exists(path)
    assert segment.closed and not os.path.exists(path)


def test_duplicate_name_is_refused() -> None:
    run_id = shm.new_run_id()
    with (
        shm.Segment.create(8, run_id=run_id, tag="dup"),
        pytest.raises(shm.ShmError, match="distinct tag"),
    ):
        shm.Segment.create(8, run_id=run_id, tag="dup")


@pytest.mark.parametrize(("run_id", "tag"), [("has-dash", "t"), ("", "t"), ("ok", "a/b")])
def test_bad_names_are_refused(run_id: str, tag: str) -> None:
    with pytest.raises(ValueError):
        shm.Segment.create(8, run_id=run_id, tag=tag)


def test_default_run_ids_differ_so_default_tags_never_collide() -> None:
    with shm.Ring.create(64) as first, shm.Ring.create(64) as second:
        assert first.name != second.name


def test_directory_from_parameter_or_environment(tmp_path: Any, monkeypatch: Any) -> None:
    with shm.Segment.create(16, tag="param", directory=str(tmp_path)) as segment:
        assert (tmp_path / segment.name).exists()
    monkeypatch.setenv(shm.SEGMENT_DIR_ENV, str(tmp_path))
    with shm.Ring.create(64, tag="env") as ring:
        assert (tmp_path / ring.name).exists()
        assert ring.spec.segment.directory == str(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_attach_rejects_a_mismatched_spec() -> None:
    with shm.Segment.create(32, tag="mismatch") as segment:
        wrong = shm.SegmentSpec(segment.name, 64, segment.spec.directory)
        with pytest.raises(shm.ShmError, match="does not belong"):
            shm.Segment.attach(wrong)


def test_ring_attach_refuses_a_segment_that_is_not_a_ring() -> None:
    with shm.Counters.create(40, tag="notring") as counters:
        spec = shm.RingSpec(segment=counters.spec.segment, capacity=64)
        with pytest.raises(shm.ShmError, match="does not hold a ring"):
            shm.Ring.attach(spec)


def test_parse_segment_name() -> None:
    assert _segment.parse_segment_name("shmflow-12-ab12-ring-0-1") == (12, "ab12", "ring-0-1")
    assert _segment.parse_segment_name("other-12-ab-x") is None


def test_detached_ring_fails_clearly_and_detach_is_idempotent() -> None:
    ring = shm.Ring.create(64, tag="detached")
    try:
        ring.detach()
        ring.detach()
        with pytest.raises(shm.ShmError, match="detached"):
            ring.try_put(b"x")
        with pytest.raises(shm.ShmError, match="detached"):
            ring.statistics()
    finally:
        ring.unlink()


def test_only_the_creator_unlinks_a_ring() -> None:
    with shm.Ring.create(64, tag="owner") as ring:
        attached = shm.Ring.attach(ring.spec)
        with pytest.raises(shm.ShmError, match="only its creator"):
            attached.unlink()
        attached.detach()


def test_handles_refuse_pickling_and_point_to_the_spec() -> None:
    with shm.Ring.create(64, tag="nopickle") as ring, shm.Counters.create(1) as counters:
        for handle in (ring, counters):
            with pytest.raises(TypeError, match=r"\.spec"):
                pickle.dumps(handle)
