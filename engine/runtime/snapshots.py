"""Wiring the recovery store into the runtime.

Supervisor side (:func:`begin_execution`): take the store's execution lock, hand the
store the flow's state-holding steps (:func:`state_step_ids`; the store refuses a flow
that lost a step with state, unless the config drops it), record the execution
(id = previous + 1) and learn the resume epoch, all before any worker starts.

Worker side (:class:`StoreSnapshots`): a :class:`~engine.runtime.ports.SnapshotRecorder`
that loads this worker's share of state (its key groups, its partitions: any worker
count works, which is what rescaling is) and, whenever the worker frontier advances,
writes the snapshots of the closed epochs plus the frontier in ONE transaction. The
worker publishes its frontier only after that commit returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import recovery
from engine.inputs import FixedPartitionedSource
from engine.outputs import FixedPartitionedSink
from engine.runtime.plan import InputConfig, OutputConfig, Plan, StepKind
from engine.runtime.progress import EOF_FRONTIER
from recovery import RecoveryConfig, owned_groups

if TYPE_CHECKING:
    from recovery import Execution, RecoveryStore

__all__ = [
    "ExecutionInfo",
    "StoreSnapshots",
    "begin_execution",
    "flow_fingerprint",
    "state_step_ids",
]


def state_step_ids(plan: Plan) -> frozenset[str]:
    """The ids of the plan's steps that write snapshots: what a resume must keep.

    Stateful steps (keyed state), inputs of partitioned sources and partitioned sinks
    (partition states). Stateless steps and dynamic sources/sinks hold no state, so
    adding, changing or removing them never affects a resume.
    """
    return frozenset(step.step_id for step in plan.steps if _holds_state(step.kind, step.config))


def _holds_state(kind: StepKind, config: object) -> bool:
    if kind is StepKind.STATEFUL_BATCH:
        return True
    if isinstance(config, InputConfig):
        return isinstance(config.source, FixedPartitionedSource)
    if isinstance(config, OutputConfig):
        return isinstance(config.sink, FixedPartitionedSink)
    return False


def flow_fingerprint(plan: Plan) -> str:
    """A hash of the flow's shape (step ids, kinds, wiring), not of its user code.

    Recorded in the store as a label of the flow's version (``python -m recovery
    inspect`` shows it); it does not decide whether an edited flow may resume, the
    state-holding steps (:func:`state_step_ids`) do.
    """
    import hashlib  # here: only the supervisor computes it; a worker need not load OpenSSL

    digest = hashlib.blake2b(digest_size=16)
    digest.update(plan.flow_id.encode())
    for step in plan.steps:
        digest.update(repr((step.step_id, step.kind, step.ups, step.downs)).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ExecutionInfo:
    """What workers need to know about the execution they belong to. Picklable."""

    db_dir: str
    execution_id: int
    resume_epoch: int
    key_groups: int
    backup_epochs: int
    #: The store's key hash (``recovery.key_group``): route keys where their state is.
    key_hash: str = recovery.DEFAULT_KEY_HASH


def _check_config(recovery_config: Any) -> RecoveryConfig:
    if not isinstance(recovery_config, RecoveryConfig):
        msg = (
            f"recovery_config must be a recovery.RecoveryConfig; got "
            f"{type(recovery_config).__name__} {recovery_config!r}"
        )
        raise TypeError(msg)
    return recovery_config


@contextlib.contextmanager
def begin_execution(
    recovery_config: Any, plan: Plan, worker_count: int, epoch_interval: timedelta
) -> Iterator[tuple[RecoveryStore, ExecutionInfo]]:
    """Lock the store for one execution and record it; yield the store and the info.

    The lock is held until the ``with`` block ends (the whole execution).
    """
    config = _check_config(recovery_config)
    store = recovery.RecoveryStore.open(config.db_dir)
    try:
        with store.lock_for_execution():
            execution: Execution = store.begin_execution(
                plan.flow_id,
                flow_fingerprint(plan),
                worker_count,
                state_steps=state_step_ids(plan),
                drop_state=config.drop_state,
            )
            backup = config.backup_epochs(epoch_interval) if epoch_interval > timedelta(0) else 0
            yield (
                store,
                ExecutionInfo(
                    db_dir=str(config.db_dir),
                    execution_id=execution.execution_id,
                    resume_epoch=execution.resume_epoch,
                    key_groups=execution.key_groups,
                    backup_epochs=backup,
                    key_hash=execution.key_hash,
                ),
            )
    finally:
        store.close()


class StoreSnapshots:
    """The snapshot recorder of one worker, backed by the recovery store."""

    def __init__(
        self,
        info: ExecutionInfo,
        worker_index: int,
        worker_count: int,
        store: RecoveryStore | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self.info = info
        #: Called before every commit: a worker process sends the items its relayed
        #: sinks got, so output of a committed epoch is never only in its buffers.
        self._before_commit = before_commit
        self.worker_index = worker_index
        self.worker_count = worker_count
        self._owns_store = store is None
        self.store = store if store is not None else recovery.RecoveryStore.open(info.db_dir)
        self.writer = self.store.epoch_writer(info.execution_id, worker_index)
        self.groups = owned_groups(worker_index, info.key_groups, worker_count)
        self._partitions: dict[str, dict[str, Any]] = {}
        #: (step_id, key, epoch, state) recorded but not yet committed.
        self._keyed: list[tuple[str, str, int, Any]] = []
        self._partition_records: list[tuple[str, str, int, Any]] = []
        self._last_epoch = info.resume_epoch
        #: The durable frontier of this worker's last commit.
        self._committed = info.resume_epoch

    # -- resume ------------------------------------------------------------------------
    def resume_state(self, step_id: str, key: str) -> Any:
        states = self._partitions.get(step_id)
        if states is None:
            states = self._partitions[step_id] = self.store.load_partition_states(
                step_id, self.info.resume_epoch
            )
        return states.get(key)

    def resume_states(self, step_id: str) -> dict[str, Any]:
        return self.store.load_keyed_states(step_id, self.groups, self.info.resume_epoch)

    # -- snapshots ---------------------------------------------------------------------
    def record(self, step_id: str, key: str, epoch: int, state: Any) -> None:
        self._keyed.append((step_id, key, epoch, state))

    def record_partition(self, step_id: str, name: str, epoch: int, state: Any) -> None:
        self._partition_records.append((step_id, name, epoch, state))

    def commit(self, frontier: int, epoch: int) -> None:
        """Write everything recorded for epochs before ``frontier``, and the frontier.

        At EOF the durable frontier is the epoch after the last one (so a later
        execution continues after the end, as Bytewax does), not the EOF marker.
        """
        if self._before_commit is not None:
            self._before_commit()
        self._last_epoch = max(self._last_epoch, epoch)
        if frontier >= EOF_FRONTIER:
            recorded = [r[2] for r in self._keyed] + [r[2] for r in self._partition_records]
            durable = max([self._last_epoch + 1, self._committed, *(e + 1 for e in recorded)])
            keyed, self._keyed = self._keyed, []
            partitions, self._partition_records = self._partition_records, []
        else:
            durable = frontier
            keyed = [r for r in self._keyed if r[2] < frontier]
            self._keyed = [r for r in self._keyed if r[2] >= frontier]
            partitions = [r for r in self._partition_records if r[2] < frontier]
            self._partition_records = [r for r in self._partition_records if r[2] >= frontier]
        self.writer.commit_epoch(durable, keyed, partitions)
        self._committed = durable

    def close(self) -> None:
        if self._owns_store:
            self.store.close()
