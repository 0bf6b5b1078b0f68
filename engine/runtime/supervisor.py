"""The supervisor: runs a flow on N worker processes exchanging batches through shm rings.

Lifecycle of :func:`run_flow`:

1. compile the flow and cloudpickle the plan (an unpicklable step fails here, before any
   process or segment exists, naming the step and the object);
2. create every segment (a ring per ordered worker pair, the counter block) -- the
   supervisor owns them and unlinks them in every exit path;
3. start N workers as fresh interpreters (see :mod:`engine.runtime.worker_main`) and send each
   its bootstrap over a private socket;
4. wait on worker exits (pidfds), control connections and a wakeup pipe in one
   ``multiprocessing.connection.wait``; handle the workers' control messages (the typed
   messages of :mod:`engine.runtime.protocol`): replay relayed sink items and inspector
   calls in the caller (:mod:`engine.runtime.relay`), tell an aborting source through
   :meth:`~engine.inputs.Source.on_abort`; fold worker frontiers into the cluster
   frontier slot;
5. on the first failure stop every worker (SIGTERM, then SIGKILL after a grace period)
   and raise ONE error naming the step, worker and epoch.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import cloudpickle
import psutil

import recovery
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError, ItemTypeError, item_repr
from engine.inputs import Source
from engine.runtime.metrics import CLUSTER_FRONTIER_SLOT, CounterLayout, WorkerSlot
from engine.runtime.plan import InputConfig, Plan, PlanStep, compile_plan
from engine.runtime.ports import LocalClaims
from engine.runtime.progress import EOF_FRONTIER, FIRST_EPOCH, epoch_interval_seconds
from engine.runtime.protocol import (
    Aborted,
    Bootstrap,
    Claim,
    Done,
    Failed,
    Grant,
    Relay,
    check_worker_message,
)
from engine.runtime.relay import with_relays
from engine.runtime.shipping import dumps_plan
from engine.runtime.snapshots import ExecutionInfo, begin_execution
from engine.runtime.summary import ClusterStatus, RunSummary, summarize
from shm import Counters, Ring, cleanup_stale, new_run_id

__all__ = ["ClusterOptions", "ClusterStatus", "RunSummary", "run_flow"]

#: Default frame space of each ring (one per ordered worker pair).
DEFAULT_RING_CAPACITY = 8 * 1024 * 1024
#: How long stopped workers get to exit after SIGTERM before SIGKILL.
STOP_GRACE_S = 2.0
#: How long a started worker may take to report its first heartbeat.
START_TIMEOUT_S = 60.0
#: How often the supervisor wakes to fold frontiers and check heartbeats.
POLL_INTERVAL_S = 0.05
#: How often the supervisor deletes snapshots behind the cluster frontier (recovery on).
GC_INTERVAL_S = 5.0
#: How long the end of a run waits for a background GC to stop (it stops between
#: transactions of ~20-50 ms, so this is a bound, not a delay).
GC_STOP_TIMEOUT_S = 30.0
#: How often the live status callback is called.
STATUS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class ClusterOptions:
    """How to run a flow on worker processes."""

    workers: int = 1
    epoch_interval_s: float = 10.0
    ring_capacity: int = DEFAULT_RING_CAPACITY
    #: Fail the run when a worker makes no progress for this long (None: never).
    stall_timeout_s: float | None = None


class _RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker process."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\n(traceback in the worker process)\n{self.text}"


def _pickle_plan(plan: Plan) -> bytes:
    """Pickle the plan for the workers; name the step and object that cannot be pickled."""
    try:
        return dumps_plan(plan)
    except Exception as ex:
        culprit = _find_unpicklable(plan)
        where = (
            f"step {culprit[0].step_id!r} ({culprit[1]}={item_repr(culprit[2])})"
            if culprit is not None
            else f"flow {plan.flow_id!r}"
        )
        msg = (
            f"cannot send {where} to worker processes: {type(ex).__name__}: {ex}. Every "
            "function, source and sink of a flow must be picklable with cloudpickle; "
            "create resources such as open files, locks or connections inside "
            "build_part()/build() or the function instead of capturing them"
        )
        raise EngineRuntimeError(msg, step_id=culprit[0].step_id if culprit else None) from ex


def _find_unpicklable(plan: Plan) -> tuple[PlanStep, str, Any] | None:
    for step in plan.steps:
        for name, value in vars(step.config).items():
            try:
                cloudpickle.dumps(value)
            except Exception:
                return step, name, value
    return None


# -- worker processes ---------------------------------------------------------------------


#: Where our packages live: workers import ``engine``, ``shm`` and ``recovery`` from here
#: first, so a user's ``recovery.py`` (or ``shm.py``) on the flow's path cannot shadow them.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: Worker processes run this (not ``-m``: the module must keep its one import identity).
#: They start with ``-P`` (no current directory on ``sys.path``), import our packages from
#: ``_PACKAGE_ROOT``, then drop that entry; the caller's ``sys.path`` comes with the bootstrap.
_WORKER_COMMAND = (
    "import sys; sys.path.insert(0, sys.argv[2]); import shm, recovery, engine; "
    "del sys.path[0]; from engine.runtime.worker_main import run_and_exit; "
    "run_and_exit(sys.argv)"
)


@dataclass
class _WorkerProcess:
    index: int
    process: subprocess.Popen[bytes]
    conn: Connection
    pidfd: int
    #: It sent its final message (``Done`` or ``Aborted``).
    done: bool = False
    #: It sent ``Done``: every input exhausted, every epoch closed and committed.
    finished: bool = False
    closed: bool = False
    exited: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


def _start_worker(index: int) -> _WorkerProcess:
    """Start worker process ``index``; it waits for its :class:`Bootstrap` on ``conn``."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            [sys.executable, "-P", "-c", _WORKER_COMMAND, str(theirs.fileno()), _PACKAGE_ROOT],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            # Its own process group: a terminal's Ctrl-C reaches only the supervisor,
            # which stops the workers (even one still starting up, before it could
            # ignore SIGINT itself).
            process_group=0,
        )
    finally:
        theirs.close()
    conn = Connection(ours.detach())
    return _WorkerProcess(index, process, conn, os.pidfd_open(process.pid))


class _Cluster:
    """One execution: segments, workers, the wait loop."""

    def __init__(
        self,
        plan: Plan,
        options: ClusterOptions,
        on_status: Callable[[ClusterStatus], None] | None = None,
        *,
        execution: ExecutionInfo | None = None,
        store: recovery.RecoveryStore | None = None,
    ) -> None:
        self.execution = execution
        self.store = store
        # The wakeup pipe: request_stop() writes to it so the wait loop wakes at once.
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)
        self._stop_requested = False
        self._wakeup_lock = threading.Lock()  # request_stop() vs closing the pipe
        # The first GC starts at once: executions killed within GC_INTERVAL_S of their
        # start would otherwise leave their garbage to the next execution, and the next.
        self._next_gc = time.monotonic()
        #: GCs of the recovery store, in a background thread (None without recovery).
        self._gc: recovery.BackgroundGc | None = None
        if store is not None and execution is not None:
            self._gc = recovery.BackgroundGc(store, execution.backup_epochs)
        #: A source aborted the execution (AbortExecution): stop without error.
        self.aborted = False
        self.options = options
        self.layout = CounterLayout(options.workers, len(plan.steps))
        shipped, self.relays = with_relays(plan)
        self.plan_bytes = _pickle_plan(shipped)
        self.plan = plan
        self.run_id = new_run_id()
        self.rings: dict[tuple[int, int], Ring] = {}
        self.counters: Counters | None = None
        self.workers: list[_WorkerProcess] = []
        self.started = time.monotonic()
        self.on_status = on_status
        self._last_status: tuple[float, int, int] = (self.started, 0, 0)
        self._psutil: dict[int, psutil.Process] = {}
        #: Counts the partitions handed out per input step (see :meth:`_grant`).
        self.claims = LocalClaims(options.workers)

    # -- setup / teardown --------------------------------------------------------------
    def create_segments(self) -> None:
        n = self.options.workers
        self.counters = Counters.create(self.layout.slot_count, run_id=self.run_id, tag="counters")
        for k in range(n):
            for j in range(n):
                if k != j:
                    self.rings[k, j] = Ring.create(
                        self.options.ring_capacity, run_id=self.run_id, tag=f"ring-{k}-{j}"
                    )

    def start_workers(self) -> None:
        assert self.counters is not None
        n = self.options.workers
        # All processes start before any bootstrap is sent: sending a big plan blocks
        # until that worker has started and read it, which would otherwise delay the
        # start of every later worker by the start-up of the ones before.
        for k in range(n):
            self.workers.append(_start_worker(k))
        for k, worker in enumerate(self.workers):
            boot = Bootstrap(
                plan=self.plan_bytes,
                worker_index=k,
                worker_count=n,
                epoch_interval_s=self.options.epoch_interval_s,
                start=self.started,
                first_epoch=FIRST_EPOCH if self.execution is None else self.execution.resume_epoch,
                execution=self.execution,
                outbound={j: self.rings[k, j].spec for j in range(n) if j != k},
                inbound={j: self.rings[j, k].spec for j in range(n) if j != k},
                counters=self.counters.spec,
                parent_pid=os.getpid(),
                step_count=len(self.plan.steps),
                sys_path=list(sys.path),
            )
            worker.conn.send(boot)

    def stop_workers(self) -> None:
        alive = [w for w in self.workers if w.process.poll() is None]
        for w in alive:
            try:
                w.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        for w in alive:
            try:
                w.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
        for w in self.workers:
            self._drain_relays(w)

    def _drain_relays(self, w: _WorkerProcess) -> None:
        """Deliver the relayed items a stopped worker sent before it exited.

        A worker sends its relayed sink items before it commits the epochs they belong
        to; a worker stopped right after a commit (another one aborted or failed) may
        leave them unread in its connection, and they must still reach the caller.
        """
        while not w.closed:
            try:
                if not w.conn.poll():
                    return
                message = w.conn.recv()
            except (EOFError, OSError):
                w.closed = True
                return
            if isinstance(message, Relay):
                self.relays.deliver(message, w.index)

    def release(self) -> None:
        for w in self.workers:
            if w.process.poll() is None:
                w.process.kill()
                w.process.wait()
            w.conn.close()
            os.close(w.pidfd)
        for ring in self.rings.values():
            ring.detach()
            ring.unlink()
        if self.counters is not None:
            self.counters.detach()
            self.counters.unlink()
        with self._wakeup_lock:
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            self._wakeup_w = -1

    # -- running -----------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the wait loop to stop the run (from any thread): wakes it at once."""
        with self._wakeup_lock:
            self._stop_requested = True
            if self._wakeup_w < 0:
                return  # the run is over; its pipe is closed
            try:
                os.write(self._wakeup_w, b"x")
            except BlockingIOError:
                pass  # already woken

    def wait_for_completion(self) -> float | None:
        """Wait until every worker is done; return the wall time if stopped early.

        One ``wait`` watches every worker's exit (pidfd), every control connection and
        the wakeup pipe; it also times out every POLL_INTERVAL_S to fold frontiers and
        check heartbeats.
        """
        assert self.counters is not None
        by_conn = {w.conn: w for w in self.workers}
        by_pidfd = {w.pidfd: w for w in self.workers}
        while not all(w.exited for w in self.workers):
            if self._stop_requested:
                return time.monotonic() - self.started
            waitables: list[Any] = [w.conn for w in self.workers if not (w.exited or w.closed)]
            waitables += [w.pidfd for w in self.workers if not w.exited]
            waitables.append(self._wakeup_r)
            for ready in wait(waitables, timeout=POLL_INTERVAL_S):
                if isinstance(ready, Connection):
                    self._drain(by_conn[ready])
                elif ready == self._wakeup_r:
                    os.read(self._wakeup_r, 64)
                else:
                    self._on_exit(by_pidfd[ready])  # type: ignore[index]
            if self.aborted:
                return None
            self._fold_frontiers()
            self._check_stalls()
            self._collect_garbage()
            if self.on_status is not None:
                self._report_status()
        return None

    def _drain(self, w: _WorkerProcess) -> None:
        """Handle every message ``w`` has sent so far."""
        while True:
            try:
                if not w.conn.poll():
                    return
                message = w.conn.recv()
            except (EOFError, OSError):
                w.closed = True  # the worker is exiting; its pidfd tells when it is gone
                return
            self._handle(w, message)

    def _handle(self, w: _WorkerProcess, message: object) -> None:
        """Act on one control message of ``w`` (see :mod:`engine.runtime.protocol`)."""
        match check_worker_message(message, w.index):
            case Relay() as relay:
                self.relays.deliver(relay, w.index)
            case Claim(step_index=step_index):
                self._grant(w, step_index)
            case Done():
                w.done = w.finished = True
            case Aborted(step_index=step_index, detail=detail):
                w.done = True
                self.aborted = True
                self._report_abort(step_index, detail)
            case Failed() as failed:
                raise self._worker_error(w, failed)

    def _grant(self, w: _WorkerProcess, step_index: int) -> None:
        """Hand ``w`` the next partition of input step ``step_index`` (see
        :class:`~engine.runtime.protocol.Claim`): this loop is the only counter. Worker
        k starts with partition k unasked, so the count starts at the worker count."""
        try:
            w.conn.send(Grant(step_index, self.claims.hand_out(step_index)))
        except OSError:
            pass  # the worker is gone; its exit is handled through its pidfd

    def _on_exit(self, w: _WorkerProcess) -> None:
        self._drain(w)  # read what it sent before exiting
        code = w.process.wait()
        w.exited = True
        if code == 0 and w.done:
            return
        epoch = self._worker_epoch(w.index)
        if code < 0:
            name = signal.Signals(-code).name
            msg = (
                f"worker {w.index} (pid {w.pid}) was killed by signal {-code} ({name}) at "
                f"epoch {epoch}; the other workers were stopped. Check for the OOM killer "
                "(dmesg) or whoever sent the signal, then run again"
            )
        else:
            msg = (
                f"worker {w.index} (pid {w.pid}) exited with status {code} at epoch {epoch} "
                "without reporting an error; see its output above"
            )
        raise EngineRuntimeError(msg, worker_index=w.index, epoch=epoch)

    def _worker_epoch(self, index: int) -> int:
        assert self.counters is not None
        return self.counters.get(self.layout.slot(index, WorkerSlot.EPOCH)) or FIRST_EPOCH

    def _worker_error(self, w: _WorkerProcess, report: Failed) -> EngineRuntimeError:
        """The error to raise in the caller for worker ``w``'s failure report."""
        cause: BaseException | None = None
        if report.cause is not None:
            try:
                cause = cloudpickle.loads(report.cause)
            except Exception:
                cause = None
        if cause is None and report.cause_repr is not None:
            cause = _RemoteTraceback(report.cause_repr)
        remote = _RemoteTraceback(report.traceback)
        if cause is not None and isinstance(cause, BaseException):
            cause.__cause__ = remote
        else:
            cause = remote
        message = report.message
        if not report.engine_error:
            message = f"worker {w.index} (pid {w.pid}) failed: {report.error_type}: {message}"
        error_type = ItemTypeError if report.type_error else EngineRuntimeError
        error = error_type(
            message,
            step_id=report.step_id,
            worker_index=w.index,
            epoch=report.epoch,
        )
        error.__cause__ = cause
        return error

    def _report_abort(self, step_index: int, detail: Any) -> None:
        """Hand the abort's detail to the caller's source (workers aborted on copies)."""
        config = self.plan.steps[step_index].config
        if isinstance(config, InputConfig) and isinstance(config.source, Source):
            config.source.on_abort(detail)

    @property
    def finished(self) -> bool:
        """Every worker reached the end of its input (not stopped, not aborted)."""
        return all(w.done for w in self.workers) and not self.aborted

    def _collect_garbage(self) -> None:
        """At the start and then every GC_INTERVAL_S, start deleting snapshots behind the
        durable cluster frontier.

        The GC runs in a background thread, one at a time, so a store of millions of
        keys never stalls this loop; a GC that failed fails the run from here.
        """
        if self._gc is None or time.monotonic() < self._next_gc:
            return
        self._next_gc = time.monotonic() + GC_INTERVAL_S
        finished = self.finished_workers
        if finished and len(finished) < len(self.workers):
            # Before the GC, so that it may compact what those workers no longer need.
            self._gc.start(before=functools.partial(self.raise_finished_frontiers, finished))
        else:
            self._gc.start()

    @property
    def finished_workers(self) -> list[int]:
        """The workers that reported ``Done``."""
        return [w.index for w in self.workers if w.finished]

    def raise_finished_frontiers(self, finished: list[int] | None = None) -> None:
        """Let workers that finished stop holding back the resume epoch (see
        :meth:`recovery.RecoveryStore.raise_finished_frontiers`): during the run (in the
        GC's thread), in case this process is killed, and once more when it ends early."""
        if self.store is not None and self.execution is not None:
            workers = self.finished_workers if finished is None else finished
            if workers:
                self.store.raise_finished_frontiers(self.execution.execution_id, workers)

    def stop_gc(self, failing: BaseException | None = None) -> None:
        """Wait (bounded) for the background GC to stop; raise its error (a note on ``failing``)."""
        if self._gc is not None:
            self._gc.close(GC_STOP_TIMEOUT_S, failing=failing)

    def _fold_frontiers(self) -> None:
        assert self.counters is not None
        frontiers = [
            self.counters.get(self.layout.slot(w.index, WorkerSlot.FRONTIER)) for w in self.workers
        ]
        self.counters.set(CLUSTER_FRONTIER_SLOT, min(frontiers, default=EOF_FRONTIER))

    def _check_stalls(self) -> None:
        limit = self.options.stall_timeout_s
        if limit is None:
            return
        assert self.counters is not None
        now_ms = int(time.monotonic() * 1000)
        for w in self.workers:
            if w.exited:
                continue
            beat = self.counters.get(self.layout.slot(w.index, WorkerSlot.HEARTBEAT_MS))
            if beat and now_ms - beat > limit * 1000:
                step = self.counters.get(self.layout.slot(w.index, WorkerSlot.CURRENT_STEP))
                step_id = self.plan.steps[step - 1].step_id if step else "(between steps)"
                msg = (
                    f"worker {w.index} (pid {w.pid}) made no progress for more than "
                    f"{limit:g} s in step {step_id!r} at epoch {self._worker_epoch(w.index)} "
                    "(stall timeout); look for an endless loop or a blocking call in that "
                    "step's code, or raise stall_timeout"
                )
                raise EngineRuntimeError(msg, step_id=step_id, worker_index=w.index)

    def _report_status(self) -> None:
        assert self.counters is not None and self.on_status is not None
        now = time.monotonic()
        if now - self._last_status[0] < STATUS_INTERVAL_S:
            return
        values = self.counters.values()
        items_in = self._total(values, WorkerSlot.ITEMS_IN)
        items_out = self._total(values, WorkerSlot.ITEMS_OUT)
        then, last_in, last_out = self._last_status
        span = max(now - then, 1e-9)
        self._last_status = (now, items_in, items_out)
        cpu = []
        for w in self.workers:
            try:
                cpu.append(self._psutil_process(w).cpu_percent(None))
            except psutil.Error:
                cpu.append(0.0)
        self.on_status(
            ClusterStatus(
                elapsed_s=now - self.started,
                items_in_per_s=(items_in - last_in) / span,
                items_out_per_s=(items_out - last_out) / span,
                epoch=max(self._each(values, WorkerSlot.EPOCH), default=0),
                cluster_frontier=int(values[CLUSTER_FRONTIER_SLOT]),
                cpu_percent=cpu,
                ring_full_waits=sum(r.statistics().full_count for r in self.rings.values()),
            )
        )

    def _each(self, values: Any, offset: int) -> list[int]:
        return [int(values[self.layout.slot(w.index, offset)]) for w in self.workers]

    def _total(self, values: Any, offset: int) -> int:
        return sum(self._each(values, offset))

    def _psutil_process(self, w: _WorkerProcess) -> psutil.Process:
        process = self._psutil.get(w.index)
        if process is None:
            process = self._psutil[w.index] = psutil.Process(w.pid)
            process.cpu_percent(None)  # first call primes the measurement
        return process

    def summary(self, wall_time_s: float | None = None) -> RunSummary:
        assert self.counters is not None
        return summarize(
            self.layout,
            self.counters.values(),
            [step.step_id for step in self.plan.steps],
            [w.pid for w in self.workers],
            self.rings,
            time.monotonic() - self.started if wall_time_s is None else wall_time_s,
            started=self.started,
        )


def run_flow(
    flow: Dataflow,
    *,
    workers: int = 1,
    epoch_interval: timedelta | None = None,
    recovery_config: Any = None,
    ring_capacity: int = DEFAULT_RING_CAPACITY,
    stall_timeout: timedelta | None = None,
    on_status: Callable[[ClusterStatus], None] | None = None,
    stop: threading.Event | None = None,
) -> RunSummary:
    """Run ``flow`` on ``workers`` worker processes until every input is exhausted.

    Each worker is a fresh interpreter running the whole flow on its share of the data;
    workers exchange batches through shared-memory rings (``ring_capacity`` bytes per
    ordered pair of workers). ``epoch_interval`` defaults to 10 s. ``stall_timeout``
    fails the run when a worker makes no progress for that long (default: never).
    ``on_status`` is called about twice a second with a :class:`ClusterStatus`.
    Setting ``stop`` (from another thread) ends the run early: the workers are stopped
    and the summary covers what ran until then (figures published by the workers up to
    that moment), without raising.

    Returns a :class:`RunSummary`. Raises :class:`~engine.errors.EngineRuntimeError`
    naming the step, worker and epoch when a worker fails, and ``KeyboardInterrupt``
    after stopping the workers when interrupted.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        msg = f"workers must be a positive int; got {workers!r}"
        raise ValueError(msg)
    options = ClusterOptions(
        workers=workers,
        epoch_interval_s=epoch_interval_seconds(epoch_interval),
        ring_capacity=ring_capacity,
        stall_timeout_s=None if stall_timeout is None else stall_timeout.total_seconds(),
    )
    plan = compile_plan(flow)
    if recovery_config is None:
        return _run_cluster(_Cluster(plan, options, on_status), stop)
    interval = timedelta(seconds=options.epoch_interval_s)
    with begin_execution(recovery_config, plan, workers, interval) as (store, execution):
        cluster = _Cluster(plan, options, on_status, execution=execution, store=store)
        try:
            summary = _run_cluster(cluster, stop)
        except BaseException as error:
            cluster.stop_gc(failing=error)
            try:
                cluster.raise_finished_frontiers()
            except Exception as problem:
                error.add_note(
                    "and the workers that had finished could not record it (the next "
                    f"execution replays their input too): {type(problem).__name__}: {problem}"
                )
            raise
        cluster.stop_gc()
        if cluster.finished:
            store.complete_execution(execution.execution_id)
        else:  # stopped or aborted
            cluster.raise_finished_frontiers()
        store.gc(backup_epochs=execution.backup_epochs)
        return summary


def _run_cluster(cluster: _Cluster, stop: threading.Event | None) -> RunSummary:
    cleanup_stale()  # segments of earlier runs whose supervisor was killed
    finished = threading.Event()
    if stop is not None:
        threading.Thread(target=_relay_stop, args=(stop, finished, cluster), daemon=True).start()
    try:
        cluster.create_segments()
        cluster.start_workers()
        stopped_at = cluster.wait_for_completion()
        if stopped_at is not None or cluster.aborted:
            cluster.stop_workers()
        return cluster.summary(stopped_at)
    except BaseException:
        cluster.stop_workers()
        raise
    finally:
        finished.set()
        cluster.release()


def _relay_stop(stop: threading.Event, finished: threading.Event, cluster: _Cluster) -> None:
    """Turn ``stop`` being set into a wake-up of the supervisor's wait."""
    while not finished.is_set():
        if stop.wait(POLL_INTERVAL_S):
            if not finished.is_set():
                cluster.request_stop()
            return
