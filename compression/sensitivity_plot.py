"""Picture of a sensitivity analysis: AUC drop against pruning level.

Two panels, hidden layers and sparse fields, one line per layer or field. With
26 fields only the most sensitive ones are coloured and named; the rest are
drawn in grey under one legend entry.
"""

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from compression.sensitivity import SensitivityRow

logger = logging.getLogger(__name__)

LABELLED_FIELDS = 6
FIGURE_SIZE = (12.0, 4.8)  # inches
DPI = 100

Curve = tuple[list[float], list[float]]  # levels, AUC drops


def _curves(rows: Sequence[SensitivityRow], kind: str) -> dict[str, Curve]:
    """Per name of ``kind``, its levels and drops sorted by level."""
    points: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row.kind == kind:
            points.setdefault(row.name, []).append((row.level, row.auc_drop))
    curves = {}
    for name, pairs in points.items():
        pairs.sort()
        curves[name] = ([p[0] for p in pairs], [p[1] for p in pairs])
    return curves


def _worst_drop(curve: Curve) -> float:
    finite = [d for d in curve[1] if not math.isnan(d)]
    return max(finite, default=-math.inf)


def _draw_layers(axes: Axes, curves: dict[str, Curve]) -> None:
    for name, (levels, drops) in curves.items():
        axes.plot(levels, drops, marker="o", markersize=3, label=name)
    axes.set_title("hidden layers: neurons removed")


def _draw_fields(axes: Axes, curves: dict[str, Curve], labelled: int) -> None:
    ranked = sorted(curves, key=lambda name: _worst_drop(curves[name]), reverse=True)
    others = ranked[labelled:]
    for position, name in enumerate(others):
        levels, drops = curves[name]
        label = f"other {len(others)} fields" if position == 0 else None
        axes.plot(levels, drops, color="0.7", linewidth=0.8, label=label, zorder=1)
    for name in ranked[:labelled]:
        levels, drops = curves[name]
        label = f"{name} (worst {_worst_drop(curves[name]):.4f})"
        axes.plot(levels, drops, marker="o", markersize=3, label=label, zorder=2)
    axes.set_title("sparse fields: vocabulary rows folded into oov")


def plot_sensitivity(
    rows: Sequence[SensitivityRow],
    path: str | Path,
    labelled_fields: int = LABELLED_FIELDS,
) -> Path:
    """Write a PNG of AUC drop against level, layers left and fields right.

    Args:
        rows: output of :func:`compression.sensitivity.sensitivity`.
        path: where to write; must end in ``.png``. Missing folders are made.
        labelled_fields: how many of the most sensitive fields (largest drop
            at any level) are coloured and named in the legend.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if not rows:
        raise ValueError("rows: expected the output of sensitivity(), got no rows")
    for row in rows:
        if not isinstance(row, SensitivityRow):
            raise TypeError(
                f"rows: expected SensitivityRow entries, got {type(row).__name__}"
            )
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(
            f"path: expected a .png file, got {str(path)!r}; name it e.g. "
            "sensitivity.png"
        )
    if isinstance(labelled_fields, bool) or not isinstance(labelled_fields, int):
        raise TypeError(f"labelled_fields: expected an int, got {labelled_fields!r}")
    if labelled_fields < 0:
        raise ValueError(f"labelled_fields: expected >= 0, got {labelled_fields}")

    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # render with Agg whatever pyplot's backend is
    layer_axes, field_axes = figure.subplots(1, 2)
    _draw_layers(layer_axes, _curves(rows, "layer"))
    _draw_fields(field_axes, _curves(rows, "field"), labelled_fields)
    for axes in (layer_axes, field_axes):
        axes.axhline(0.0, color="black", linewidth=0.6)
        axes.set_xlabel("level (share removed)")
        axes.set_ylabel("validation AUC drop")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small", loc="upper left")
        else:
            axes.text(0.5, 0.5, "no rows", ha="center", transform=axes.transAxes)

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    logger.info("sensitivity plot written to %s", path)
    return path
