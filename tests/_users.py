"""Acting as another local user in tests (security checks of shm and recovery).

Tests run as root in CI, and root bypasses permission checks, so "another user cannot
open it" runs in a forked child that switched to ``nobody`` (uid 65534). A forked child,
not a new interpreter: ``nobody`` may lack access to the venv's files.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

#: uid and gid of ``nobody``.
NOBODY = 65534
CHILD_TIMEOUT_S = 30.0
_SWITCH_FAILED = "cannot switch user: "

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to create files owned by another user (chown/setuid)"
)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block with the process umask set to ``mask``."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: str | Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(os.stat(path).st_mode)


def as_nobody(action: Callable[[], str]) -> str:
    """Run ``action`` in a forked child as uid/gid 65534 without groups; return its text.

    Skips the test, with the reason, when the child may not switch user.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: switch user, act, report, leave without any cleanup
        status = 1
        try:
            os.close(read_end)
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            except OSError as error:
                text = f"{_SWITCH_FAILED}{error}"
            else:
                text, status = action(), 0
        except BaseException as error:
            text = f"child failed: {type(error).__name__}: {error}"
        os.write(write_end, text.encode())
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        text = report.read().decode()  # EOF once the child exits
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the child as uid {NOBODY} hung")
        time.sleep(0.01)
    if text.startswith(_SWITCH_FAILED):
        pytest.skip(f"cannot act as uid {NOBODY}: {text}")
    assert os.waitstatus_to_exitcode(waited[1]) == 0, text
    return text


def open_attempts(path: str | Path) -> str:
    """Try to open ``path`` read-only, then read-write: each outcome's errno name."""
    outcomes = []
    for flags in (os.O_RDONLY, os.O_RDWR):
        try:
            os.close(os.open(path, flags))
        except OSError as error:
            outcomes.append(errno.errorcode.get(error.errno or 0, str(error)))
        else:
            outcomes.append("opened")
    return " ".join(outcomes)
