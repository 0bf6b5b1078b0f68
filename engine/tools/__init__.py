"""The commands: ``shmflow run|tune|bench|recovery`` and what they share.

- :mod:`~engine.tools.cli`: the ``shmflow`` console script.
- :mod:`~engine.tools.args`: argument parsing and flow loading shared by the commands.
- :mod:`~engine.tools.run`: ``shmflow run`` / ``python -m engine.run``.
- :mod:`~engine.tools.tune`: ``shmflow tune`` (measure, recommend, report, plot).
- :mod:`~engine.tools.bench`: ``shmflow bench``; :mod:`~engine.tools.flows` its flows.

Tools use the public API and the runtime; nothing imports them but the commands.
"""
