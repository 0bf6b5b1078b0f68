"""The running form of the core steps.

A node gets a :class:`~engine.runtime.nodes.base.NodeContext` (the worker's config,
epoch clock, exchange, snapshot recorder and counters) and never sees the worker.

- :mod:`~engine.runtime.nodes.base`: ``Node``, ``NodeContext``, ``EpochBuffer``.
- :mod:`~engine.runtime.nodes.io`: inputs and outputs.
- :mod:`~engine.runtime.nodes.stateless`: ``flat_map_batch``, ``branch``, ``merge``,
  ``redistribute``, ``inspect_debug``.
- :mod:`~engine.runtime.nodes.stateful`: ``stateful_batch`` and its batch kernels.
"""
