"""The recovery store: executions, worker frontiers and state snapshots in one LMDB store.

Who calls what:

- The **supervisor** opens the store, takes :meth:`RecoveryStore.lock_for_execution` for
  the whole execution, calls :meth:`RecoveryStore.begin_execution` before starting any
  worker (it fixes the execution id and the resume epoch), and may call
  :meth:`RecoveryStore.gc` with the cluster frontier.
- Each **worker** opens the store in its own process (a store is never inherited across
  fork/spawn, nor pickled), loads its share of state with
  :meth:`RecoveryStore.load_keyed_states` / :meth:`RecoveryStore.load_partition_states`
  and, at every epoch close, writes its snapshots and new frontier with
  :meth:`EpochWriter.commit_epoch`: one write transaction, so a frontier is durable only
  together with the state it vouches for.

Which edits of a flow may resume a store: the store records, in its meta, the ids of
the steps that may hold state (``state_steps``: those the flow declared at its last
execution, plus any step a worker wrote state for). A new execution declares its own
state-holding steps; a recorded step that is missing from them and still has a
snapshot would lose its state, so :meth:`RecoveryStore.begin_execution` refuses it
(:class:`OrphanedStateError`) unless told to drop that state. Adding steps, or
changing stateless ones, resumes; new steps start empty.

GC is incremental: every commit also writes, in its transaction, GC index records
naming the snapshots it wrote (``written``, see ``recovery/_codec.py``), and
:meth:`RecoveryStore.gc` handles only the records at or before its horizon: it visits
the keys they name or, when those are most of the store, scans the store in key order
(cheaper then). Its work follows what was written since the last GC, in write
transactions of bounded size, so a worker's commit never waits long behind it. The
same index lets :meth:`RecoveryStore.begin_execution` find an abandoned execution's
future without a scan. A store of an older format has no index: its next execution or
GC builds one in one full scan.

The byte layout is in ``recovery/_codec.py``, the resume/GC arithmetic in
``recovery/_resume.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import lmdb

from recovery._codec import (
    IDENTS_PER_RECORD,
    INDEXED_FORMAT,
    INLINE_MAX,
    KEY_HASH_FORMAT,
    NAMES_TAG,
    PARTITION_GROUP,
    TEXT_ENCODING,
    TOMBSTONE,
    component_length,
    component_text,
    decode_execution,
    decode_value,
    encode_execution,
    frontier_key,
    is_digested,
    name_component,
    names_header,
    parse_frontier_key,
    split_idents,
    written_key,
)
from recovery._config import step_id_set
from recovery._env import (
    INDEX_DATABASE,
    Environment,
    create_environment,
    open_environment,
    release_environment,
    translate_errors,
)
from recovery._keys import (
    DEFAULT_KEY_GROUPS,
    DEFAULT_KEY_HASH,
    LEGACY_KEY_HASH,
    key_hash_function,
)
from recovery._lock import ExecutionLock
from recovery._resume import FIRST_EPOCH, gc_horizon, resume_epoch
from recovery.errors import (
    FlowMismatchError,
    InconsistentPartitionsError,
    OrphanedStateError,
    RecoveryError,
    StaleExecutionError,
    UnpicklableStateError,
)

__all__ = [
    "EpochWriter",
    "Execution",
    "GcResult",
    "RecoveryStore",
    "Snapshot",
    "init_db_dir",
]

#: One snapshot handed to :meth:`EpochWriter.commit_epoch`: (step id, key, epoch, state).
Snapshot = tuple[str, str, int, Any]

_PICKLE_PROTOCOL = 5
_REPR_LIMIT = 200
#: Snapshot keys one GC write transaction reads (and so at most deletes), about 20-50 ms
#: of work here: a worker's commit waits at most that long behind GC.
GC_CHUNK_KEYS = 20_000
#: Keys whose key group an :class:`EpochWriter` remembers: a key committed again in a
#: later epoch (the usual case) skips the key hash (~0.35 us in Python). Cleared when full.
GROUP_CACHE_KEYS = 1 << 20
#: What visiting one key named by the GC index costs, in keys of a scan (measured: about
#: 1.6 us against 0.65 us here); decides between the two ways to GC.
_VISIT_COST = 2.5


class Cancel(Protocol):
    """What :meth:`RecoveryStore.gc` polls between transactions (a ``threading.Event``)."""

    def is_set(self) -> bool:
        """Whether to stop."""
        ...


def init_db_dir(db_dir: str | os.PathLike[str], count: int = 1) -> None:
    """Create and initialise a recovery store in ``db_dir`` (created if missing).

    ``count`` is kept for compatibility with Bytewax (which splits a store into
    ``count`` partition files) and is otherwise ignored: a shmflow store is one LMDB
    environment. Initialising an initialised store changes nothing.
    """
    if not isinstance(count, int) or count < 1:
        msg = f"count must be a positive int (it is otherwise ignored), got {count!r}"
        raise ValueError(msg)
    create_environment(db_dir)


@dataclass(frozen=True)
class Execution:
    """What :meth:`RecoveryStore.begin_execution` recorded for a new execution.

    ``resume_epoch`` is the first epoch the execution runs (load snapshots with epochs
    before it); ``previous_worker_count`` is None for a store's first execution;
    ``key_groups`` is the store's key-group count and ``key_hash`` the name of its key
    hash (see :mod:`recovery._keys`), both fixed by its first execution: route keys with
    ``key_group(key, key_groups, key_hash)`` so they meet their state.
    """

    execution_id: int
    resume_epoch: int
    previous_worker_count: int | None
    worker_count: int
    key_groups: int
    key_hash: str = DEFAULT_KEY_HASH


def _key_hash(recorded: bytes | None) -> str:
    """The key hash a store's meta names (none recorded: the hash before there was a choice)."""
    if recorded is None:
        return LEGACY_KEY_HASH
    name = bytes(recorded).decode()
    key_hash_function(name)  # fails for a hash this version does not know
    return name


@dataclass(frozen=True)
class GcResult:
    """What :meth:`RecoveryStore.gc` did.

    ``horizon`` is the epoch it compacted up to, ``deleted_snapshots`` how many
    snapshots it deleted and ``remaining_snapshots`` how many the store held when it
    finished (LMDB's count, not a scan: commits made meanwhile are included).

    How: ``method`` is ``"incremental"`` (visited the keys the GC index names),
    ``"scan"`` (those were a large part of the store, so it read the store in key order
    instead) or ``"build-index"`` (a store of an older format: one scan of every
    snapshot compacted it and built its index). The work: ``records_visited`` GC index
    records handled (what was committed at or before the horizon since the last GC),
    ``keys_visited`` snapshot keys read, ``transactions`` write transactions taken and
    ``longest_transaction_s`` the longest of them (a worker's commit waited at most
    that long behind this GC). ``complete`` is False when the GC was cancelled before
    it handled every record up to its horizon (the next GC goes on from there).
    """

    horizon: int
    deleted_snapshots: int
    remaining_snapshots: int
    method: str = "incremental"
    records_visited: int = 0
    keys_visited: int = 0
    transactions: int = 0
    longest_transaction_s: float = 0.0
    complete: bool = True


@dataclass
class _GcWork:
    """Counters of one GC while it runs."""

    method: str
    deleted: int = 0
    records: int = 0
    keys: int = 0
    transactions: int = 0
    longest_s: float = 0.0

    def took(self, started: float) -> None:
        """Count one write transaction begun at ``started`` (``time.perf_counter()``)."""
        self.transactions += 1
        self.longest_s = max(self.longest_s, time.perf_counter() - started)


def _cut(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


class RecoveryStore:
    """An open recovery store. Open it with :meth:`open` in every process that uses it.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     init_db_dir(tmp)
    ...     with RecoveryStore.open(tmp) as store:
    ...         execution = store.begin_execution(
    ...             "flow", "fp-1", worker_count=1, state_steps={"flow.count"}
    ...         )
    ...         writer = store.epoch_writer(execution.execution_id, worker_index=0)
    ...         writer.commit_epoch(2, [("flow.count", "apple", 1, 3)])
    ...         store.load_keyed_states("flow.count", range(execution.key_groups), 2)
    1
    {'apple': 3}
    """

    def __init__(self, handle: Environment) -> None:
        """Wrap an open environment handle; use :meth:`open` instead."""
        self._handle: Environment | None = handle
        self._step_prefixes: dict[str, tuple[bytes, bytes]] = {}

    # -- opening and closing -------------------------------------------------------

    @classmethod
    def open(cls, db_dir: str | os.PathLike[str], *, map_size: int | None = None) -> RecoveryStore:
        """Open the initialised store in ``db_dir`` in this process.

        Raises :class:`NoPartitionsError` when there is no initialised store,
        :class:`CorruptStoreError` for a truncated or garbage one. ``map_size`` (bytes)
        is for tests; the default is a large sparse map. Stores of one path opened
        in one process share one LMDB environment.
        """
        return cls(open_environment(db_dir, map_size))

    @property
    def path(self) -> Path:
        """The store directory."""
        return self._env().path

    def close(self) -> None:
        """Close this store (idempotent); the environment closes with its last user."""
        handle, self._handle = self._handle, None
        if handle is not None:
            release_environment(handle)

    def __enter__(self) -> RecoveryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __reduce__(self) -> str:
        msg = (
            "a RecoveryStore belongs to the process that opened it: pass the store path "
            "(or RecoveryConfig) and call RecoveryStore.open in the other process"
        )
        raise TypeError(msg)

    def __repr__(self) -> str:
        where = "closed" if self._handle is None else str(self._handle.path)
        return f"RecoveryStore({where})"

    def _env(self) -> Environment:
        handle = self._handle
        if handle is None:
            raise RecoveryError("the recovery store is closed; open it again")
        if handle.pid != os.getpid():
            msg = (
                f"the recovery store {handle.path} was opened in pid {handle.pid} and used "
                f"in pid {os.getpid()}: open it in each process with RecoveryStore.open"
            )
            raise RecoveryError(msg)
        return handle

    def _errors(self) -> Any:
        handle = self._env()
        return translate_errors(handle.path, handle.map_size)

    # -- supervisor side -----------------------------------------------------------

    def lock_for_execution(self) -> ExecutionLock:
        """Take the store's exclusive execution lock (hold it for the whole execution).

        Raises :class:`StoreInUseError` ("store in use by pid N since T") when another
        execution holds it. Use the result as a context manager.
        """
        return ExecutionLock.acquire(self._env().path)

    def begin_execution(
        self,
        flow_id: str,
        fingerprint: str,
        worker_count: int,
        key_groups: int = DEFAULT_KEY_GROUPS,
        *,
        state_steps: Collection[str] | None = None,
        drop_state: Collection[str] = (),
    ) -> Execution:
        """Record a new execution and return its id and resume epoch.

        Call it under :meth:`lock_for_execution`, before any worker starts. The store's
        first execution records ``flow_id`` and ``key_groups``; later ones must have the
        same flow id (else :class:`FlowMismatchError`) and use the store's key-group
        count. ``fingerprint`` labels this version of the flow (``inspect`` shows the
        latest one).

        ``state_steps`` are the ids of the flow's steps that hold state (write
        snapshots). Every step the store has state for must be among them, else
        :class:`OrphanedStateError` names the missing ones (a removed or renamed
        stateful step); those also in ``drop_state`` have their snapshots deleted in
        this transaction instead. Steps the flow still has are never dropped. Without
        ``state_steps`` the store cannot tell a safe edit from a breaking one, so the
        ``fingerprint`` must then equal the recorded one (else
        :class:`FlowMismatchError`).

        The resume epoch is the durable cluster frontier of the previous execution;
        snapshots at or after it (written by workers that got ahead before the failure)
        are discarded, as that execution's future is abandoned. Raises
        :class:`InconsistentPartitionsError` if GC removed what that resume needs. A
        store of an older format gets its GC index here (one scan of every snapshot).
        """
        if worker_count < 1:
            raise ValueError(f"worker_count must be >= 1, got {worker_count}")
        if key_groups < 1 or key_groups >= PARTITION_GROUP:
            raise ValueError(f"key_groups must be in 1..{PARTITION_GROUP - 1}, got {key_groups}")
        flow_steps = None if state_steps is None else step_id_set(state_steps, "state_steps")
        dropping = step_id_set(drop_state, "drop_state")
        handle = self._env()
        index = self._index_db()
        with self._errors(), handle.env.begin(write=True) as txn:
            store_groups, key_hash = self._check_flow(
                txn, flow_id, fingerprint, key_groups, same_version=flow_steps is None
            )
            built = index is None
            if index is None:
                index = self._build_index(txn, self._gc_horizon(txn), _GcWork("build-index"))
            previous = self._last_execution(txn)
            if previous is None:
                execution_id, resume, previous_workers = 1, FIRST_EPOCH, None
            else:
                previous_id, previous_workers, previous_resume = previous
                frontiers = self._frontiers(txn, previous_id)
                resume = resume_epoch(previous_workers, frontiers, previous_resume)
                self._check_resumable(txn, resume)
                if max(frontiers.values(), default=resume) > resume:
                    self._discard_from(txn, index, resume)
                execution_id = previous_id + 1
            self._check_state_steps(txn, flow_id, flow_steps, dropping)
            record = encode_execution(worker_count, resume, time.time(), os.getpid())
            txn.put(execution_id.to_bytes(8, "big"), record, db=handle.dbs["executions"])
        if built:  # the new sub-database is usable outside its transaction once committed
            handle.dbs[INDEX_DATABASE] = index
        return Execution(
            execution_id, resume, previous_workers, worker_count, store_groups, key_hash
        )

    def _check_flow(
        self, txn: Any, flow_id: str, fingerprint: str, key_groups: int, *, same_version: bool
    ) -> tuple[int, str]:
        """Check (or, first time, record) the flow id; return the store's key-group count
        and key hash."""
        meta = self._env().dbs["meta"]
        stored_flow = txn.get(b"flow_id", db=meta)
        if stored_flow is None:
            txn.put(b"flow_id", flow_id.encode(*TEXT_ENCODING), db=meta)
            txn.put(b"fingerprint", fingerprint.encode(*TEXT_ENCODING), db=meta)
            txn.put(b"key_groups", str(key_groups).encode(), db=meta)
            txn.put(b"key_hash", DEFAULT_KEY_HASH.encode(), db=meta)
            if int(txn.get(b"format", db=meta)) < KEY_HASH_FORMAT:
                # Not CRC-32 any more: an older shmflow must not open this store.
                txn.put(b"format", str(KEY_HASH_FORMAT).encode(), db=meta)
            return key_groups, DEFAULT_KEY_HASH
        stored_id = stored_flow.decode(*TEXT_ENCODING)
        stored_fingerprint = txn.get(b"fingerprint", db=meta).decode(*TEXT_ENCODING)
        if stored_id != flow_id:
            msg = (
                f"recovery store {self.path} belongs to flow {stored_id!r} (fingerprint "
                f"{stored_fingerprint}), not to this flow {flow_id!r} (fingerprint "
                f"{fingerprint}): run the flow that wrote it, or use a new store for this one"
            )
            raise FlowMismatchError(msg)
        if same_version and stored_fingerprint != fingerprint:
            msg = (
                f"recovery store {self.path} belongs to flow {stored_id!r} (fingerprint "
                f"{stored_fingerprint}), not to this version of flow {flow_id!r} (fingerprint "
                f"{fingerprint}): run the version that wrote it, or name the flow's "
                "state-holding steps (state_steps) so an edited flow can resume"
            )
            raise FlowMismatchError(msg)
        txn.put(b"fingerprint", fingerprint.encode(*TEXT_ENCODING), db=meta)
        return int(txn.get(b"key_groups", db=meta)), _key_hash(txn.get(b"key_hash", db=meta))

    def _check_state_steps(
        self,
        txn: Any,
        flow_id: str,
        flow_steps: frozenset[str] | None,
        dropping: frozenset[str],
    ) -> None:
        """Refuse (or drop) state of steps the flow lost; record the flow's state steps."""
        recorded = self._recorded_steps(txn)
        if flow_steps is None:  # nothing to compare with; keeps (migrates) the record
            self._record_steps(txn, recorded)
            return
        orphaned = sorted(s for s in recorded - flow_steps if self._has_state(txn, s))
        kept = [s for s in orphaned if s not in dropping]
        if kept:
            listed = ", ".join(repr(s) for s in kept)
            msg = (
                f"recovery store {self.path} holds state of {len(kept)} step(s) that flow "
                f"{flow_id!r} no longer has (removed or renamed): {listed}. Resuming would "
                "lose that state: give the step(s) their old ids back, or drop the state for "
                f"good with RecoveryConfig({str(self.path)!r}, drop_state={{{listed}}}) "
                f"(command line: --drop-state STEP_ID for each)"
            )
            raise OrphanedStateError(msg, tuple(kept))
        for step_id in orphaned:
            self._delete_step(txn, step_id)
        self._record_steps(txn, flow_steps)

    def _recorded_steps(self, txn: Any) -> set[str]:
        """The step ids recorded as (maybe) holding state.

        A format-1 store recorded none: every step with a snapshot counts as recorded.
        """
        value = txn.get(b"state_steps", db=self._env().dbs["meta"])
        if value is None:
            return self._steps_with_state(txn)
        return set(json.loads(bytes(value).decode(*TEXT_ENCODING)))

    def _record_steps(self, txn: Any, step_ids: Iterable[str]) -> None:
        """Record ``step_ids`` as the state steps (a format-1 store becomes format 2)."""
        meta = self._env().dbs["meta"]
        txn.put(b"state_steps", json.dumps(sorted(step_ids)).encode(), db=meta)
        if int(txn.get(b"format", db=meta)) < 2:
            txn.put(b"format", b"2", db=meta)

    def _has_state(self, txn: Any, step_id: str) -> bool:
        """Whether ``step_id`` has any snapshot (one cursor seek)."""
        prefix = self._step_prefix(step_id)[0]
        cursor = txn.cursor(db=self._env().dbs["snapshots"])
        return bool(cursor.set_range(prefix)) and bytes(cursor.key()).startswith(prefix)

    def _delete_step(self, txn: Any, step_id: str) -> None:
        """Delete every snapshot of ``step_id`` (its keys are one contiguous range)."""
        prefix = self._step_prefix(step_id)[0]
        cursor = txn.cursor(db=self._env().dbs["snapshots"])
        if cursor.set_range(prefix):
            while bytes(cursor.key()).startswith(prefix):
                cursor.delete()  # moves to the next key (none: key() is empty)

    def _steps_with_state(self, txn: Any) -> set[str]:
        """Every step id with a snapshot: one seek per step, skipping over its keys."""
        steps: set[str] = set()
        cursor = txn.cursor(db=self._env().dbs["snapshots"])
        found = cursor.first()
        while found:
            key = bytes(cursor.key())
            component = key[: component_length(key, 0)]
            steps.add(_step_name(component, cursor.value()))
            after = _prefix_end(component)
            found = after is not None and cursor.set_range(after)
        return steps

    def _last_execution(self, txn: Any) -> tuple[int, int, int] | None:
        """(id, worker count, resume epoch) of the newest execution, or None."""
        cursor = txn.cursor(db=self._env().dbs["executions"])
        if not cursor.last():
            return None
        worker_count, resume, _, _ = decode_execution(cursor.value())
        return int.from_bytes(cursor.key(), "big"), worker_count, resume

    def _frontiers(self, txn: Any, execution_id: int) -> dict[int, int]:
        prefix = execution_id.to_bytes(8, "big")
        cursor = txn.cursor(db=self._env().dbs["frontiers"])
        frontiers: dict[int, int] = {}
        if cursor.set_range(prefix):
            for key, value in cursor.iternext():
                if key[:8] != prefix:
                    break
                frontiers[parse_frontier_key(key)[1]] = int.from_bytes(value, "big")
        return frontiers

    def _gc_horizon(self, txn: Any) -> int:
        value = txn.get(b"gc_horizon", db=self._env().dbs["meta"])
        return 0 if value is None else int(value)

    def _check_resumable(self, txn: Any, resume: int) -> None:
        horizon = self._gc_horizon(txn)
        if resume <= horizon:
            msg = (
                f"recovery store {self.path}: resuming at epoch {resume} needs snapshots "
                f"before it, but GC compacted the store up to epoch {horizon}; resume from "
                "a backup taken before that GC, or start afresh with a new store"
            )
            raise InconsistentPartitionsError(msg)

    def _discard_from(self, txn: Any, index: Any, resume: int) -> None:
        """Delete every snapshot at or after ``resume`` (an abandoned execution's future).

        ``resume`` is after the GC horizon, so the GC index names every such snapshot:
        the work follows what the abandoned future wrote, not the size of the store.
        """
        snapshots = self._env().dbs["snapshots"]
        records = txn.cursor(db=index)
        if not records.set_range(resume.to_bytes(8, "big")):
            return
        key = records.key()
        while key:
            epoch = key[:8]
            for ident in split_idents(records.value()):
                txn.delete(ident + epoch, db=snapshots)
            records.delete()  # moves to the next record (none: key() is empty)
            key = records.key()

    def complete_execution(self, execution_id: int) -> int:
        """Mark an execution whose every worker reached the end of its input.

        Workers that read less input close fewer epochs, so their last durable
        frontiers differ; every worker of a finished execution has committed all it
        will ever write, so each frontier is raised to the highest one. The next
        execution then resumes after everything (it continues after EOF) instead of
        replaying from the lowest worker frontier. Returns that frontier.
        """
        return self.raise_finished_frontiers(execution_id, None)

    def raise_finished_frontiers(self, execution_id: int, finished: Iterable[int] | None) -> int:
        """Let the workers in ``finished`` (None: all) stop holding back the resume epoch.

        A worker that reached the end of every input and closed every epoch (it reported
        ``Done``) has committed everything it will ever write: its state is final, so
        any frontier is true of it. Its durable frontier stays where its last epoch
        ended, though, and the resume epoch is the min over the workers: one that had
        no input (more workers than partitions) or less of it would make the next
        execution replay nearly all that the others read. So each finished worker's
        frontier is raised to the lowest durable frontier of the workers not finished
        (one that never committed counts as the execution's resume epoch) or, when all
        finished, to the highest frontier. Frontiers never go down, and only the newest
        execution changes (an older one's future is abandoned). Returns the execution's
        durable cluster frontier afterwards.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     init_db_dir(tmp)
        ...     with RecoveryStore.open(tmp) as store:
        ...         run = store.begin_execution("flow", "fp", worker_count=3)
        ...         for worker, frontier in [(0, 3), (1, 9), (2, 6)]:
        ...             _ = store.epoch_writer(run.execution_id, worker).commit_epoch(frontier)
        ...         store.raise_finished_frontiers(run.execution_id, [0])
        ...         store.inspect()["executions"][-1]["frontiers"]
        6
        {0: 6, 1: 9, 2: 6}
        """
        handle = self._env()
        frontiers_db = handle.dbs["frontiers"]
        with self._errors(), handle.env.begin(write=True) as txn:
            last = self._last_execution(txn)
            if last is None or last[0] != execution_id:
                return self._cluster_frontier(txn, execution_id)
            _, worker_count, resume = last
            frontiers = self._frontiers(txn, execution_id)
            workers = range(worker_count)
            done = set(workers) if finished is None else set(finished) & set(workers)
            running = [frontiers.get(w, resume) for w in workers if w not in done]
            target = min(running) if running else max(frontiers.values(), default=FIRST_EPOCH)
            for worker in sorted(done):
                if frontiers.get(worker, resume) < target:
                    frontiers[worker] = target
                    txn.put(
                        frontier_key(execution_id, worker),
                        target.to_bytes(8, "big"),
                        db=frontiers_db,
                    )
            return resume_epoch(worker_count, frontiers, resume)

    def executions(self) -> list[Execution]:
        """Every execution recorded in the store, oldest first."""
        handle = self._env()
        result: list[Execution] = []
        with self._errors(), handle.env.begin() as txn:
            groups = txn.get(b"key_groups", db=handle.dbs["meta"])
            key_groups = DEFAULT_KEY_GROUPS if groups is None else int(groups)
            key_hash = _key_hash(txn.get(b"key_hash", db=handle.dbs["meta"]))
            previous_workers = None
            for key, value in txn.cursor(db=handle.dbs["executions"]):
                worker_count, resume, _, _ = decode_execution(value)
                execution_id = int.from_bytes(key, "big")
                result.append(
                    Execution(
                        execution_id, resume, previous_workers, worker_count, key_groups, key_hash
                    )
                )
                previous_workers = worker_count
        return result

    def cluster_frontier(self, execution_id: int) -> int:
        """The durable cluster frontier of an execution: the min over its workers.

        A worker that has not committed yet counts as the execution's resume epoch.
        """
        with self._errors(), self._env().env.begin() as txn:
            return self._cluster_frontier(txn, execution_id)

    def _cluster_frontier(self, txn: Any, execution_id: int) -> int:
        record = txn.get(execution_id.to_bytes(8, "big"), db=self._env().dbs["executions"])
        if record is None:
            raise RecoveryError(f"recovery store {self.path} has no execution {execution_id}")
        worker_count, resume, _, _ = decode_execution(record)
        return resume_epoch(worker_count, self._frontiers(txn, execution_id), resume)

    def next_resume_epoch(self) -> int:
        """Where an execution started now would resume (the first epoch for a new store)."""
        handle = self._env()
        with self._errors(), handle.env.begin() as txn:
            return self._next_resume_epoch(txn)

    def _next_resume_epoch(self, txn: Any) -> int:
        last = self._last_execution(txn)
        if last is None:
            return FIRST_EPOCH
        execution_id, worker_count, resume = last
        return resume_epoch(worker_count, self._frontiers(txn, execution_id), resume)

    def gc(
        self,
        cluster_frontier: int | None = None,
        backup_epochs: int = 0,
        *,
        chunk_keys: int = GC_CHUNK_KEYS,
        cancel: Cancel | None = None,
        method: str | None = None,
    ) -> GcResult:
        """Delete snapshots no resume can need any more; return what was done.

        Per (step, key) keeps the newest snapshot at or before the GC horizon
        ``cluster_frontier - backup_epochs - 1`` and every newer one (so the newest
        state or tombstone of a key always survives). ``cluster_frontier`` defaults to
        the durable frontier of the latest execution and may not exceed it
        (ValueError): the store never forgets what a resume needs.

        The work follows what was committed at or before the horizon since the last GC
        (the GC index), not the size of the store: ``"incremental"`` visits the keys
        the index names; when those are a large part of the store (after epochs that
        touched most keys) ``"scan"`` reads the store in key order instead, which is
        then cheaper. ``method`` forces one (tests, benchmarks); by default the GC
        picks. Either way it works in write transactions of about ``chunk_keys`` keys
        visited (a scan reads 2.5 times as many: its keys cost less), so workers keep
        committing meanwhile; ``cancel`` is polled between them. A
        cancelled GC leaves a consistent store, and the next GC goes on from there.

        A store of an older format has no GC index: the first GC builds it
        (``"build-index"``: one scan of every snapshot, in one transaction).
        """
        if chunk_keys < 1:
            raise ValueError(f"chunk_keys must be >= 1, got {chunk_keys}")
        if method not in (None, "incremental", "scan"):
            raise ValueError(f"method must be None, 'incremental' or 'scan', got {method!r}")
        handle = self._env()
        snapshots = handle.dbs["snapshots"]
        index = self._index_db()
        with self._errors(), handle.env.begin() as txn:
            durable = self._next_resume_epoch(txn)
            frontier = durable if cluster_frontier is None else cluster_frontier
            if frontier > durable:
                msg = (
                    f"gc up to cluster frontier {frontier} of store {self.path}, beyond its "
                    f"durable frontier {durable}, would delete state a resume needs"
                )
                raise ValueError(msg)
        horizon = gc_horizon(frontier, backup_epochs)
        work = _GcWork(method="incremental" if method is None else method)
        complete = True
        if horizon >= 1:
            if index is None:
                index = self._build_index_for_gc(horizon, work)
            if work.method != "build-index":  # (another process may have built it first)
                complete = self._gc_indexed(index, horizon, chunk_keys, cancel, work, method)
        with self._errors(), handle.env.begin() as txn:
            remaining = txn.stat(snapshots)["entries"]
        return GcResult(
            horizon=horizon,
            deleted_snapshots=work.deleted,
            remaining_snapshots=remaining,
            method=work.method,
            records_visited=work.records,
            keys_visited=work.keys,
            transactions=work.transactions,
            longest_transaction_s=work.longest_s,
            complete=complete,
        )

    def _gc_indexed(
        self,
        index: Any,
        horizon: int,
        chunk_keys: int,
        cancel: Cancel | None,
        work: _GcWork,
        method: str | None,
    ) -> bool:
        """GC with the index up to ``horizon``; False if cancelled before the end."""
        handle = self._env()
        first = True
        start: bytes | None = b""  # where the scan goes on (None: scanned everything)
        while cancel is None or not cancel.is_set():
            started = time.perf_counter()
            with self._errors(), handle.env.begin(write=True) as txn:
                if first:  # before any deletion: no resume at or before it may start now
                    self._raise_gc_horizon(txn, horizon)
                    if method is None and self._scan_pays(txn, index, horizon):
                        work.method = "scan"
                    first = False
                if work.method == "incremental":
                    done = self._gc_chunk(txn, index, horizon, chunk_keys, work)
                elif start is not None:  # a scanned key costs less than a visit: read more
                    scan_keys = int(chunk_keys * _VISIT_COST)
                    start, done = self._scan_chunk(txn, start, horizon, scan_keys, work), False
                else:  # every key compacted: the records up to the horizon are handled
                    done = self._drop_records(txn, index, horizon, chunk_keys, work)
            work.took(started)
            if done:
                return True
        return False

    def _gc_chunk(self, txn: Any, index: Any, horizon: int, chunk_keys: int, work: _GcWork) -> bool:
        """Handle whole records (oldest epoch first) naming about ``chunk_keys`` idents.

        Their idents are visited in key order, each once (far fewer page misses than
        the order they were written in). Returns True when no record at or before
        ``horizon`` is left.
        """
        records = txn.cursor(db=index)
        idents: list[bytes] = []
        key = records.key() if records.first() else b""
        while key and int.from_bytes(key[:8], "big") <= horizon and len(idents) < chunk_keys:
            idents += split_idents(records.value())
            work.records += 1
            records.delete()  # moves to the next record (none: key() is empty)
            key = records.key()
        cursor = txn.cursor(db=self._env().dbs["snapshots"])
        for ident in sorted(set(idents)):
            work.deleted += _compact_ident(cursor, ident, horizon, work)
        return not key or int.from_bytes(key[:8], "big") > horizon

    def _scan_pays(self, txn: Any, index: Any, horizon: int) -> bool:
        """Whether scanning the store costs less than visiting the idents named up to ``horizon``.

        Visiting one ident costs about ``_VISIT_COST`` keys of a scan (measured); the
        count of idents is estimated from the records' sizes, and the records are read
        only as far as needed to know that a scan does not pay.
        """
        entries = txn.stat(self._env().dbs["snapshots"])["entries"]
        enough = entries / _VISIT_COST  # pending idents from which a scan pays
        records = txn.cursor(db=index)
        count = 0
        for key in records.iternext(keys=True, values=False):
            if int.from_bytes(key[:8], "big") > horizon:
                break
            count += 1
            if count * IDENTS_PER_RECORD >= enough:
                break
        if count * IDENTS_PER_RECORD < enough:
            return False
        size = sample_size = sample_idents = 0
        for key, value in records.iternext() if records.first() else ():
            if int.from_bytes(key[:8], "big") > horizon:
                break
            size += len(value)
            if not sample_idents:
                sample_size, sample_idents = len(value), len(split_idents(value))
        return size * sample_idents >= enough * sample_size

    def _scan_chunk(
        self, txn: Any, start: bytes, horizon: int, chunk_keys: int, work: _GcWork
    ) -> bytes | None:
        """Apply the GC rule to about ``chunk_keys`` keys from ``start``, whole idents only.

        Returns the key to go on from, or None at the end of the store.
        """
        snapshots = self._env().dbs["snapshots"]
        cursor = txn.cursor(db=snapshots)
        if not cursor.set_range(start):
            return None
        doomed: list[bytes] = []
        following: bytes | None = None
        current = b""
        newest: bytes | None = None  # this ident's newest key at or before the horizon
        read = 0
        for key in cursor.iternext(keys=True, values=False):
            ident = key[:-8]
            if ident != current:
                if read >= chunk_keys:
                    following = key
                    break
                current, newest = ident, None
            read += 1
            if int.from_bytes(key[-8:], "big") <= horizon:
                if newest is not None:
                    doomed.append(newest)
                newest = key
        for key in doomed:
            txn.delete(key, db=snapshots)
        work.keys += read
        work.deleted += len(doomed)
        return following

    def _drop_records(
        self, txn: Any, index: Any, horizon: int, chunk_keys: int, work: _GcWork
    ) -> bool:
        """Delete up to ``chunk_keys`` records at or before ``horizon``; True when none is left."""
        records = txn.cursor(db=index)
        key = records.key() if records.first() else b""
        for _ in range(chunk_keys):
            if not key or int.from_bytes(key[:8], "big") > horizon:
                return True
            work.records += 1
            records.delete()
            key = records.key()
        return not key or int.from_bytes(key[:8], "big") > horizon

    def _build_index_for_gc(self, horizon: int, work: _GcWork) -> Any:
        """Build the GC index of a store of an older format (one write transaction)."""
        handle = self._env()
        started = time.perf_counter()
        with self._errors(), handle.env.begin(write=True) as txn:
            self._raise_gc_horizon(txn, horizon)
            index = self._build_index(txn, horizon, work)
        work.took(started)
        handle.dbs[INDEX_DATABASE] = index
        return index

    def _build_index(self, txn: Any, horizon: int, work: _GcWork) -> Any:
        """Create and fill the GC index in ``txn``; return its sub-database.

        One scan of every snapshot: applies the GC rule at ``horizon`` (so at most one
        snapshot per key is left at or before it) and names every snapshot after
        ``horizon`` in a record, which is all the incremental GC needs. Makes the store
        format 3. Another process may have built it since this one looked: then it
        only returns it.
        """
        handle = self._env()
        index = handle.env.open_db(INDEX_DATABASE.encode(), txn=txn, create=True)
        meta = handle.dbs["meta"]
        if int(txn.get(b"format", db=meta)) >= INDEXED_FORMAT:
            return index
        work.method = "build-index"
        writer = _RecordWriter(txn.cursor(db=index))
        pending = _IndexRecords()
        cursor = txn.cursor(db=handle.dbs["snapshots"])
        key = cursor.key() if cursor.first() else b""
        while key:
            ident = key[:-8]
            epochs: list[int] = []
            while key[:-8] == ident:
                epochs.append(int.from_bytes(key[-8:], "big"))
                key = cursor.key() if cursor.next() else b""
            work.keys += len(epochs)
            doomed = _doomed_count(epochs, horizon)
            if doomed:  # delete the oldest, then go back to where the scan was
                cursor.set_range(ident)
                for _ in range(doomed):
                    cursor.delete()
                work.deleted += doomed
                key = cursor.key() if key and cursor.set_range(key) else b""
            for epoch in epochs[doomed:]:
                if epoch > horizon:
                    pending.add(epoch, ident)
            if pending.done:
                writer.put_all(pending.take())
        writer.put_all(pending.finish())
        key_hash = _key_hash(txn.get(b"key_hash", db=meta))
        indexed = INDEXED_FORMAT if key_hash == LEGACY_KEY_HASH else KEY_HASH_FORMAT
        txn.put(b"format", str(indexed).encode(), db=meta)
        return index

    def _raise_gc_horizon(self, txn: Any, horizon: int) -> None:
        if horizon > self._gc_horizon(txn):
            txn.put(b"gc_horizon", str(horizon).encode(), db=self._env().dbs["meta"])

    def _index_db(self) -> Any:
        """The GC index sub-database, or None for a store of an older format without one.

        Looked up again while missing: another process may have built it since this
        one opened the store. Call it outside any transaction of this thread.
        """
        handle = self._env()
        index = handle.dbs[INDEX_DATABASE]
        if index is None:
            with self._errors():
                try:
                    index = handle.env.open_db(INDEX_DATABASE.encode(), create=False)
                except lmdb.NotFoundError:
                    return None
            handle.dbs[INDEX_DATABASE] = index
        return index

    # -- worker side ---------------------------------------------------------------

    def epoch_writer(self, execution_id: int, worker_index: int) -> EpochWriter:
        """A writer committing ``worker_index``'s snapshots and frontier each epoch."""
        handle = self._env()
        with self._errors(), handle.env.begin() as txn:
            groups = txn.get(b"key_groups", db=handle.dbs["meta"])
            key_hash = _key_hash(txn.get(b"key_hash", db=handle.dbs["meta"]))
            record = txn.get(execution_id.to_bytes(8, "big"), db=handle.dbs["executions"])
            recorded = self._recorded_steps(txn) if record is not None else set()
        if groups is None or record is None:
            msg = f"recovery store {self.path} has no execution {execution_id}: begin it first"
            raise RecoveryError(msg)
        worker_count = decode_execution(record)[0]
        if not 0 <= worker_index < worker_count:
            msg = (
                f"worker {worker_index} is not one of the {worker_count} workers "
                f"of execution {execution_id}"
            )
            raise ValueError(msg)
        return EpochWriter(self, execution_id, worker_index, int(groups), recorded, key_hash)

    def _step_prefix(self, step_id: str) -> tuple[bytes, bytes]:
        """(key component, UTF-8 bytes) of a step id, cached."""
        cached = self._step_prefixes.get(step_id)
        if cached is None:
            raw = step_id.encode(*TEXT_ENCODING)
            cached = self._step_prefixes[step_id] = (name_component(raw), raw)
        return cached

    def load_keyed_states(self, step_id: str, groups: range, resume_epoch: int) -> dict[str, Any]:
        """The state of every key of ``step_id`` in key ``groups`` to resume at ``resume_epoch``.

        Per key, the newest snapshot with an epoch before ``resume_epoch``; keys whose
        snapshot is a tombstone (or that have none) are left out. Works for any worker
        count: pass the worker's ``owned_groups(...)``. Raises
        :class:`InconsistentPartitionsError` when GC removed what this resume needs.
        """
        if groups.step != 1 or groups.start < 0 or groups.stop > PARTITION_GROUP:
            raise ValueError(f"groups must be a contiguous range of key groups, got {groups}")
        if not groups:
            return {}
        prefix = self._step_prefix(step_id)[0]
        start = prefix + groups.start.to_bytes(4, "big")
        last = prefix + (groups.stop - 1).to_bytes(4, "big")
        return self._load(step_id, start, last, resume_epoch)

    def load_partition_states(self, step_id: str, resume_epoch: int) -> dict[str, Any]:
        """The resume state of every source/sink partition of ``step_id``, by partition name.

        Same rule as :meth:`load_keyed_states`; a partition without a snapshot (or with
        a tombstone) is left out.
        """
        prefix = self._step_prefix(step_id)[0] + PARTITION_GROUP.to_bytes(4, "big")
        return self._load(step_id, prefix, prefix, resume_epoch)

    def _load(self, step_id: str, start: bytes, last: bytes, resume: int) -> dict[str, Any]:
        """States of the snapshot keys whose step+group part lies in ``[start, last]``."""
        handle = self._env()
        width = len(last)
        chosen: list[tuple[bytes, bytes]] = []
        with self._errors(), handle.env.begin() as txn:
            self._check_resumable(txn, resume)
            cursor = txn.cursor(db=handle.dbs["snapshots"])
            if not cursor.set_range(start):
                return {}
            # Epochs of one key are adjacent and ascending: the last one before
            # ``resume`` in each run of keys is the one to load.
            current = b""
            best: tuple[bytes, bytes] | None = None
            for key, value in cursor.iternext():
                if key[:width] > last:
                    break
                ident = key[:-8]
                if ident != current:
                    if best is not None:
                        chosen.append(best)
                    current, best = ident, None
                if int.from_bytes(key[-8:], "big") < resume:
                    best = (key, value)
            if best is not None:
                chosen.append(best)
        return _restore_states(handle.path, step_id, width, chosen)

    # -- reporting -----------------------------------------------------------------

    def inspect(self) -> dict[str, Any]:
        """A report of the store: meta, executions with frontiers, snapshot stats per step.

        Keys: ``path``, ``format``, ``flow_id``, ``fingerprint``, ``key_groups``, ``key_hash``,
        ``state_steps`` (sorted ids of the steps recorded as holding state),
        ``gc_horizon``, ``gc_index_records`` (GC index records not handled by a GC yet;
        None for a store of an older format, which has no index until its next
        execution or GC), ``data_bytes``, ``next_resume_epoch``, ``executions`` (list of
        dicts with ``execution_id``, ``worker_count``, ``resume_epoch``, ``started_at``,
        ``pid``, ``frontiers`` {worker: frontier}, ``cluster_frontier``) and ``steps``
        ({step id: {``keys``, ``partitions``, ``snapshots``, ``tombstones``, ``bytes``,
        ``oldest_epoch``, ``newest_epoch``}}).
        """
        handle = self._env()
        dbs = handle.dbs
        index = self._index_db()
        with self._errors(), handle.env.begin() as txn:
            meta = {
                bytes(k).decode(): bytes(v).decode(*TEXT_ENCODING)
                for k, v in txn.cursor(dbs["meta"])
            }
            executions = []
            for key, value in txn.cursor(db=dbs["executions"]):
                worker_count, resume, started_at, pid = decode_execution(value)
                execution_id = int.from_bytes(key, "big")
                frontiers = self._frontiers(txn, execution_id)
                executions.append(
                    {
                        "execution_id": execution_id,
                        "worker_count": worker_count,
                        "resume_epoch": resume,
                        "started_at": datetime.fromtimestamp(started_at, UTC).isoformat(
                            timespec="seconds"
                        ),
                        "pid": pid,
                        "frontiers": frontiers,
                        "cluster_frontier": resume_epoch(worker_count, frontiers, resume),
                    }
                )
            steps = _step_stats(txn.cursor(db=dbs["snapshots"]))
            state_steps = sorted(self._recorded_steps(txn))
            next_resume = self._next_resume_epoch(txn)
            index_records = None if index is None else txn.stat(index)["entries"]
        return {
            "path": str(handle.path),
            "format": int(meta["format"]),
            "flow_id": meta.get("flow_id"),
            "fingerprint": meta.get("fingerprint"),
            "key_groups": int(meta["key_groups"]) if "key_groups" in meta else None,
            "key_hash": meta.get("key_hash", LEGACY_KEY_HASH) if "key_groups" in meta else None,
            "state_steps": state_steps,
            "gc_horizon": int(meta.get("gc_horizon", 0)),
            "gc_index_records": index_records,
            "data_bytes": (handle.path / "data.mdb").stat().st_size,
            "next_resume_epoch": next_resume,
            "executions": executions,
            "steps": steps,
        }


class EpochWriter:
    """Commits one worker's snapshots and frontier, one write transaction per epoch.

    Get it from :meth:`RecoveryStore.epoch_writer` in the worker's own process. A step
    the store has not recorded as holding state is recorded by the commit that first
    writes state for it, so a later execution cannot lose that state unnoticed.
    """

    def __init__(
        self,
        store: RecoveryStore,
        execution_id: int,
        worker_index: int,
        key_groups: int,
        recorded_steps: Iterable[str] = (),
        key_hash: str = DEFAULT_KEY_HASH,
    ) -> None:
        """Use :meth:`RecoveryStore.epoch_writer`."""
        self.store = store
        self.execution_id = execution_id
        self.worker_index = worker_index
        self.key_groups = key_groups
        self.key_hash = key_hash
        self._hash = key_hash_function(key_hash)
        self._frontier_key = frontier_key(execution_id, worker_index)
        self._group_bytes = [group.to_bytes(4, "big") for group in range(key_groups)]
        #: state key -> its key group's 4 bytes (see GROUP_CACHE_KEYS).
        self._group_of: dict[str, bytes] = {}
        self._partition_group = PARTITION_GROUP.to_bytes(4, "big")
        self._recorded = set(recorded_steps)
        #: Steps seen by this writer that the store has not recorded yet.
        self._unrecorded: set[str] = set()
        self._prefixes: dict[str, tuple[bytes, bytes]] = {}

    def commit_epoch(
        self,
        frontier: int,
        snapshots: Iterable[Snapshot] = (),
        partition_snapshots: Iterable[Snapshot] = (),
    ) -> int:
        """Durably write ``snapshots``, ``partition_snapshots`` and the worker's ``frontier``.

        Each snapshot is ``(step_id, state_key, epoch, state)`` (``state`` may be
        ``TOMBSTONE``); partition snapshots are ``(step_id, partition_name, epoch,
        state)`` of source/sink partitions. Everything goes in ONE write transaction:
        all or nothing. States are pickled first; one that cannot be pickled raises
        :class:`UnpicklableStateError` and nothing is written. Every snapshot epoch must
        be before ``frontier`` and after the store's GC horizon (ValueError: GC may have
        compacted that epoch already). Returns the number of snapshots written. Raises
        :class:`StoreFullError` when the map or disk is full (nothing written) and
        :class:`StaleExecutionError` when a newer execution has begun.

        The same transaction writes the GC index records naming what it wrote.
        """
        batch = _EncodedBatch()
        self._encode(frontier, snapshots, batch, keyed=True)
        self._encode(frontier, partition_snapshots, batch, keyed=False)
        batch.finish()
        store = self.store
        handle = store._env()
        index = store._index_db()
        with store._errors(), handle.env.begin(write=True) as txn:
            self._check_current(txn, frontier)
            if batch.items:
                self._check_after_gc_horizon(txn, batch.oldest_epoch)
            if self._unrecorded:
                recorded = store._recorded_steps(txn)
                if not self._unrecorded <= recorded:
                    store._record_steps(txn, recorded | self._unrecorded)
            if batch.items:
                txn.cursor(db=handle.dbs["snapshots"]).putmulti(batch.items)
                if index is not None:  # a store without one gets it all indexed later
                    _RecordWriter(txn.cursor(db=index)).put_all(batch.index.done)
            txn.put(self._frontier_key, frontier.to_bytes(8, "big"), db=handle.dbs["frontiers"])
        self._recorded |= self._unrecorded
        self._unrecorded.clear()
        return len(batch.items)

    def _check_after_gc_horizon(self, txn: Any, oldest_epoch: int) -> None:
        """Refuse a snapshot GC may already have compacted past (keeps the GC index true)."""
        horizon = self.store._gc_horizon(txn)
        if oldest_epoch <= horizon:
            msg = (
                f"worker {self.worker_index} may not write a snapshot of epoch {oldest_epoch}: "
                f"the store {self.store.path} was garbage-collected up to epoch {horizon}, "
                "and a worker only writes epochs after its durable frontier"
            )
            raise ValueError(msg)

    def _step_prefix(self, step_id: str) -> tuple[bytes, bytes]:
        """The store's key prefix of ``step_id``, noting a step not recorded yet."""
        cached = self._prefixes.get(step_id)
        if cached is None:
            cached = self._prefixes[step_id] = self.store._step_prefix(step_id)
            if step_id not in self._recorded:
                self._unrecorded.add(step_id)
        return cached

    def _check_current(self, txn: Any, frontier: int) -> None:
        store = self.store
        last = store._last_execution(txn)
        if last is None or last[0] != self.execution_id:
            newest = None if last is None else last[0]
            msg = (
                f"worker {self.worker_index} of execution {self.execution_id} may not commit "
                f"to {store.path}: execution {newest} has begun since; this worker must stop"
            )
            raise StaleExecutionError(msg)
        previous = txn.get(self._frontier_key, db=store._env().dbs["frontiers"])
        if previous is not None and int.from_bytes(previous, "big") > frontier:
            msg = (
                f"frontier of worker {self.worker_index} went backwards: "
                f"{int.from_bytes(previous, 'big')} -> {frontier}"
            )
            raise ValueError(msg)

    def _encode(
        self, frontier: int, snapshots: Iterable[Snapshot], batch: _EncodedBatch, *, keyed: bool
    ) -> None:
        """Encode (key, value) pairs and GC index records into ``batch``.

        Hot loop, so locals and cached byte strings.
        """
        step_prefix = self._step_prefix
        dumps = pickle.dumps
        hash_of = self._hash
        groups = self._group_bytes
        group_count = self.key_groups
        group_of = self._group_of
        partition_group = self._partition_group
        encoding, errors = TEXT_ENCODING
        tombstone = TOMBSTONE
        append = batch.items.append
        index = batch.index
        record_full = IDENTS_PER_RECORD
        last_epoch = -1
        epoch_bytes = b""
        idents: list[bytes] = []
        for step_id, state_key, epoch, state in snapshots:
            step_component, step_raw = step_prefix(step_id)
            raw = state_key.encode(encoding, errors)
            if epoch != last_epoch:
                if not 0 < epoch < frontier:
                    msg = (
                        f"snapshot epoch {epoch} of step {step_id!r} must be >= 1 and "
                        f"before the frontier {frontier}"
                    )
                    raise ValueError(msg)
                last_epoch, epoch_bytes = epoch, epoch.to_bytes(8, "big")
                idents = index.idents_of(epoch)
            group = group_of.get(state_key) if keyed else partition_group
            if group is None:
                if len(group_of) >= GROUP_CACHE_KEYS:
                    group_of.clear()
                group = group_of[state_key] = groups[hash_of(raw) % group_count]
            if state is tombstone:
                value = b""
            else:
                try:
                    value = dumps(state, _PICKLE_PROTOCOL)
                except Exception as error:
                    raise _unpicklable(step_id, state_key, epoch, state, error) from error
            if len(raw) <= INLINE_MAX and not is_digested(step_component):
                ident = step_component + group + bytes((len(raw),)) + raw
            else:
                ident = step_component + group + name_component(raw)
                value = names_header(step_raw, raw) + value
            append((ident + epoch_bytes, value))
            idents.append(ident)
            if len(idents) >= record_full:
                index.close_record(epoch)
                idents = index.idents_of(epoch)


class _IndexRecords:
    """GC index records being built: per epoch, idents joined into records of at most
    ``IDENTS_PER_RECORD``; ``done`` holds the finished ones, as ``(epoch, idents)``."""

    def __init__(self) -> None:
        self.done: list[tuple[int, bytes]] = []
        self._open: dict[int, list[bytes]] = {}

    def idents_of(self, epoch: int) -> list[bytes]:
        """The record of ``epoch`` being filled (append idents to it; the caller closes
        it with :meth:`close_record` once it holds ``IDENTS_PER_RECORD``)."""
        idents = self._open.get(epoch)
        if idents is None:
            idents = self._open[epoch] = []
        return idents

    def close_record(self, epoch: int) -> None:
        """Finish ``epoch``'s record being filled."""
        idents = self._open.pop(epoch)
        if idents:
            self.done.append((epoch, b"".join(idents)))

    def add(self, epoch: int, ident: bytes) -> None:
        """Name ``ident`` as written at ``epoch`` (off the commit's hot loop)."""
        idents = self.idents_of(epoch)
        idents.append(ident)
        if len(idents) >= IDENTS_PER_RECORD:
            self.close_record(epoch)

    def take(self) -> list[tuple[int, bytes]]:
        """The finished records, handed over (``done`` starts empty again)."""
        done, self.done = self.done, []
        return done

    def finish(self) -> list[tuple[int, bytes]]:
        """Finish every record still being filled; return all finished ones."""
        for epoch in list(self._open):
            self.close_record(epoch)
        return self.done


class _EncodedBatch:
    """One commit, encoded: snapshot (key, value) pairs and its GC index records."""

    def __init__(self) -> None:
        self.items: list[tuple[bytes, bytes]] = []
        self.index = _IndexRecords()

    def finish(self) -> None:
        """Finish the index records (after the last snapshot is encoded)."""
        self.index.finish()

    @property
    def oldest_epoch(self) -> int:
        """The oldest epoch of the commit's snapshots (there must be one)."""
        return min(epoch for epoch, _ in self.index.done)


def _restore_states(
    path: Path, step_id: str, width: int, chosen: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    """Unpickle the chosen snapshots by state key; tombstones are left out."""
    states: dict[str, Any] = {}
    loads = pickle.loads
    encoding, errors = TEXT_ENCODING
    names_tag = NAMES_TAG[0]
    key = b""
    try:
        for key, value in chosen:
            if not value:
                continue  # tombstone
            if value[0] != names_tag:  # the common case: short names, plain pickle
                states[key[width + 1 : -8].decode(encoding, errors)] = loads(value)
                continue
            names, payload = decode_value(value)
            if payload:
                assert names is not None
                states[names[1]] = loads(payload)
    except Exception as error:
        state_key = decode_value(value)[0] or ("", key[width + 1 : -8].decode(encoding, errors))
        msg = (
            f"recovery store {path}: cannot unpickle the state of step {step_id!r}, key "
            f"{_cut(state_key[1])}, epoch {int.from_bytes(key[-8:], 'big')}: "
            f"{type(error).__name__}: {error}; the worker must be able to import every "
            "class the state uses (if it can, the stored bytes are damaged: restore the "
            "store from a backup or start afresh with a new store)"
        )
        raise RecoveryError(msg) from error
    return states


def _unpicklable(
    step_id: str, state_key: str, epoch: int, state: object, error: Exception
) -> UnpicklableStateError:
    msg = (
        f"state of step {step_id!r}, key {_cut(state_key)}, epoch {epoch} cannot be pickled "
        f"({type(state).__name__}: {type(error).__name__}: {error}); nothing of this epoch "
        "was committed. Make the state picklable (no lambdas, open files, locks or "
        "generators) or snapshot a picklable summary of it"
    )
    return UnpicklableStateError(msg, step_id, state_key, epoch)


def _doomed_count(epochs: list[int], horizon: int) -> int:
    """How many of one key's ascending snapshot ``epochs`` the GC rule deletes.

    Those before the newest one at or before ``horizon``
    (:func:`recovery._resume.epochs_to_delete`, for ascending epochs).

    >>> _doomed_count([1, 3, 4, 8], 5), _doomed_count([6, 8], 5)
    (2, 0)
    """
    doomed = 0
    for position, epoch in enumerate(epochs):
        if epoch > horizon:
            break
        doomed = position
    return doomed


def _compact_ident(cursor: Any, ident: bytes, horizon: int, work: _GcWork) -> int:
    """Apply the GC rule to the snapshots of one ident; return how many it deleted.

    Reads the ident's epochs (adjacent, ascending) only up to the first one after
    ``horizon``; counts the keys read in ``work``.
    """
    if not cursor.set_range(ident):
        return 0
    key = cursor.key()
    position = doomed = 0
    while key[:-8] == ident:
        work.keys += 1
        if int.from_bytes(key[-8:], "big") > horizon:
            break
        doomed = position
        position += 1
        key = cursor.key() if cursor.next() else b""
    if doomed:
        cursor.set_range(ident)
        for _ in range(doomed):
            cursor.delete()  # the oldest first; moves to the next
    return doomed


class _RecordWriter:
    """Writes GC index records, numbering each epoch's after those already stored."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self._next: dict[int, int] = {}

    def put_all(self, records: Iterable[tuple[int, bytes]]) -> None:
        """Write ``(epoch, idents)`` records (see :class:`_IndexRecords`)."""
        for epoch, idents in records:
            self.put(epoch, idents)

    def put(self, epoch: int, idents: bytes) -> None:
        """Write one record of concatenated ``idents`` written at ``epoch``."""
        sequence = self._next.get(epoch)
        if sequence is None:
            sequence = self._first_free(epoch)
        self._cursor.put(written_key(epoch, sequence), idents)
        self._next[epoch] = sequence + 1

    def _first_free(self, epoch: int) -> int:
        """The sequence number after the last record of ``epoch`` (0 if it has none)."""
        cursor = self._cursor
        # The last record before the next epoch's first (or the last of all).
        after = cursor.set_range((epoch + 1).to_bytes(8, "big"))
        if cursor.prev() if after else cursor.last():
            key = cursor.key()
            if int.from_bytes(key[:8], "big") == epoch:
                return int.from_bytes(key[8:], "big") + 1
        return 0


def _step_name(step_component: bytes, value: bytes) -> str:
    """The step id of a snapshot (a digested one is spelled out in the value)."""
    step_id = component_text(step_component)
    if step_id is None:
        full_names = decode_value(value)[0]
        step_id = full_names[0] if full_names is not None else step_component.hex()
    return step_id


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key after every key starting with ``prefix`` (None: there is none).

    >>> _prefix_end(b"\\x02ab"), _prefix_end(b"a\\xff"), _prefix_end(b"\\xff")
    (b'\\x02ac', b'b', None)
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


def _step_stats(cursor: Any) -> dict[str, dict[str, Any]]:
    """Per-step snapshot statistics for :meth:`RecoveryStore.inspect`."""
    steps: dict[str, dict[str, Any]] = {}
    names: dict[bytes, str] = {}
    current = b""
    for key, value in cursor.iternext():
        step_component = key[: component_length(key, 0)]
        step_id = names.get(step_component)
        if step_id is None:
            step_id = names[step_component] = _step_name(step_component, value)
        stats = steps.setdefault(
            step_id,
            {
                "keys": 0,
                "partitions": 0,
                "snapshots": 0,
                "tombstones": 0,
                "bytes": 0,
                "oldest_epoch": None,
                "newest_epoch": None,
            },
        )
        ident = key[:-8]
        if ident != current:
            current = ident
            group = int.from_bytes(key[len(step_component) : len(step_component) + 4], "big")
            stats["partitions" if group == PARTITION_GROUP else "keys"] += 1
        epoch = int.from_bytes(key[-8:], "big")
        stats["snapshots"] += 1
        stats["bytes"] += len(key) + len(value)
        if not decode_value(value)[1]:
            stats["tombstones"] += 1
        if stats["oldest_epoch"] is None or epoch < stats["oldest_epoch"]:
            stats["oldest_epoch"] = epoch
        if stats["newest_epoch"] is None or epoch > stats["newest_epoch"]:
            stats["newest_epoch"] = epoch
    return steps
