"""The engine comparison as a figure: batch-1 latency and batch-4096 throughput.

Draws on matplotlib's Agg canvas directly, so no global backend is set.
"""

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SCORER_COLOR = "tab:green"
OTHER_COLOR = "tab:gray"


def plot_engines(result: dict, path: str | Path) -> Path:
    """Two bar panels from :func:`serving.engines.compare_engines`'s result.

    Left: batch-1 p50 latency (µs, log scale; lower is better). Right:
    batch-4096 rows/s (log scale; higher is better). Skipped engines are left
    out and named in the caption.
    """
    ran = {n: e for n, e in result["engines"].items() if "batch_1" in e}
    skipped = [n for n, e in result["engines"].items() if "skipped" in e]
    figure = Figure(figsize=(11, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    latency, throughput = figure.subplots(1, 2)

    names = list(ran)
    _bars(
        latency,
        names,
        [ran[n]["batch_1"]["p50_us"] for n in names],
        "batch 1: p50 latency (µs, lower is better)",
        "{:,.1f}",
    )
    _bars(
        throughput,
        names,
        [ran[n]["batch_4096"]["rows_per_s"] for n in names],
        "batch 4096: rows/s (higher is better)",
        "{:,.0f}",
    )

    caption = (
        f"{result['threads']} threads, median of {result['repeats']} rounds; "
        f"{result['machine']['processor']}"
    )
    if skipped:
        caption += f"; skipped: {', '.join(skipped)}"
    figure.suptitle(caption, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def _bars(axes: Axes, names: list[str], values: list[float], title: str, fmt: str):
    colors = [SCORER_COLOR if n == "scorer" else OTHER_COLOR for n in names]
    bars = axes.bar(range(len(names)), values, color=colors)
    axes.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    # the engines span orders of magnitude; a linear axis flattens the fast ones
    if values and min(values) > 0 and max(values) / min(values) > 5:
        axes.set_yscale("log")
    axes.bar_label(bars, [fmt.format(v) for v in values], fontsize=7)
    axes.set_title(title, fontsize=10)
    axes.grid(axis="y", alpha=0.3, which="both")
