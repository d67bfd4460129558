"""The run report: ``report.json``, ``report.md`` and a plot of the steps."""

import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from compression.sensitivity import SensitivityRow, sensitivity_table  # noqa: E402
from slimctr.jsonio import write_json  # noqa: E402
from slimctr.search import pareto_front  # noqa: E402

logger = logging.getLogger(__name__)

STEPS_PLOT = "compression_steps.png"
PARETO_PLOT = "pareto.png"
SENSITIVITY_PLOT = "sensitivity.png"


def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def summary_table(report: dict) -> str:
    """Baseline against compressed, as a markdown table."""
    base, comp = report["baseline"], report["compressed"]
    bench = report["bench"]
    rows = [
        ("test AUC", _fmt(base["test_auc"]), _fmt(comp["test_auc"])),
        ("test logloss", _fmt(base["test_logloss"]), _fmt(comp["test_logloss"])),
        ("params", f"{base['params']:,}", f"{comp['params']:,}"),
        (
            "bytes on disk (vocabulary included)",
            f"{base['bytes']:,}",
            f"{comp['bytes']:,}",
        ),
        ("storage", "float32", str(comp.get("storage", "float32"))),
        ("embedding_dim", str(base["embedding_dim"]), str(comp["embedding_dim"])),
        ("hidden units", str(base["hidden_units"]), str(comp["hidden_units"])),
        (
            "vocabulary rows",
            f"{base['vocabulary_rows']:,}",
            f"{comp['vocabulary_rows']:,}",
        ),
        (
            "batch-1 p50 / p99 (µs)",
            f"{bench['baseline']['p50_us']:.0f} / {bench['baseline']['p99_us']:.0f}",
            f"{bench['compressed']['p50_us']:.0f} / "
            f"{bench['compressed']['p99_us']:.0f}",
        ),
        (
            "batch-4096 rows/s",
            f"{bench['baseline']['rows_per_s']:,.0f}",
            f"{bench['compressed']['rows_per_s']:,.0f}",
        ),
    ]
    lines = ["| | baseline | compressed |", "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def _extra_candidate_lines(report: dict) -> list[str]:
    """A sentence each on the allocated model and the distilled student."""
    lines = []
    allocated = report.get("allocated")
    if allocated:
        lines += [
            "Pruned once at the sensitivity table's per-part levels (below): "
            f"{allocated['hidden_units']} hidden units, "
            f"{allocated['vocabulary_rows']:,} vocabulary rows, valid AUC "
            f"{_fmt(allocated['valid_auc'])} after fine-tuning.",
            "",
        ]
    student = report.get("student")
    if not student:
        return lines
    return [
        *lines,
        f"Student: {student['hidden_units']} hidden units, embedding_dim "
        f"{student['embedding_dim']}, distilled from {student['teacher']} "
        f"(α {student['alpha']}, T {student['temperature']}): valid AUC "
        f"{_fmt(student['valid_auc'])} against the teacher's "
        f"{_fmt(student['teacher_valid_auc'])}.",
        "",
    ]


def _cutoff_section(report: dict) -> list[str]:
    """The frequency cut-off's trials, or nothing when it was skipped."""
    trials = report.get("cutoff") or []
    if not trials:
        return []
    lines = [
        "### Frequency cut-off",
        "",
        "Values seen fewer than *count* times in training folded into oov, "
        "without retraining; counts rise until one breaks the cut-off's share "
        "of the budget, and the last one within it is kept.",
        "",
        "| count | vocabulary rows | valid AUC |",
        "|---:|---:|---:|",
    ]
    lines += [
        f"| {t['min_count']:,} | {t['rows']:,} | {_fmt(t['valid_auc'])} |"
        for t in trials
    ]
    return [*lines, ""]


def steps_table(steps: list[dict]) -> str:
    lines = [
        "| step | stage | hidden units | dim | neurons pruned | rows pruned "
        "| sparsity | params | bytes | valid AUC | kept |",
        "|---:|:---|:---|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for s in steps:
        stage = s.get("stage", "prune")
        if stage == "cut-off":
            stage = f"cut-off (count < {s['min_count']} to oov)"
        lines.append(
            f"| {s['step']} | {stage} | {'-'.join(map(str, s['hidden_units']))} "
            f"| {s['embedding_dim']} | {s['neuron_sparsity']:.3f} "
            f"| {s['row_sparsity']:.3f} "
            f"| {s['sparsity']:.3f} | {s['params']:,} | {s['bytes']:,} "
            f"| {_fmt(s['valid_auc'])} "
            f"| {'rolled back' if s['rolled_back'] else 'yes'} |"
        )
    return "\n".join(lines)


def _bytes_label(value: float, _position=None) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def _save_auc_by_bytes(
    fig, ax, title: str, path: Path, outside_legend: bool = False
) -> Path:
    """Label a validation-AUC-against-bytes plot and write it."""
    ax.set_xscale("log")
    # 1, 2 and 5 of each decade, labelled 200k, 1M: readable at any span
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_bytes_label))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("artifact bytes on disk (log scale)")
    ax.set_ylabel("validation AUC")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if outside_legend:  # many entries: keep them off the points
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def candidates_table(candidates: list[dict]) -> str:
    """Every step × storage candidate; test AUC is shown, never used to choose."""
    lines = [
        "| candidate | hidden units | bytes | valid AUC | valid logloss "
        "| test AUC | p50 µs | rows/s | within budget |",
        "|---|---|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for c in candidates:
        lines.append(
            f"| {c['name']} | {c['hidden_units']} | {c['bytes']:,} "
            f"| {_fmt(c['valid_auc'])} | {_fmt(c['valid_logloss'])} "
            f"| {_fmt(c.get('test_auc', math.nan))} "
            f"| {c['p50_us']:.0f} | {c['rows_per_s']:,.0f} "
            f"| {'yes' if c.get('within_budget') else 'no'} |"
        )
    return "\n".join(lines)


# marker per kind of candidate in the Pareto plot; colour tells the storage
SOURCE_MARKERS = {"pruning step": "o", "student": "s", "allocated": "^"}


def _source_kind(name: str) -> str:
    for kind in ("student", "allocated"):
        if name.startswith(f"{kind}-"):
            return kind
    return "pruning step"


def plot_pareto(
    candidates: list[dict], chosen: str, path: Path, floor: float | None = None
) -> Path:
    """Validation AUC against bytes (log scale) for every candidate."""
    fig, ax = plt.subplots(figsize=(8.5, 4.4), dpi=120)
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in candidates:
        groups.setdefault((_source_kind(c["name"]), c["storage"]), []).append(c)
    colours = {}
    for (kind, storage), points in groups.items():
        colour = colours.setdefault(storage, f"C{len(colours)}")
        ax.plot(
            [p["bytes"] for p in points],
            [p["valid_auc"] for p in points],
            SOURCE_MARKERS[kind],
            color=colour,
            label=f"{kind}, {storage}",
            alpha=0.8,
        )
    front = pareto_front(candidates)
    ax.plot(
        [p["bytes"] for p in front],
        [p["valid_auc"] for p in front],
        color="grey",
        linewidth=1,
        drawstyle="steps-post",
        label="Pareto front",
    )
    lowest = min(c["valid_auc"] for c in candidates)
    if floor is not None and floor > lowest - 0.02:  # else it would squash the axis
        ax.axhline(floor, color="tab:red", linestyle=":", label="budget floor")
    pick = next(c for c in candidates if c["name"] == chosen)
    ax.plot(
        pick["bytes"],
        pick["valid_auc"],
        "*",
        color="black",
        markersize=14,
        label=f"chosen: {chosen}",
    )
    return _save_auc_by_bytes(
        fig, ax, "Candidates: accuracy against size", path, outside_legend=True
    )


def _sensitivity_section(report: dict) -> list[str]:
    rows = [SensitivityRow(**row) for row in report["sensitivity"]]
    allocation = report["sensitivity_allocation"]
    allowed = ", ".join(f"{k} {v:.2f}" for k, v in allocation.items() if v > 0)
    return [
        "## Sensitivity",
        "",
        "Validation AUC drop when one hidden layer (neurons by norm) or one "
        "field's vocabulary rows (by norm, folded into oov) is pruned alone at "
        "each level, without fine-tuning, on the baseline. A negative drop is a "
        "gain within noise.",
        "",
        sensitivity_table(rows),
        "",
        f"Largest level each part takes alone within {report['max_auc_drop']}: "
        f"{allowed or 'none'}. The schedule prunes every layer to the same "
        "share; the candidate *allocated* prunes each part at these levels at "
        "once, and since each was judged alone, together they can lose more.",
        "",
        f"![AUC drop by pruning level]({SENSITIVITY_PLOT})",
        "",
    ]


def plot_steps(steps: list[dict], baseline_bytes: int, path: Path) -> Path:
    """Validation AUC against bytes on disk for every compression step."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    kept = [s for s in steps if not s["rolled_back"]]
    dropped = [s for s in steps if s["rolled_back"]]
    ax.plot(
        [s["bytes"] for s in kept],
        [s["valid_auc"] for s in kept],
        "o-",
        label="accepted step",
    )
    if dropped:
        ax.plot(
            [s["bytes"] for s in dropped],
            [s["valid_auc"] for s in dropped],
            "x",
            color="tab:red",
            markersize=9,
            label="rolled back",
        )
    for s in steps:
        ax.annotate(
            str(s["step"]),
            (s["bytes"], s["valid_auc"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.axvline(baseline_bytes / 4, color="grey", linestyle=":", label="4x smaller")
    return _save_auc_by_bytes(fig, ax, "Compression steps: accuracy against size", path)


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    """Write ``report.json``, ``report.md`` and the steps plot into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    write_json(json_path, report)
    plot_steps(report["steps"], report["baseline"]["bytes"], out / STEPS_PLOT)
    floor = report["steps"][0]["valid_auc"] - report["max_auc_drop"]
    plot_pareto(
        report["candidates"], report["chosen"]["name"], out / PARETO_PLOT, floor
    )

    data = report["data"]
    drop = report["test_auc_drop"]
    dataset = data.get("dataset", "criteo")  # reports before schemas: Criteo
    kind = "synthetic (slimctr synth)" if data["synthetic"] else f"real, {dataset}"
    lines = [
        "# slimctr run report",
        "",
        f"Data: `{data['path']}` ({kind}), {data['rows']:,} rows, split by position "
        f"{data['split']['train']:,} / {data['split']['valid']:,} / "
        f"{data['split']['test']:,} (train / valid / test). "
        f"Threads: {report['threads']}. Seed: {report['seed']}.",
        "",
        summary_table(report),
        "",
        f"Test AUC drop (baseline − compressed): {drop['drop']:+.4f}, paired "
        f"bootstrap {drop['confidence']:.0%} interval [{drop['low']:+.4f}, "
        f"{drop['high']:+.4f}] over {drop['resamples']} resamples.",
    ]
    if "oracle_test_auc" in report:
        lines += [
            "",
            f"Oracle test AUC (true probabilities): {report['oracle_test_auc']:.4f}.",
        ]
    lines += [
        "",
        "## Compression steps",
        "",
        f"Pruning stops at the first step more than {report['max_auc_drop']} "
        "validation AUC below the unpruned model, which is rolled back; the "
        "candidates below choose among the steps kept.",
        "",
        steps_table(report["steps"]),
        "",
        f"![validation AUC against bytes]({STEPS_PLOT})",
        "",
        *_cutoff_section(report),
        "## Candidates",
        "",
        "Every accepted step, the model pruned at the sensitivity levels and "
        "the distilled student (when there are), in every storage (fp32; "
        "fp16; int8 tables with fp16 layers; int8 throughout). Storage "
        "changes bytes, not speed: "
        "loading dequantizes to fp32. The chosen candidate has the fewest "
        f"{'bytes' if report['objective'] == 'bytes' else 'µs at batch 1'} among "
        f"those within {report['max_auc_drop']} validation AUC and "
        f"{report.get('max_logloss_rise', math.inf)} validation logloss of the "
        "baseline; test AUC is shown and never used to choose. Unstructured "
        "(per-weight) sparsity is not among the candidates: CSR stores a "
        "value and a column index per non-zero (8 bytes in fp32 with int32 "
        "indices), so against dense int8 (1 byte a weight) it saves bytes only "
        "below 1/8 density; whole neurons, rows and dimensions are removed "
        "instead. Candidate bytes are measured without the run's metadata, "
        "which the written artifacts carry (1–3 kB more).",
        "",
        candidates_table(report["candidates"]),
        "",
        *_extra_candidate_lines(report),
        f"Chosen: **{report['chosen']['name']}**.",
        "",
        f"![validation AUC against bytes for every candidate]({PARETO_PLOT})",
        "",
    ]
    if report.get("sensitivity"):
        lines += _sensitivity_section(report)
    md_path = out / "report.md"
    md_path.write_text("\n".join(lines))
    return json_path, md_path
