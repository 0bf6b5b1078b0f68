"""Run recovery code in a child Python process (locks, crashes, corrupt stores)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Bound on any child run by these tests.
CHILD_TIMEOUT_S = 60.0


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``args`` in a fresh interpreter at the repo root; wait for it."""
    return run_interpreter("-c", code, *args)


def run_interpreter(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` at the repo root and wait for it (output captured as text)."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


def start_python(code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``code`` in a fresh interpreter with pipes on stdin/stdout; the caller reaps it."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
