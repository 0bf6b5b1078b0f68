"""The runtime: executes a compiled plan on one worker or on N worker processes.

Nothing here is public API; users reach it through :func:`engine.run_flow`,
the testing helpers and ``python -m engine.run``. Layers, one way only:
``engine.runtime`` imports the public definitions (dataflow, inputs, outputs,
operators' logic classes), ``shm`` and ``recovery``; it never imports
the testing helpers or the commands (``tests/test_layers.py`` checks it).

- :mod:`~engine.runtime.plan`: a Dataflow compiled into typed core steps.
- :mod:`~engine.runtime.progress`: pure frontier and epoch bookkeeping.
- :mod:`~engine.runtime.ports`: what a worker plugs in (exchange, snapshots).
- :mod:`~engine.runtime.nodes`: the running form of each core step.
- :mod:`~engine.runtime.worker`: one worker executing a plan.
- :mod:`~engine.runtime.exchange`: the exchange over shared-memory rings.
- :mod:`~engine.runtime.snapshots`: snapshots into the recovery store.
- :mod:`~engine.runtime.metrics`, :mod:`~engine.runtime.summary`: counters and run summaries.
- :mod:`~engine.runtime.protocol`: the typed control messages between worker and supervisor.
- :mod:`~engine.runtime.relay`: sink items and inspector calls sent back to the caller.
- :mod:`~engine.runtime.worker_main`: a worker process's entry point.
- :mod:`~engine.runtime.supervisor`: runs a flow on N worker processes.
"""
