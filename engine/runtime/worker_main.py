"""Entry point of a worker process (``main(["", FD])`` in a fresh interpreter).

The supervisor starts every worker as a fresh interpreter (never a fork, and never
re-importing the user's ``__main__``) with one end of a socket pair as file descriptor
``FD``. Over it the worker receives its bootstrap (the cloudpickled plan, its index,
the ring and counter specs) and sends back relayed sink items and inspector calls, and
finally ``done`` or the error that stopped it.

Ownership: the supervisor creates and unlinks every segment; a worker only attaches and
detaches. A worker ignores SIGINT (the supervisor decides how a run stops), dies with its
parent (``PR_SET_PDEATHSIG`` plus a parent-pid check every round) and exits on SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from engine.errors import EngineRuntimeError
from engine.runtime.metrics import STEP_SLOTS, WORKER_SLOTS, CounterLayout, StepSlot, WorkerSlot
from engine.runtime.ports import WorkerConfig
from engine.runtime.snapshots import ExecutionInfo, StoreSnapshots
from engine.runtime.worker import Worker
from recovery import DEFAULT_KEY_GROUPS
from shm import Counters, Ring, RingSpec

__all__ = ["Bootstrap", "RelayChannel", "main", "run_and_exit"]

#: Relay messages are flushed to the supervisor when this many are buffered.
RELAY_FLUSH_ITEMS = 1000
_PR_SET_PDEATHSIG = 1


@dataclass
class Bootstrap:
    """Everything a worker needs, sent by the supervisor right after start."""

    plan: bytes
    worker_index: int
    worker_count: int
    epoch_interval_s: float
    start: float
    first_epoch: int
    outbound: dict[int, RingSpec]
    inbound: dict[int, RingSpec]
    counters: Any
    parent_pid: int
    execution: ExecutionInfo | None = None
    step_count: int = 0
    sys_path: list[str] = field(default_factory=list)


class RelayChannel:
    """Buffers messages for the supervisor (sink items, inspector calls); sends in bulk."""

    current: RelayChannel | None = None

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.buffer: list[tuple[str, int, Any]] = []
        self.size = 0

    def add(self, kind: str, step_index: int, payload: list[Any]) -> None:
        self.buffer.append((kind, step_index, payload))
        self.size += len(payload)
        if self.size >= RELAY_FLUSH_ITEMS:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.conn.send(("relay", self.buffer))
            self.buffer = []
            self.size = 0


def _peak_rss_kb(fallback_kb: int) -> int:
    """This process's peak resident set size since exec, in KiB.

    ``VmHWM`` starts afresh at exec; ``ru_maxrss`` would carry over the peak of the
    supervisor the worker was forked from.
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return fallback_kb


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the per-round parent check still ends the worker


class _Publisher:
    """Writes this worker's counter slots (its block has no other writer)."""

    #: Per-step figures and process figures are published at most this often.
    DETAIL_INTERVAL_S = 0.1

    def __init__(
        self, counters: Counters, layout: CounterLayout, worker_index: int, parent: int
    ) -> None:
        self.counters = counters
        self.layout = layout
        self.index = worker_index
        self.parent = parent
        block = layout.worker_block(worker_index)
        self.block = counters.writable_slots(block.start, block.stop)
        self.next_detail = 0.0
        self.rounds = 0

    def slot(self, offset: int) -> int:
        return self.layout.slot(self.index, offset)

    def heartbeat(self) -> None:
        if os.getppid() != self.parent:
            os._exit(3)  # the supervisor is gone: stop at once, commit nothing more
        self.block[WorkerSlot.HEARTBEAT_MS] = int(time.monotonic() * 1000)

    def on_round(self, worker: Worker) -> None:
        self.heartbeat()
        self.rounds += 1
        block = self.block
        block[WorkerSlot.EPOCH] = worker.epoch
        block[WorkerSlot.ITEMS_IN] = worker.items_in
        block[WorkerSlot.ITEMS_OUT] = worker.items_out
        if worker.first_input_at is not None and not block[WorkerSlot.FIRST_INPUT_MS]:
            block[WorkerSlot.FIRST_INPUT_MS] = int(worker.first_input_at * 1000)
        if time.monotonic() >= self.next_detail:
            self.publish_details(worker)
        if RelayChannel.current is not None:
            RelayChannel.current.flush()

    def publish_details(self, worker: Worker) -> None:
        """Per-step figures, exchange and process figures (every DETAIL_INTERVAL_S)."""
        self.next_detail = time.monotonic() + self.DETAIL_INTERVAL_S
        block = self.block
        exchange = worker.exchange
        block[WorkerSlot.ITEMS_SENT] = getattr(exchange, "items_sent", 0)
        block[WorkerSlot.ITEMS_RECEIVED] = getattr(exchange, "items_received", 0)
        block[WorkerSlot.BLOCKED_NS] = getattr(exchange, "blocked_ns", 0)
        block[WorkerSlot.BACKLOG] = len(getattr(exchange, "backlog", ()))
        block[WorkerSlot.IDLE_NS] = worker.idle_ns
        block[WorkerSlot.COMMITS] = worker.commits
        block[WorkerSlot.COMMIT_NS] = worker.commit_ns
        block[WorkerSlot.EPOCHS_CLOSED] = worker.epochs_closed
        block[WorkerSlot.CLOSE_LAG_NS_TOTAL] = worker.close_lag_ns_total
        block[WorkerSlot.CLOSE_LAG_NS_MAX] = worker.close_lag_ns_max
        if worker.first_input_at is not None:
            block[WorkerSlot.FIRST_INPUT_MS] = int(worker.first_input_at * 1000)
        block[WorkerSlot.ROUNDS] = self.rounds
        usage = resource.getrusage(resource.RUSAGE_SELF)
        block[WorkerSlot.CPU_NS] = int((usage.ru_utime + usage.ru_stime) * 1e9)
        block[WorkerSlot.MAX_RSS_KB] = _peak_rss_kb(usage.ru_maxrss)
        for node in worker.nodes:
            stats = node.stats()
            base = WORKER_SLOTS + node.step.index * STEP_SLOTS
            block[base + StepSlot.ITEMS_IN] = stats.items_in
            block[base + StepSlot.ITEMS_OUT] = stats.items_out
            block[base + StepSlot.BATCHES] = stats.batches
            block[base + StepSlot.BUSY_NS] = stats.busy_ns

    def on_ready(self) -> None:
        """Partitions built and state loaded: the worker starts its first round."""
        self.block[WorkerSlot.READY_MS] = int(time.monotonic() * 1000)

    def on_frontier(self, frontier: int) -> None:
        self.block[WorkerSlot.FRONTIER] = frontier


def _run(conn: Connection) -> bool:
    boot: Bootstrap = conn.recv()
    for entry in reversed(boot.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    counters = Counters.attach(boot.counters)
    outbound = {j: Ring.attach(spec, role="producer") for j, spec in boot.outbound.items()}
    inbound = {j: Ring.attach(spec, role="consumer") for j, spec in boot.inbound.items()}
    layout = CounterLayout(boot.worker_count, boot.step_count)
    publisher = _Publisher(counters, layout, boot.worker_index, boot.parent_pid)
    publisher.heartbeat()
    worker: Worker | None = None
    snapshots: StoreSnapshots | None = None
    try:
        from engine.runtime.exchange import RingExchange

        plan = cloudpickle.loads(boot.plan)
        info = boot.execution
        snapshots = (
            None if info is None else StoreSnapshots(info, boot.worker_index, boot.worker_count)
        )
        exchange = RingExchange(
            plan,
            boot.worker_index,
            boot.worker_count,
            outbound,
            inbound,
            boot.first_epoch,
            on_wait=publisher.heartbeat,
            key_groups=DEFAULT_KEY_GROUPS if info is None else info.key_groups,
        )
        config = WorkerConfig(
            worker_index=boot.worker_index,
            worker_count=boot.worker_count,
            epoch_interval_s=boot.epoch_interval_s,
            start=boot.start,
            first_epoch=boot.first_epoch,
        )
        worker = Worker(
            plan,
            config,
            exchange=exchange,
            snapshots=snapshots,
            on_round=publisher.on_round,
            on_frontier=publisher.on_frontier,
            on_ready=publisher.on_ready,
        )
        gauge = WorkerSlot.CURRENT_STEP
        worker.step_gauge = publisher.block[gauge : gauge + 1]
        publisher.on_frontier(boot.first_epoch)
        finished = worker.run()
        publisher.publish_details(worker)
        if RelayChannel.current is not None:
            RelayChannel.current.flush()
        if not finished and worker.aborted is not None:
            conn.send(("aborted", (worker.aborted.step_index, worker.aborted.marker_index)))
        return finished
    finally:
        if worker is not None:
            worker.step_gauge = None
        if snapshots is not None:
            snapshots.close()
        publisher.block = None  # type: ignore[assignment]
        for ring in [*outbound.values(), *inbound.values()]:
            ring.detach()
        counters.detach()


def _error_report(ex: BaseException) -> dict[str, Any]:
    cause = ex.__cause__ if ex.__cause__ is not None else None
    try:
        pickled_cause = cloudpickle.dumps(cause) if cause is not None else None
    except Exception:
        pickled_cause = None
    return {
        "type": type(ex).__name__,
        "is_engine_error": isinstance(ex, EngineRuntimeError),
        "is_type_error": isinstance(ex, TypeError),
        "message": str(ex),
        "step_id": getattr(ex, "step_id", None),
        "epoch": getattr(ex, "epoch", None),
        "traceback": "".join(traceback.format_exception(ex)),
        "cause": pickled_cause,
        "cause_repr": f"{type(cause).__name__}: {cause}" if cause is not None else None,
    }


def main(argv: list[str]) -> int:
    """Run one worker; the exit status tells the supervisor how it ended."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    _die_with_parent()
    conn = Connection(int(argv[1]))
    RelayChannel.current = RelayChannel(conn)
    try:
        finished = _run(conn)
    except BaseException as ex:  # report everything to the supervisor, then exit non-zero
        try:
            conn.send(("error", _error_report(ex)))
        except OSError:
            pass
        return 1
    if finished:
        conn.send(("done", None))
    return 0


def run_and_exit(argv: list[str]) -> None:
    """Run one worker and leave without interpreter teardown (nothing is left to tidy:
    rings and counters are detached and the supervisor has been told)."""
    status = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
