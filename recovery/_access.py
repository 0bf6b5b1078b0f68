"""Who may read a store: its directory and files are private to the user who made them.

Snapshots hold whatever the flow's state holds, so a store is readable and writable by
its owner only, whatever the umask:

* a store directory this package creates gets mode 0700 (``os.mkdir`` + ``chmod``);
  missing parents are created with the default mode, as ``mkdir -p -m 700`` does;
* the files it creates in it (LMDB's ``data.mdb`` and ``lock.mdb``, the
  ``execution.lock``) get mode 0600; opening a store made by an older shmflow (0644
  files) tightens those files, if this user owns them;
* a directory the user made (or an older shmflow made) is never chmod-ed: its mode is
  the user's choice. If group or other users can enter it, a warning is logged (logger
  ``recovery``) once per process, saying how to fix it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "STORE_FILE_NAMES",
    "make_private_dir",
    "tighten_store_files",
    "warn_if_shared",
]

#: Mode of every file the store creates.
FILE_MODE = 0o600
#: Mode of a store directory the store creates.
DIR_MODE = 0o700
#: The files of a store directory that this package (or LMDB for it) creates.
STORE_FILE_NAMES = ("data.mdb", "lock.mdb", "execution.lock")

_warned: set[str] = set()


def make_private_dir(path: Path) -> bool:
    """Create ``path`` with mode 0700 (parents as needed); False if it existed already."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return False
    os.chmod(path, DIR_MODE)  # mkdir's mode was masked by the umask
    return True


def tighten_store_files(path: Path) -> None:
    """Give the store files in ``path`` that this user owns mode 0600 (no-op if they have it)."""
    euid = os.geteuid()
    for name in STORE_FILE_NAMES:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            info = os.lstat(path / name)
            if (
                stat.S_ISREG(info.st_mode)
                and info.st_uid == euid
                and stat.S_IMODE(info.st_mode) != FILE_MODE
            ):
                os.chmod(path / name, FILE_MODE)


def warn_if_shared(path: Path) -> None:
    """Log a warning (once per process and path) if other users can enter ``path``."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    key = os.path.realpath(path)
    if not mode & 0o077 or key in _warned:
        return
    _warned.add(key)
    access = "create and replace files in it" if mode & 0o022 else "see or enter it"
    import logging  # here: a worker imports this module, and seldom warns

    logging.getLogger("recovery").warning(
        "recovery store directory %s has mode %04o: other users can %s. Its files are "
        "private (0600); to keep others out entirely run `chmod 700 %s` (a store "
        "directory shmflow creates gets 0700)",
        path,
        mode,
        access,
        path,
    )
