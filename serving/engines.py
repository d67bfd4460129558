"""Every way slimctr can serve a model, timed side by side on the same rows.

The lean scorer on the compressed artifact against the baseline under torch
eager, TorchScript and ONNX Runtime (and ONNX Runtime on the compressed model),
alternating engines round by round and reporting medians over rounds.
"""

import json
import logging
import math
import os
import platform
import resource
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ctr.wide_deep import WideDeep
from serving.artifact import artifact_bytes, load_artifact
from serving.bench import random_rows, seconds_per_call
from serving.lean import LeanScorer
from serving.onnx_export import OUTPUT_NAME, export_onnx, ort_session

logger = logging.getLogger(__name__)

ENGINES = (
    "scorer",
    "torch_eager",
    "torchscript",
    "onnxruntime_baseline",
    "onnxruntime_compressed",
)
BATCH_SIZES = (1, 64, 4096)
# timed calls per round: enough at batch 1 for a p99 over 20 slow calls, and
# at 64 and 4096 rows enough for a median that moves by a few percent at most
DEFAULT_CALLS = {1: 2000, 64: 300, 4096: 30}
POOL_ROWS = 2 * max(BATCH_SIZES)
AGREEMENT_ATOL = 1e-5

Engine = Callable[[np.ndarray, np.ndarray], np.ndarray]


class EngineMismatchError(RuntimeError):
    """Two engines serving the same model disagree on its probabilities."""


def compare_engines(
    model_dir: str | Path,
    baseline_dir: str | Path | None = None,
    threads: int = 2,
    repeats: int = 5,
    seed: int = 0,
    *,
    rows: tuple[np.ndarray, np.ndarray] | None = None,
    calls: Mapping[int, int] | None = None,
    command: str | None = None,
) -> dict:
    """Latency percentiles and rows/s of each engine at batch 1, 64 and 4096.

    ``"scorer"`` and ``"onnxruntime_compressed"`` run ``model_dir``;
    ``"torch_eager"``, ``"torchscript"`` and ``"onnxruntime_baseline"`` run
    ``baseline_dir`` (``model_dir`` when it is None). An engine that cannot run
    here (ONNX Runtime not installed, a model TorchScript cannot trace) is an
    entry ``{"skipped": reason}``. Before timing, every engine's probabilities
    are checked against torch eager on its own model (``max_abs_gap``).

    Args:
        model_dir: the compressed artifact folder.
        baseline_dir: the uncompressed artifact folder, or None.
        threads: torch, BLAS and ONNX Runtime intra-op threads.
        repeats: rounds; engines alternate within a round, in reverse order
            every other round, and each figure is the median over rounds.
        seed: for the random rows.
        rows: ``(sparse_ids, dense)``, ``(n, num_sparse)`` int64 and
            ``(n, num_dense)`` float32, in-vocabulary for both models; drawn
            at random when None (ids below both models' ``num_embeddings``).
        calls: timed calls per round by batch size, default ``DEFAULT_CALLS``.
        command: the command line that ran this, recorded as given.

    Returns:
        A JSON-ready dict: ``machine``, ``threads``, ``versions``, ``repeats``,
        ``peak_rss_mb``, ``load_average``, ``rows``, ``engines`` (one entry per
        name in ``ENGINES`` with ``batch_1``, ``batch_64``, ``batch_4096``,
        each holding ``p50_us``, ``p95_us``, ``p99_us``, ``rows_per_s``), and
        ``command`` when given.
    """
    calls = _check_arguments(threads, repeats, calls)
    compressed_dir = Path(model_dir)
    baseline_dir = compressed_dir if baseline_dir is None else Path(baseline_dir)
    compressed = load_artifact(compressed_dir).model
    baseline = load_artifact(baseline_dir).model
    pool, source = _pool(compressed, baseline, rows, seed)

    load_before = os.getloadavg()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads), tempfile.TemporaryDirectory() as scratch:
            setups = _setups(
                {"compressed": compressed_dir, "baseline": baseline_dir},
                {"compressed": compressed, "baseline": baseline},
                Path(scratch),
                threads,
            )
            runnable = {n: s for n, s in setups.items() if "engine" in s}
            _agree(runnable, pool)
            rounds = _time_rounds(runnable, pool, calls, repeats)
    finally:
        torch.set_num_threads(previous_threads)

    engines = {}
    for name, setup in setups.items():
        entry = {k: v for k, v in setup.items() if k not in ("engine", "reference")}
        if name in rounds:
            entry.update(_medians(rounds[name]))
        engines[name] = entry
    result = {
        "machine": _machine(),
        "threads": threads,
        "versions": _versions(),
        "repeats": repeats,
        "peak_rss_mb": _peak_rss_mb(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "rows": {"source": source, "pool_rows": len(pool[0])},
        "calls": {f"batch_{b}": n for b, n in calls.items()},
        "engines": engines,
    }
    if command is not None:
        result["command"] = command
    return result


def check_agreement(
    engines: Mapping[str, Engine],
    reference: Engine,
    sparse_ids: np.ndarray,
    dense: np.ndarray,
    atol: float = AGREEMENT_ATOL,
) -> dict[str, float]:
    """Largest ``|p - p_reference|`` of each engine on the given rows.

    Raises:
        EngineMismatchError: an engine differs from ``reference`` by more than
            ``atol`` (or returns nan, or the wrong shape).
    """
    expected = np.asarray(reference(sparse_ids, dense), dtype=np.float64)
    gaps = {}
    for name, engine in engines.items():
        got = np.asarray(engine(sparse_ids, dense), dtype=np.float64)
        if got.shape != expected.shape:
            raise EngineMismatchError(
                f"{name}: returned shape {got.shape}, expected {expected.shape} "
                "(one probability per row)"
            )
        gap = float(np.abs(got - expected).max())
        if not gap <= atol:  # also catches nan
            raise EngineMismatchError(
                f"{name}: probabilities differ from torch eager on the same model "
                f"by up to {gap:.3g} on {len(got)} rows, above the tolerance {atol:g}"
            )
        gaps[name] = gap
    return gaps


def write_outputs(result: dict, json_path: str | Path) -> tuple[Path, Path, Path]:
    """Write ``result`` as JSON, a markdown table and a PNG next to each other.

    The markdown and PNG take ``json_path``'s name with ``.md`` and ``.png``.
    Non-finite numbers become JSON ``null``.
    """
    # imported here: plotting pulls in matplotlib, which timing never needs
    from serving.engines_plot import plot_engines

    json_path = Path(json_path)
    md_path = json_path.with_suffix(".md")
    png_path = json_path.with_suffix(".png")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(_finite(result), indent=1, allow_nan=False))
    md_path.write_text(markdown(result))
    plot_engines(result, png_path)
    return json_path, md_path, png_path


def markdown(result: dict) -> str:
    """The result as markdown: the setup, engine × batch figures, speed-ups."""
    machine, versions = result["machine"], result["versions"]
    load = result["load_average"]
    lines = [
        "# Serving engines",
        "",
        f"- machine: {machine['platform']}, {machine['processor']}, "
        f"{machine['cpu_count']} CPUs; load average (1 min) "
        f"{load['before'][0]:.2f} before, {load['after'][0]:.2f} after",
        "- versions: "
        + ", ".join(
            f"{k} {v if v is not None else 'absent'}" for k, v in versions.items()
        ),
        f"- threads {result['threads']} (torch, BLAS, ONNX Runtime intra-op); "
        f"{result['repeats']} rounds, engines alternating, medians over rounds; "
        "spread: (max - min) / median of rows/s over rounds",
        f"- rows: {result['rows']['source']}; timed calls per round: "
        + ", ".join(f"{k} {v}" for k, v in result["calls"].items()),
        f"- peak RSS {result['peak_rss_mb']:.0f} MB",
    ]
    if "command" in result:
        lines.append(f"- command: `{result['command']}`")
    lines += [
        "",
        "| engine | model bytes | batch | p50 µs | p99 µs | rows/s | rows/s spread |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in result["engines"].items():
        if "skipped" in entry:
            lines.append(f"| {name} | | | skipped: {entry['skipped']} | | | |")
            continue
        for batch_size in BATCH_SIZES:
            figures = entry[f"batch_{batch_size}"]
            lines.append(
                f"| {name} | {entry['artifact_bytes']:,} | {batch_size} "
                f"| {figures['p50_us']:,.1f} | {figures['p99_us']:,.1f} "
                f"| {figures['rows_per_s']:,.0f} "
                f"| {figures['rows_per_s_spread']:.0%} |"
            )
    lines += ["", _speedups(result["engines"])]
    return "\n".join(lines) + "\n"


def _speedups(engines: dict) -> str:
    scorer = engines.get("scorer", {})
    if "batch_1" not in scorer:
        return "No speed-ups: the scorer did not run."
    lines = [
        "| scorer speed-up over | batch 1 p50 | batch 4096 rows/s |",
        "|---|---:|---:|",
    ]
    largest = f"batch_{max(BATCH_SIZES)}"
    for name, entry in engines.items():
        if name == "scorer" or "batch_1" not in entry:
            continue
        latency = entry["batch_1"]["p50_us"] / scorer["batch_1"]["p50_us"]
        throughput = scorer[largest]["rows_per_s"] / entry[largest]["rows_per_s"]
        lines.append(f"| {name} | {latency:.2f}x | {throughput:.2f}x |")
    return "\n".join(lines)


def _check_arguments(
    threads: int, repeats: int, calls: Mapping[int, int] | None
) -> dict[int, int]:
    for name, value in (("threads", threads), ("repeats", repeats)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    calls = dict(DEFAULT_CALLS if calls is None else calls)
    if sorted(calls) != sorted(BATCH_SIZES):
        raise ValueError(
            f"calls: expected counts for batch sizes {BATCH_SIZES}, got {sorted(calls)}"
        )
    for batch_size, count in calls.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(
                f"calls[{batch_size}]: expected a positive integer, got {count!r}"
            )
    return {b: calls[b] for b in BATCH_SIZES}


def _pool(
    compressed: WideDeep,
    baseline: WideDeep,
    rows: tuple[np.ndarray, np.ndarray] | None,
    seed: int,
) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """``POOL_ROWS`` encoded rows valid for both models, and where they came from.

    The two models may have different vocabularies; ids below both tables'
    sizes address a row of each, which is all timing needs.
    """
    if compressed.num_dense != baseline.num_dense or len(
        compressed.num_embeddings
    ) != len(baseline.num_embeddings):
        raise ValueError(
            "baseline_dir: the baseline takes "
            f"{len(baseline.num_embeddings)} sparse and {baseline.num_dense} dense "
            f"inputs, the model {len(compressed.num_embeddings)} and "
            f"{compressed.num_dense}; compare models of the same inputs"
        )
    high = np.minimum(compressed.num_embeddings, baseline.num_embeddings)
    rng = np.random.default_rng(seed)
    if rows is None:
        pool = random_rows(high, compressed.num_dense, POOL_ROWS, seed)
        return pool, "random in-vocabulary ids, dense ~ N(0, 1)"

    sparse_ids, dense = _check_rows(rows, high, compressed.num_dense)
    source = f"{len(sparse_ids)} given rows"
    if len(sparse_ids) < POOL_ROWS:
        index = rng.integers(0, len(sparse_ids), POOL_ROWS)
        sparse_ids, dense = sparse_ids[index], dense[index]
        source += f", drawn with repeats to {POOL_ROWS}"
    return (np.ascontiguousarray(sparse_ids), np.ascontiguousarray(dense)), source


def _check_rows(
    rows: tuple[np.ndarray, np.ndarray], high: np.ndarray, num_dense: int
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(rows, tuple) or len(rows) != 2:
        raise TypeError(f"rows: expected a (sparse_ids, dense) tuple, got {rows!r:.80}")
    sparse_ids, dense = rows
    for name, value, dtype in (
        ("sparse_ids", sparse_ids, np.int64),
        ("dense", dense, np.float32),
    ):
        if not isinstance(value, np.ndarray) or value.dtype != dtype:
            got = value.dtype if isinstance(value, np.ndarray) else type(value)
            raise TypeError(
                f"rows: {name} must be a numpy {dtype.__name__} array, got {got}"
            )
    if sparse_ids.ndim != 2 or sparse_ids.shape[1] != len(high) or not len(sparse_ids):
        raise ValueError(
            f"rows: sparse_ids must have shape (n, {len(high)}) with n >= 1, "
            f"got {sparse_ids.shape}"
        )
    if dense.shape != (len(sparse_ids), num_dense):
        raise ValueError(
            f"rows: dense must have shape ({len(sparse_ids)}, {num_dense}), "
            f"got {dense.shape}"
        )
    outside = (sparse_ids < 0) | (sparse_ids >= high)
    if outside.any():
        row, field = np.argwhere(outside)[0]
        raise ValueError(
            f"rows: sparse_ids row {row}, field {field}: id {sparse_ids[row, field]} "
            f"is outside [0, {high[field]}), the smaller of the two models' tables"
        )
    return sparse_ids, dense


def _setups(
    folders: dict[str, Path],
    models: dict[str, WideDeep],
    scratch: Path,
    threads: int,
) -> dict[str, dict]:
    """Each engine's callable, the reference it must agree with, and its sizes.

    An engine that cannot run has ``skipped`` instead of ``engine``.
    """
    references = {name: torch_eager(model) for name, model in models.items()}

    def describe(which: str) -> dict:
        return {
            "model": str(folders[which]),
            "artifact_bytes": artifact_bytes(folders[which])["total"],
            "reference": references[which],
        }

    setups = {
        "scorer": {
            **describe("compressed"),
            "engine": LeanScorer.from_model(models["compressed"]).predict_encoded,
        },
        "torch_eager": {**describe("baseline"), "engine": references["baseline"]},
        "torchscript": {**describe("baseline"), **_torchscript(models["baseline"])},
    }
    for which in ("baseline", "compressed"):
        name = f"onnxruntime_{which}"
        path = scratch / f"{which}.onnx"
        setups[name] = {**describe(which), **_onnxruntime(models[which], path, threads)}
    for name, setup in setups.items():
        if "skipped" in setup:
            logger.warning("%s skipped: %s", name, setup["skipped"])
    return setups


def torch_eager(model: WideDeep) -> Engine:
    """``model`` as a server calls it: numpy rows in, float64 probabilities out."""
    model.eval()

    @torch.inference_mode()
    def run(sparse_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        logits = model(torch.from_numpy(sparse_ids), torch.from_numpy(dense))
        return torch.sigmoid(logits).double().numpy()

    return run


def _torchscript(model: WideDeep) -> dict:
    """``{"engine": ..., "frozen": bool}``, or ``{"skipped": reason}``."""
    example = tuple(
        torch.from_numpy(a)
        for a in (
            np.zeros((2, len(model.num_embeddings)), np.int64),
            np.zeros((2, model.num_dense), np.float32),
        )
    )
    model.eval()
    # TorchScript is deprecated since torch 2.9 but still what many servers run;
    # it is measured here as one of them, so its warnings are not news
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit", DeprecationWarning)
        try:
            with torch.no_grad():
                traced = torch.jit.trace(model, example)
        except Exception as err:  # tracing fails in many ways; each is a skip
            return {"skipped": f"torch.jit.trace failed: {type(err).__name__}: {err}"}
        try:
            script, frozen = torch.jit.freeze(traced), True
        except Exception as err:
            logger.warning("torch.jit.freeze failed (%s); timing the bare trace", err)
            script, frozen = traced, False

    @torch.inference_mode()
    def run(sparse_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        logits = script(torch.from_numpy(sparse_ids), torch.from_numpy(dense))
        return torch.sigmoid(logits).double().numpy()

    return {"engine": run, "frozen": frozen}


def _onnxruntime(model: WideDeep, path: Path, threads: int) -> dict:
    """``{"engine": ..., "onnx_bytes": n}``, or ``{"skipped": reason}``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return {"skipped": "onnxruntime is not installed: pip install -e '.[onnx]'"}
    try:
        export_onnx(model, path)
    except ImportError as err:  # onnx itself missing
        return {"skipped": str(err)}
    session = ort_session(path, threads)

    def run(sparse_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        (probabilities,) = session.run(
            [OUTPUT_NAME], {"sparse_ids": sparse_ids, "dense": dense}
        )
        return probabilities.astype(np.float64)

    return {"engine": run, "onnx_bytes": path.stat().st_size}


def _agree(setups: dict[str, dict], pool: tuple[np.ndarray, np.ndarray]) -> None:
    """Record each engine's gap to torch eager on its model, at 1 and 4096 rows."""
    for name, setup in setups.items():
        gaps = [
            check_agreement(
                {name: setup["engine"]}, setup["reference"], *(a[:n] for a in pool)
            )[name]
            for n in (1, max(BATCH_SIZES))
        ]
        setup["max_abs_gap"] = max(gaps)


def _time_rounds(
    setups: dict[str, dict],
    pool: tuple[np.ndarray, np.ndarray],
    calls: dict[int, int],
    repeats: int,
) -> dict[str, list[dict]]:
    """Each engine's figures, one dict per round."""
    rounds: dict[str, list[dict]] = {name: [] for name in setups}
    order = list(setups)
    for round_index in range(repeats):
        # reversed every other round, so no engine always follows the same one
        for name in order if round_index % 2 == 0 else order[::-1]:
            engine = setups[name]["engine"]
            rounds[name].append(
                {
                    f"batch_{b}": _figures(seconds_per_call(engine, pool, b, n), b)
                    for b, n in calls.items()
                }
            )
    return rounds


def _figures(seconds: np.ndarray, batch_size: int) -> dict[str, float]:
    micros = seconds * 1e6
    figures = {f"p{q}_us": float(np.percentile(micros, q)) for q in (50, 95, 99)}
    figures["rows_per_s"] = batch_size / float(np.median(seconds))
    return figures


def _medians(rounds: list[dict]) -> dict:
    """Each figure's median over rounds, and how far rows/s moved between them."""
    medians = {}
    for batch in rounds[0]:
        figures = {
            key: float(np.median([r[batch][key] for r in rounds]))
            for key in rounds[0][batch]
        }
        speeds = [r[batch]["rows_per_s"] for r in rounds]
        # a wide spread means the machine was busy for some rounds
        figures["rows_per_s_spread"] = (max(speeds) - min(speeds)) / figures[
            "rows_per_s"
        ]
        medians[batch] = figures
    return medians


def _machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict:
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "onnxruntime": ort_version,
    }


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _finite(value):
    """``value`` with every nan or infinity replaced by None, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
