"""``shmflow tune --plot``: throughput and efficiency against workers, as a PNG.

matplotlib is optional (``pip install 'shmflow[plot]'``); it is imported only here, and
:func:`require_matplotlib` lets the command fail before it spends minutes measuring.
"""

from __future__ import annotations

from pathlib import Path

from engine.tools.args import UsageError
from engine.tools.tune.measure import TuneResult
from engine.tools.tune.recommend import workers_text

__all__ = ["PLOT_MISSING", "require_matplotlib", "write_plot"]

PLOT_MISSING = (
    "--plot needs matplotlib, which is not installed; install it with "
    "pip install 'shmflow[plot]' (or pip install matplotlib)"
)


def require_matplotlib() -> None:
    """Raise :class:`UsageError` with install instructions when matplotlib is missing."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise UsageError(PLOT_MISSING) from None


def write_plot(result: TuneResult, path: str | Path) -> None:
    """Throughput (median, min-max bars) and efficiency against workers, as a PNG."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    workers = [row.workers for row in result.rows]
    medians = [row.median for row in result.rows]
    below = [row.median - min(row.rates) for row in result.rows]
    above = [max(row.rates) - row.median for row in result.rows]
    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.errorbar(workers, medians, yerr=[below, above], marker="o", capsize=4, label="items/s")
    axes.set_xlabel("workers")
    axes.set_ylabel("items/s (median, min-max)")
    axes.set_xticks(workers)
    axes.set_ylim(bottom=0)
    efficiency_axes = axes.twinx()
    efficiency_axes.plot(
        workers, [row.efficiency for row in result.rows], "s--", color="tab:orange"
    )
    efficiency_axes.set_ylabel("parallel efficiency", color="tab:orange")
    efficiency_axes.set_ylim(0, max(1.1, *(row.efficiency * 1.1 for row in result.rows)))
    axes.axvline(result.recommendation.workers, color="tab:green", linestyle=":")
    axes.set_title(
        f"shmflow tune {result.flow_id}: recommended {workers_text(result.recommendation.workers)}"
    )
    figure.tight_layout()
    figure.savefig(str(path), format="png")
