"""``BackgroundGc``: run :meth:`RecoveryStore.gc` in a thread, one GC at a time.

A supervisor's wait loop must keep folding frontiers and watching its workers while a
GC works through millions of keys, so the GC runs in a daemon thread of the same
process, on the caller's open store (one LMDB environment per process; the thread
uses its own transactions).

Ownership: the caller owns the store and keeps it open until :meth:`BackgroundGc.close`
has returned; ``close`` asks a running GC to stop after its current write
transaction (``RecoveryStore.gc(cancel=...)``) and waits for it, bounded. Errors are
never swallowed: a GC that failed raises its exception from the next
:meth:`BackgroundGc.start` or from :meth:`BackgroundGc.close`, traceback included.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from recovery._store import GC_CHUNK_KEYS, GcResult, RecoveryStore
from recovery.errors import RecoveryError

__all__ = ["BackgroundGc"]


class BackgroundGc:
    """Starts GCs of ``store`` in a daemon thread, never two at once.

    >>> import tempfile
    >>> from recovery._store import init_db_dir
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     init_db_dir(tmp)
    ...     with RecoveryStore.open(tmp) as store:
    ...         background = BackgroundGc(store)
    ...         background.start()
    ...         background.close(timeout=10.0)
    ...         background.last_result.deleted_snapshots
    True
    0
    """

    def __init__(
        self, store: RecoveryStore, backup_epochs: int = 0, *, chunk_keys: int = GC_CHUNK_KEYS
    ) -> None:
        """GCs of ``store`` keeping ``backup_epochs`` epochs (see ``RecoveryStore.gc``)."""
        self.store = store
        self.backup_epochs = backup_epochs
        self.chunk_keys = chunk_keys
        #: What the last GC that finished did (None until one has).
        self.last_result: GcResult | None = None
        #: GCs that finished (with or without an error).
        self.finished = 0
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        """Whether a GC is running now."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, before: Callable[[], object] | None = None) -> bool:
        """Start a GC unless one is running; return whether one was started.

        ``before`` runs first, in the GC's thread (store work that should not hold up
        the caller either); its exception is reported like the GC's. Raises the
        exception of the previous GC if that one failed (so a loop calling this
        regularly fails with it).
        """
        self.raise_error()
        if self.running or self._cancel.is_set():
            return False
        self._thread = threading.Thread(
            target=self._run, args=(before,), name="shmflow-gc", daemon=True
        )
        self._thread.start()
        return True

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a running GC to finish; whether none runs now."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def raise_error(self) -> None:
        """Raise (once) the exception of a GC that failed, if one did."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self, timeout: float, *, failing: BaseException | None = None) -> None:
        """Stop: let a running GC finish its transaction, wait up to ``timeout`` s for it.

        Raises a GC's exception, or :class:`RecoveryError` if the GC did not stop in
        time. When the caller is already failing with ``failing``, the GC's problem is
        added to it as a note instead, so the caller's own error is the one raised.
        No GC starts after this.
        """
        self._cancel.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        try:
            if thread is not None and thread.is_alive():
                msg = (
                    f"the background GC of recovery store {self.store.path} did not stop "
                    f"within {timeout:g} s; the store is consistent (GC commits whole "
                    "transactions), run `python -m recovery gc DIR` later to finish it"
                )
                raise RecoveryError(msg)
            self.raise_error()
        except Exception as error:
            if failing is None:
                raise
            failing.add_note(f"and the background GC failed: {type(error).__name__}: {error}")

    def _run(self, before: Callable[[], object] | None) -> None:
        try:
            if before is not None:
                before()
            result = self.store.gc(
                backup_epochs=self.backup_epochs, chunk_keys=self.chunk_keys, cancel=self._cancel
            )
        except BaseException as error:  # reported by start() or close()
            self._error = error
        else:
            self.last_result = result
        finally:
            self.finished += 1
