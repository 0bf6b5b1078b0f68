"""Entry point of a worker process (``main(["", FD])`` in a fresh interpreter).

The supervisor starts every worker as a fresh interpreter (never a fork, and never
re-importing the user's ``__main__``) with one end of a socket pair as file descriptor
``FD``. Over it the worker receives its :class:`~engine.runtime.protocol.Bootstrap` (the
cloudpickled plan, its index, the ring and counter specs) and sends back
:class:`~engine.runtime.protocol.Relay` messages (relayed sink items and inspector
calls), then one final ``Done``, ``Aborted`` or ``Failed``; see
:mod:`engine.runtime.protocol`. Heartbeats, epochs, frontiers and metrics go into the
worker's slots of the shared counter block instead.

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

from engine.runtime.control import ControlClaims, ControlConnection
from engine.runtime.metrics import STEP_SLOTS, WORKER_SLOTS, CounterLayout, StepSlot, WorkerSlot
from engine.runtime.ports import WorkerConfig
from engine.runtime.protocol import Aborted, Bootstrap, Done, Failed, expect_from_supervisor
from engine.runtime.relay import RelayChannel
from engine.runtime.shipping import loads_plan
from engine.runtime.snapshots import StoreSnapshots
from engine.runtime.worker import Worker
from recovery import DEFAULT_KEY_GROUPS, DEFAULT_KEY_HASH
from shm import Counters, Ring

__all__ = ["main", "run_and_exit"]

_PR_SET_PDEATHSIG = 1


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


def _receive_bootstrap(conn: ControlConnection) -> Bootstrap:
    return expect_from_supervisor(conn.recv(), Bootstrap, None)


def _run(boot: Bootstrap, channel: RelayChannel) -> Done | Aborted:
    """Run the worker ``boot`` describes; return its final message (or raise)."""
    for entry in reversed(boot.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    counters = Counters.attach(boot.counters)
    outbound = {j: Ring.attach(spec, role="producer") for j, spec in boot.outbound.items()}
    inbound = {j: Ring.attach(spec, role="consumer") for j, spec in boot.inbound.items()}
    layout = CounterLayout(boot.worker_count, boot.step_count)
    publisher = _Publisher(counters, layout, boot.worker_index, boot.parent_pid)
    publisher.heartbeat()

    def on_round(running: Worker) -> None:
        publisher.on_round(running)
        channel.flush()  # relayed items reach the caller at least once a round

    worker: Worker | None = None
    snapshots: StoreSnapshots | None = None
    try:
        from engine.runtime.exchange import RingExchange

        plan = loads_plan(boot.plan)
        info = boot.execution
        snapshots = (
            None
            if info is None
            else StoreSnapshots(
                info, boot.worker_index, boot.worker_count, before_commit=channel.flush
            )
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
            key_hash=DEFAULT_KEY_HASH if info is None else info.key_hash,
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
            claims=ControlClaims(channel.conn, boot.worker_index),
            on_round=on_round,
            on_frontier=publisher.on_frontier,
            on_ready=publisher.on_ready,
        )
        gauge = WorkerSlot.CURRENT_STEP
        worker.step_gauge = publisher.block[gauge : gauge + 1]
        publisher.on_frontier(boot.first_epoch)
        finished = worker.run()
        publisher.publish_details(worker)
        channel.flush()
        if finished:
            return Done()
        assert worker.aborted is not None, "Worker.run() returns False only when aborted"
        return Aborted(step_index=worker.aborted.step_index, detail=worker.aborted.detail)
    finally:
        if worker is not None:
            worker.step_gauge = None
        if snapshots is not None:
            snapshots.close()
        publisher.block = None  # type: ignore[assignment]
        for ring in [*outbound.values(), *inbound.values()]:
            ring.detach()
        counters.detach()


def main(argv: list[str]) -> int:
    """Run one worker; the exit status tells the supervisor how it ended."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    _die_with_parent()
    conn = ControlConnection(int(argv[1]))
    channel = RelayChannel.current = RelayChannel(conn)
    worker_index: int | None = None
    try:
        boot = _receive_bootstrap(conn)
        worker_index = boot.worker_index
        conn.send(_run(boot, channel))  # pickled before anything is written: may fail whole
    except BaseException as ex:  # report everything to the supervisor, then exit non-zero
        try:
            conn.send(Failed.from_exception(ex, worker_index))
        except OSError:
            pass
        return 1
    return 0


def run_and_exit(argv: list[str]) -> None:
    """Run one worker and leave without interpreter teardown (nothing is left to tidy:
    rings and counters are detached and the supervisor has been told)."""
    status = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
