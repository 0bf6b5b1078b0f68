"""Test-wide fixtures: every test must leave no child process and no shm segment behind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
import pytest

SHM_DIR = "/dev/shm"
#: Every segment shmflow creates has a name starting with this (see shm/_segment.py).
OUR_SEGMENT_PREFIX = "shmflow-"
#: How long teardown waits for children and segments of a finished test to go away.
CLEANUP_GRACE_S = 5.0


def _creator_pid(name: str) -> int | None:
    """Segment names are ``shmflow-<creator pid>-<run id>-<tag>``."""
    try:
        return int(name[len(OUR_SEGMENT_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return None


def _our_segments() -> set[str]:
    """Segments created by this test process, its children, or processes now dead.

    Segments of other live processes (another test run, a benchmark) are not ours.
    """
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(OUR_SEGMENT_PREFIX)]
    except FileNotFoundError:
        return set()
    mine = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
    return {
        n
        for n in names
        if (pid := _creator_pid(n)) is None or pid in mine or not psutil.pid_exists(pid)
    }


def _is_infrastructure(proc: psutil.Process) -> bool:
    """multiprocessing's resource tracker outlives single tests by design."""
    try:
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return True
    return "resource_tracker" in cmdline or "forkserver" in cmdline


def _live_children(ignore: set[int]) -> list[psutil.Process]:
    alive = []
    for child in psutil.Process().children(recursive=True):
        if child.pid in ignore or _is_infrastructure(child):
            continue
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            continue
    return alive


@pytest.fixture(autouse=True)
def no_leaked_processes_or_segments() -> Iterator[None]:
    """Fail the test if it leaves a child process or a /dev/shm segment of ours behind.

    Waits a bounded grace period for normal shutdown before declaring a leak, then
    kills/unlinks what is left so one leaking test does not cascade into others.
    """
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    segments_before = _our_segments()
    yield
    deadline = time.monotonic() + CLEANUP_GRACE_S
    while True:
        leaked_children = _live_children(children_before)
        leaked_segments = _our_segments() - segments_before
        if (not leaked_children and not leaked_segments) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for child in leaked_children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    for name in leaked_segments:
        try:
            os.unlink(os.path.join(SHM_DIR, name))
        except FileNotFoundError:
            pass
    problems = []
    if leaked_children:
        problems.append(
            "leaked child processes: "
            + ", ".join(
                f"{c.pid} {c.info.get('cmdline') if hasattr(c, 'info') else ''}".strip()
                for c in leaked_children
            )
        )
    if leaked_segments:
        problems.append("leaked /dev/shm segments: " + ", ".join(sorted(leaked_segments)))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
