"""Run a flow, translated for Bytewax, on two Bytewax processes over loopback.

:func:`run_on_bytewax_processes` is the ``bytewax-2proc`` mode of the ``entry_point``
fixture. It forks one child per Bytewax process (the flow is already built in this
process, so nothing of it is pickled, test lambdas included); each child runs
``bytewax.testing.cluster_main`` with its ``proc_id`` and the addresses of free loopback
ports. This process plays the part shmflow's supervisor plays in the cluster modes:

- What a worker writes to a :class:`~engine.outputs.CallerSink` (``TestingSink``) is sent
  here as it is written and handed to ``write_in_caller`` on the caller's sink object, so
  a test's lists fill as in every other mode (batches of different processes interleave,
  as batches of different workers do).
- A source's ``on_abort`` runs here, on the caller's source, once the execution stopped:
  a ``TestingSource.ABORT`` marker is then skipped by the next execution.
- An abort stops every process. Bytewax 0.21 stops only the workers of the process whose
  source raised ``AbortExecution``; the other processes wait for their progress forever
  and the aborted process waits for the others to disconnect (Bytewax's own
  ``TestingSource.ABORT`` on two processes hangs the same way). The abort report is the
  last message of the aborted process, so once it arrives every child is killed, what
  the others sent is read to the end, and the run returns normally, as an abort does
  (what they had not written yet is lost, as in a crash).
- Process i of a timely cluster connects to processes 0..i-1, and when one does not
  listen yet it prints an error to stdout and tries again a second later; each child is
  started once the ones before it listen, which keeps out both the second and the noise.
- A child that fails or dies ends the run: the others get :data:`FAILURE_GRACE_S` to
  report their side (a Bytewax process whose peer failed panics too), then every child
  is killed and :class:`BytewaxProcessesError` carries each child's traceback and stderr.
  On several processes Bytewax 0.21 reports an error in a user's function only as a
  ``PanicException`` ("Send thread panic"): the ``bytewax`` mode of the same test (one
  worker, in the test process) shows the error itself.
  A child still running after :data:`TIMEOUT_S` dumps its stacks and exits (faulthandler),
  which ends the run the same way.

A child's fd 2 is a file of its own, copied to this process's stderr once the child
ended; its stdout is this process's, so ``capfd`` sees what inspectors print.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import IO, Any

import psutil

from engine.bytewax import to_bytewax
from engine.dataflow import Dataflow
from engine.outputs import CallerSink

__all__ = [
    "PROCESSES",
    "TIMEOUT_S",
    "BytewaxProcessesError",
    "free_ports",
    "run_on_bytewax_processes",
]

#: Bytewax processes per run.
PROCESSES = 2
#: Longest run of one flow (below pytest's timeout, so children never outlive a test).
TIMEOUT_S = 60.0
#: How long the other processes get to report once one failed, or to exit once timed out.
FAILURE_GRACE_S = 5.0
#: How often to look whether the last child started listens yet.
LISTEN_POLL_S = 0.002
#: prctl(2) option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1
#: What faulthandler writes first when a child timed out.
_TIMEOUT_MARK = "Timeout ("


class BytewaxProcessesError(AssertionError):
    """A Bytewax process failed, died or hung; the message has every process's report."""


def run_on_bytewax_processes(
    flow: Dataflow, *, epoch_interval: timedelta | None = None, processes: int = PROCESSES
) -> None:
    """Run ``flow``, translated by ``to_bytewax``, on ``processes`` Bytewax processes.

    Returns when every process finished, or when one aborted; raises
    :class:`BytewaxProcessesError` when one failed, died or ran longer than
    :data:`TIMEOUT_S`.
    """
    ports = free_ports(processes)
    job = _Job(
        bw_flow=to_bytewax(flow),
        sinks=[step.config["sink"] for step in flow.core_steps if step.kind == "output"],
        sources=[step.config["source"] for step in flow.core_steps if step.kind == "input"],
        addresses=[f"127.0.0.1:{port}" for port in ports],
        epoch_interval=epoch_interval,
    )
    deadline = time.monotonic() + TIMEOUT_S + FAILURE_GRACE_S
    with contextlib.ExitStack() as stack:
        children: list[_Child] = []
        for proc_id, port in enumerate(ports):
            stderr = stack.enter_context(tempfile.TemporaryFile())
            children.append(_Child.start(job, proc_id, stderr))
            stack.callback(children[-1].reap)
            if proc_id < processes - 1:
                _await_listening(children, port, deadline)
        aborts = _relay(children, job, deadline)
    for source_index, detail in aborts:
        job.sources[source_index].on_abort(detail)


@dataclass(frozen=True)
class _Job:
    """What every child needs: the translated flow and the objects it reports about."""

    bw_flow: Any
    sinks: list[Any]
    sources: list[Any]
    addresses: list[str]
    epoch_interval: timedelta | None


# -- the parent --------------------------------------------------------------------------------


@dataclass
class _Child:
    """One Bytewax process: its pipe, its stderr file, and how it ended."""

    proc_id: int
    process: BaseProcess
    reader: Connection
    stderr: IO[bytes]
    outcome: str = "still running"

    @staticmethod
    def start(job: _Job, proc_id: int, stderr: IO[bytes]) -> _Child:
        ctx = multiprocessing.get_context("fork")
        reader, writer = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=_child_main, args=(job, proc_id, writer, stderr), name=f"bytewax-{proc_id}"
        )
        process.start()
        writer.close()
        return _Child(proc_id, process, reader, stderr)

    def receive(self) -> tuple[Any, ...] | None:
        """The next message, or None once the pipe is closed (the child ended)."""
        try:
            message: tuple[Any, ...] = self.reader.recv()
        except (EOFError, OSError):
            if self.outcome == "still running":
                self.outcome = "hung" if _TIMEOUT_MARK in self.stderr_text() else "died"
            return None
        if message[0] == "done":
            self.outcome = "done"
        elif message[0] == "abort":
            self.outcome = "aborted"
        elif message[0] == "failed":
            self.outcome = f"failed\n{message[1]}"
        return message

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def reap(self) -> None:
        """Kill it if still running, wait for its exit, copy its stderr to ours."""
        self.kill()
        self.process.join()
        self.reader.close()
        text = self.stderr_text()
        if text:
            sys.stderr.write(f"[Bytewax process {self.proc_id}, stderr]\n{text}")

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def report(self) -> str:
        return (
            f"--- Bytewax process {self.proc_id}: {self.outcome} (exit code "
            f"{self.process.exitcode}); stderr:\n{self.stderr_text()}"
        )


def _await_listening(children: list[_Child], port: int, deadline: float) -> None:
    """Return once the last child started listens on ``port``, reported, or died."""
    child = children[-1]
    assert child.process.pid is not None
    while time.monotonic() < deadline:
        try:
            if port in _listening_ports(child.process.pid):
                return
        except psutil.NoSuchProcess:
            return  # it died: _relay reports it
        if wait([child.reader, child.process.sentinel], timeout=LISTEN_POLL_S):
            return  # it reported (a failure) or died: _relay reports it
    _fail(children, f"Bytewax process {child.proc_id} did not listen on port {port}")


def _listening_ports(pid: int) -> set[int]:
    process = psutil.Process(pid)
    connections = getattr(process, "net_connections", None) or process.connections
    return {
        conn.laddr.port for conn in connections(kind="tcp4") if conn.status == psutil.CONN_LISTEN
    }


def _relay(children: list[_Child], job: _Job, deadline: float) -> list[tuple[int, Any]]:
    """Relay every child's messages until every pipe is closed; return the aborts."""
    aborts: list[tuple[int, Any]] = []
    failure: str | None = None
    live = {child.reader: child for child in children}
    while live:
        ready = wait(list(live), timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            failure = failure or f"the run did not end within {TIMEOUT_S:.0f} s"
            break
        for reader in ready:
            child = live[reader]  # type: ignore[index]
            message = child.receive()
            if message is None:
                del live[child.reader]
                if child.outcome != "done" and not aborts and failure is None:
                    failure = f"Bytewax process {child.proc_id} {child.outcome.split()[0]}"
                    deadline = min(deadline, time.monotonic() + FAILURE_GRACE_S)
            elif message[0] == "write":
                _, sink_index, items, worker_index = message
                job.sinks[sink_index].write_in_caller(items, worker_index)
            elif message[0] == "abort":
                aborts.append((message[1], message[2]))
                for other in children:  # they never end (see the module docstring)
                    other.kill()
    if failure is not None:
        _fail(children, failure)
    return aborts


def _fail(children: list[_Child], what: str) -> None:
    for child in children:
        child.kill()
        child.process.join()
    reports = "\n".join(child.report() for child in children)
    raise BytewaxProcessesError(f"{what}; every process is stopped.\n{reports}")


def free_ports(count: int) -> list[int]:
    """Loopback ports free right now (each bound once by the OS, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# -- a child -----------------------------------------------------------------------------------


def _child_main(job: _Job, proc_id: int, conn: Connection, stderr: IO[bytes]) -> None:
    """Run this process's share of the cluster, reporting through ``conn``."""
    import bytewax.testing

    _die_with_parent()
    with _own_stderr(stderr):
        faulthandler.dump_traceback_later(TIMEOUT_S, exit=True, file=sys.stderr)
        # This process has copies of the flow's sinks and sources (fork): their methods
        # send what they are given to the caller, which calls them on the originals.
        for index, sink in enumerate(job.sinks):
            if isinstance(sink, CallerSink):
                sink.write_in_caller = _Forward(conn, "write", index)  # type: ignore[method-assign,assignment]
        for index, source in enumerate(job.sources):
            source.on_abort = _Forward(conn, "abort", index)
        try:
            bytewax.testing.cluster_main(
                job.bw_flow, job.addresses, proc_id, epoch_interval=job.epoch_interval
            )
        except BaseException:  # Bytewax's panics are BaseExceptions
            conn.send(("failed", traceback.format_exc()))
        else:
            conn.send(("done",))


@dataclass(frozen=True)
class _Forward:
    """A sink's or source's method in a child: sends its arguments to the caller."""

    conn: Connection
    kind: str
    index: int

    def __call__(self, *args: Any) -> None:
        if self.kind == "abort":
            sys.stdout.flush()  # nothing runs after an abort: what was printed must be out
        self.conn.send((self.kind, self.index, *args))


@contextlib.contextmanager
def _own_stderr(file: IO[bytes]) -> Iterator[None]:
    """Point fd 2 (where Rust's panics go) and ``sys.stderr`` at ``file``."""
    os.dup2(file.fileno(), 2)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    try:
        yield
    finally:
        sys.stderr.flush()


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this process if the test process dies first."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
