"""The benchmark flows on Bytewax 0.21.1: now in :mod:`engine.tools.bytewax_flows`.

Importing this module imports Bytewax (ImportError when it is not installed).
"""

from __future__ import annotations

from engine.tools.bytewax_flows import BENCHMARK_RUNNERS, RUNNERS

__all__ = ["BENCHMARK_RUNNERS", "RUNNERS"]
