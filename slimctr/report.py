"""The run report: ``report.json``, ``report.md`` and a plot of the steps."""

import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from slimctr.jsonio import write_json  # noqa: E402

logger = logging.getLogger(__name__)

STEPS_PLOT = "compression_steps.png"


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
        ("bytes on disk", f"{base['bytes']:,}", f"{comp['bytes']:,}"),
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


def steps_table(steps: list[dict]) -> str:
    lines = [
        "| step | neurons pruned | rows pruned | sparsity | params | bytes "
        "| valid AUC | kept |",
        "|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for s in steps:
        lines.append(
            f"| {s['step']} | {s['neuron_sparsity']:.3f} | {s['row_sparsity']:.3f} "
            f"| {s['sparsity']:.3f} | {s['params']:,} | {s['bytes']:,} "
            f"| {_fmt(s['valid_auc'])} "
            f"| {'rolled back' if s['rolled_back'] else 'yes'} |"
        )
    return "\n".join(lines)


def storage_table(candidates: list[dict]) -> str:
    """Each storage tried for the pruned model, with bytes and validation AUC."""
    lines = ["| storage | bytes | valid AUC | within budget |", "|---|---:|---:|:---|"]
    for c in candidates:
        lines.append(
            f"| {c['storage']} | {c['bytes']:,} | {_fmt(c['valid_auc'])} "
            f"| {'yes' if c['within'] else 'no'} |"
        )
    return "\n".join(lines)


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
    ax.set_xscale("log")
    ax.set_xlabel("artifact bytes on disk (log scale)")
    ax.set_ylabel("validation AUC")
    ax.set_title("Compression steps: accuracy against size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    """Write ``report.json``, ``report.md`` and the steps plot into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    write_json(json_path, report)
    plot_steps(report["steps"], report["baseline"]["bytes"], out / STEPS_PLOT)

    data = report["data"]
    drop = report["test_auc_drop"]
    kind = "synthetic (slimctr synth)" if data["synthetic"] else "real"
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
        f"Selection uses validation only: the last step within "
        f"{report['max_auc_drop']} validation AUC of the unpruned model.",
        "",
        steps_table(report["steps"]),
        "",
        f"![validation AUC against bytes]({STEPS_PLOT})",
        "",
        "## Storage of the pruned model",
        "",
        "Each storage is simulated on the chosen step and kept only if its "
        "validation AUC stays within the budget; the smallest such is written. "
        "Loading dequantizes to fp32, so it changes bytes, not speed.",
        "",
        storage_table(report["storage_candidates"]),
        "",
        f"Chosen: **{report['compressed']['storage']}**.",
        "",
    ]
    md_path = out / "report.md"
    md_path.write_text("\n".join(lines))
    return json_path, md_path
