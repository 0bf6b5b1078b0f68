"""Byte-compile the project before measuring, as installing it would.

``pip install`` (not ``-e``) writes every module's ``.pyc`` at install time; Bytewax,
Pathway and numpy here were installed that way. An editable checkout gets its ``.pyc``
files written on first import, unless ``PYTHONDONTWRITEBYTECODE`` is set (as it is on
this machine): then every worker process compiles the engine from source again, about
0.1 s per worker per run, which no installed engine pays. The benchmark scripts call
:func:`compile_project` first and print what it did.
"""

from __future__ import annotations

import compileall
import sys
from pathlib import Path

__all__ = ["compile_project"]

_ROOT = Path(__file__).resolve().parents[1]
_PACKAGES = ("engine", "shm", "recovery", "bench")


def compile_project() -> str:
    """Write the ``.pyc`` files of the project's packages if the interpreter would not;
    return a line saying which happened."""
    if not sys.dont_write_bytecode:
        return "Bytecode: written on import as usual."
    for package in _PACKAGES:
        compileall.compile_dir(_ROOT / package, quiet=1)
    return (
        "Bytecode: PYTHONDONTWRITEBYTECODE is set, so the project's modules were "
        "byte-compiled beforehand, as `pip install` does for an installed package."
    )
