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

The byte layout is in ``recovery/_codec.py``, the resume/GC arithmetic in
``recovery/_resume.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import time
import zlib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from recovery._codec import (
    FORMAT_VERSION,
    INLINE_MAX,
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
)
from recovery._config import step_id_set
from recovery._env import (
    Environment,
    create_environment,
    open_environment,
    release_environment,
    translate_errors,
)
from recovery._keys import DEFAULT_KEY_GROUPS
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
    ``key_groups`` is the store's key-group count (fixed by its first execution).
    """

    execution_id: int
    resume_epoch: int
    previous_worker_count: int | None
    worker_count: int
    key_groups: int


@dataclass(frozen=True)
class GcResult:
    """What :meth:`RecoveryStore.gc` did: the horizon it compacted up to and counts."""

    horizon: int
    deleted_snapshots: int
    remaining_snapshots: int


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
        :class:`InconsistentPartitionsError` if GC removed what that resume needs.
        """
        if worker_count < 1:
            raise ValueError(f"worker_count must be >= 1, got {worker_count}")
        if key_groups < 1 or key_groups >= PARTITION_GROUP:
            raise ValueError(f"key_groups must be in 1..{PARTITION_GROUP - 1}, got {key_groups}")
        flow_steps = None if state_steps is None else step_id_set(state_steps, "state_steps")
        dropping = step_id_set(drop_state, "drop_state")
        handle = self._env()
        with self._errors(), handle.env.begin(write=True) as txn:
            store_groups = self._check_flow(
                txn, flow_id, fingerprint, key_groups, same_version=flow_steps is None
            )
            previous = self._last_execution(txn)
            if previous is None:
                execution_id, resume, previous_workers = 1, FIRST_EPOCH, None
            else:
                previous_id, previous_workers, previous_resume = previous
                frontiers = self._frontiers(txn, previous_id)
                resume = resume_epoch(previous_workers, frontiers, previous_resume)
                self._check_resumable(txn, resume)
                if max(frontiers.values(), default=resume) > resume:
                    self._discard_from(txn, resume)
                execution_id = previous_id + 1
            self._check_state_steps(txn, flow_id, flow_steps, dropping)
            record = encode_execution(worker_count, resume, time.time(), os.getpid())
            txn.put(execution_id.to_bytes(8, "big"), record, db=handle.dbs["executions"])
        return Execution(execution_id, resume, previous_workers, worker_count, store_groups)

    def _check_flow(
        self, txn: Any, flow_id: str, fingerprint: str, key_groups: int, *, same_version: bool
    ) -> int:
        """Check (or, first time, record) the flow id; return the store's key-group count."""
        meta = self._env().dbs["meta"]
        stored_flow = txn.get(b"flow_id", db=meta)
        if stored_flow is None:
            txn.put(b"flow_id", flow_id.encode(*TEXT_ENCODING), db=meta)
            txn.put(b"fingerprint", fingerprint.encode(*TEXT_ENCODING), db=meta)
            txn.put(b"key_groups", str(key_groups).encode(), db=meta)
            return key_groups
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
        return int(txn.get(b"key_groups", db=meta))

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
        """Record ``step_ids`` as the state steps (and the store as of this format)."""
        meta = self._env().dbs["meta"]
        txn.put(b"state_steps", json.dumps(sorted(step_ids)).encode(), db=meta)
        txn.put(b"format", str(FORMAT_VERSION).encode(), db=meta)

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

    def _discard_from(self, txn: Any, resume: int) -> None:
        """Delete every snapshot at or after ``resume`` (an abandoned execution's future)."""
        snapshots = self._env().dbs["snapshots"]
        cursor = txn.cursor(db=snapshots)
        doomed = [
            key
            for key in cursor.iternext(keys=True, values=False)
            if int.from_bytes(key[-8:], "big") >= resume
        ]
        for key in doomed:
            txn.delete(key, db=snapshots)

    def complete_execution(self, execution_id: int) -> int:
        """Mark an execution whose every worker reached the end of its input.

        Workers that read less input close fewer epochs, so their last durable
        frontiers differ; every worker of a finished execution has committed all it
        will ever write, so each frontier is raised to the highest one. The next
        execution then resumes after everything (it continues after EOF) instead of
        replaying from the lowest worker frontier. Returns that frontier.
        """
        handle = self._env()
        frontiers_db = handle.dbs["frontiers"]
        with self._errors(), handle.env.begin(write=True) as txn:
            frontiers = self._frontiers(txn, execution_id)
            final = max(frontiers.values(), default=FIRST_EPOCH)
            last = self._last_execution(txn)
            if last is not None and last[0] == execution_id:
                for worker in range(last[1]):
                    txn.put(
                        frontier_key(execution_id, worker),
                        final.to_bytes(8, "big"),
                        db=frontiers_db,
                    )
        return final

    def executions(self) -> list[Execution]:
        """Every execution recorded in the store, oldest first."""
        handle = self._env()
        result: list[Execution] = []
        with self._errors(), handle.env.begin() as txn:
            groups = txn.get(b"key_groups", db=handle.dbs["meta"])
            key_groups = DEFAULT_KEY_GROUPS if groups is None else int(groups)
            previous_workers = None
            for key, value in txn.cursor(db=handle.dbs["executions"]):
                worker_count, resume, _, _ = decode_execution(value)
                execution_id = int.from_bytes(key, "big")
                result.append(
                    Execution(execution_id, resume, previous_workers, worker_count, key_groups)
                )
                previous_workers = worker_count
        return result

    def cluster_frontier(self, execution_id: int) -> int:
        """The durable cluster frontier of an execution: the min over its workers.

        A worker that has not committed yet counts as the execution's resume epoch.
        """
        handle = self._env()
        with self._errors(), handle.env.begin() as txn:
            record = txn.get(execution_id.to_bytes(8, "big"), db=handle.dbs["executions"])
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

    def gc(self, cluster_frontier: int | None = None, backup_epochs: int = 0) -> GcResult:
        """Delete snapshots no resume can need any more; return what was done.

        Per (step, key) keeps the newest snapshot at or before the GC horizon
        ``cluster_frontier - backup_epochs - 1`` and every newer one (so the newest
        state or tombstone of a key always survives). ``cluster_frontier`` defaults to
        the durable frontier of the latest execution and may not exceed it
        (ValueError): the store never forgets what a resume needs. Workers may keep
        committing meanwhile: only the deletion takes the write lock.
        """
        handle = self._env()
        snapshots = handle.dbs["snapshots"]
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
            doomed, total = self._gc_candidates(txn.cursor(db=snapshots), horizon)
        with self._errors(), handle.env.begin(write=True) as txn:
            for key in doomed:
                txn.delete(key, db=snapshots)
            if horizon > self._gc_horizon(txn):
                txn.put(b"gc_horizon", str(horizon).encode(), db=handle.dbs["meta"])
        return GcResult(horizon, len(doomed), total - len(doomed))

    @staticmethod
    def _gc_candidates(cursor: Any, horizon: int) -> tuple[list[bytes], int]:
        """Keys of snapshots to delete for ``horizon`` and the count of snapshots seen.

        The rule is :func:`recovery._resume.epochs_to_delete`, applied to each run of
        adjacent keys (all epochs of one key, ascending).
        """
        doomed: list[bytes] = []
        total = 0
        for keys in _group_by_ident(cursor.iternext(keys=True, values=False)):
            total += len(keys)
            if len(keys) > 1:
                epochs = [int.from_bytes(key[-8:], "big") for key in keys]
                kept = [i for i, epoch in enumerate(epochs) if epoch <= horizon]
                if kept:
                    doomed.extend(keys[: kept[-1]])
        return doomed, total

    # -- worker side ---------------------------------------------------------------

    def epoch_writer(self, execution_id: int, worker_index: int) -> EpochWriter:
        """A writer committing ``worker_index``'s snapshots and frontier each epoch."""
        handle = self._env()
        with self._errors(), handle.env.begin() as txn:
            groups = txn.get(b"key_groups", db=handle.dbs["meta"])
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
        return EpochWriter(self, execution_id, worker_index, int(groups), recorded)

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

        Keys: ``path``, ``format``, ``flow_id``, ``fingerprint``, ``key_groups``,
        ``state_steps`` (sorted ids of the steps recorded as holding state),
        ``gc_horizon``, ``data_bytes``, ``next_resume_epoch``, ``executions`` (list of
        dicts with ``execution_id``, ``worker_count``, ``resume_epoch``, ``started_at``,
        ``pid``, ``frontiers`` {worker: frontier}, ``cluster_frontier``) and ``steps``
        ({step id: {``keys``, ``partitions``, ``snapshots``, ``tombstones``, ``bytes``,
        ``oldest_epoch``, ``newest_epoch``}}).
        """
        handle = self._env()
        dbs = handle.dbs
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
        return {
            "path": str(handle.path),
            "format": int(meta["format"]),
            "flow_id": meta.get("flow_id"),
            "fingerprint": meta.get("fingerprint"),
            "key_groups": int(meta["key_groups"]) if "key_groups" in meta else None,
            "state_steps": state_steps,
            "gc_horizon": int(meta.get("gc_horizon", 0)),
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
    ) -> None:
        """Use :meth:`RecoveryStore.epoch_writer`."""
        self.store = store
        self.execution_id = execution_id
        self.worker_index = worker_index
        self.key_groups = key_groups
        self._frontier_key = frontier_key(execution_id, worker_index)
        self._group_bytes = [group.to_bytes(4, "big") for group in range(key_groups)]
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
        be before ``frontier``. Returns the number of snapshots written. Raises
        :class:`StoreFullError` when the map or disk is full (nothing written) and
        :class:`StaleExecutionError` when a newer execution has begun.
        """
        items = self._encode(frontier, snapshots, keyed=True)
        items.extend(self._encode(frontier, partition_snapshots, keyed=False))
        store = self.store
        handle = store._env()
        with store._errors(), handle.env.begin(write=True) as txn:
            self._check_current(txn, frontier)
            if self._unrecorded:
                recorded = store._recorded_steps(txn)
                if not self._unrecorded <= recorded:
                    store._record_steps(txn, recorded | self._unrecorded)
            if items:
                txn.cursor(db=handle.dbs["snapshots"]).putmulti(items)
            txn.put(self._frontier_key, frontier.to_bytes(8, "big"), db=handle.dbs["frontiers"])
        self._recorded |= self._unrecorded
        self._unrecorded.clear()
        return len(items)

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
        self, frontier: int, snapshots: Iterable[Snapshot], *, keyed: bool
    ) -> list[tuple[bytes, bytes]]:
        """Encode (key, value) pairs; hot loop, so locals and cached byte strings."""
        step_prefix = self._step_prefix
        dumps = pickle.dumps
        crc32 = zlib.crc32
        groups = self._group_bytes
        group_count = self.key_groups
        partition_group = self._partition_group
        encoding, errors = TEXT_ENCODING
        tombstone = TOMBSTONE
        items: list[tuple[bytes, bytes]] = []
        append = items.append
        last_epoch = -1
        epoch_bytes = b""
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
            group = groups[crc32(raw) % group_count] if keyed else partition_group
            if state is tombstone:
                value = b""
            else:
                try:
                    value = dumps(state, _PICKLE_PROTOCOL)
                except Exception as error:
                    raise _unpicklable(step_id, state_key, epoch, state, error) from error
            if len(raw) <= INLINE_MAX and not is_digested(step_component):
                append((step_component + group + bytes((len(raw),)) + raw + epoch_bytes, value))
            else:
                key = step_component + group + name_component(raw) + epoch_bytes
                append((key, names_header(step_raw, raw) + value))
        return items


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


def _group_by_ident(keys: Iterable[bytes]) -> Iterator[list[bytes]]:
    """Group adjacent snapshot keys by (step, group, key): all epochs of one key."""
    current = b""
    group: list[bytes] = []
    for key in keys:
        ident = key[:-8]
        if ident == current:
            group.append(key)
            continue
        if group:
            yield group
        current, group = ident, [key]
    if group:
        yield group


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
