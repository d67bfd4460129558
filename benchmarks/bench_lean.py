"""The lean scorer against the torch eager model, on the same encoded rows.

Times batch 1 (p50, p95, p99 over single calls) and batch 64 and 4096 (rows/s)
for both, alternating the two for ``--repeats`` rounds and printing medians:

    .venv/bin/python benchmarks/bench_lean.py --model runs/real/compressed \\
        --threads 2 --repeats 5
"""

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from data.criteo import read_criteo
from data.encoder import EncodedBatch
from serving.artifact import load_artifact
from serving.lean import LeanScorer

Predict = Callable[[np.ndarray, np.ndarray], object]
LARGE_BATCHES = (64, 4096)


def random_rows(
    num_embeddings: list[int], num_dense: int, rows: int, seed: int
) -> EncodedBatch:
    """In-vocabulary ids drawn uniformly per field; dense inputs ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    sparse_ids = np.stack([rng.integers(0, n, rows) for n in num_embeddings], 1)
    dense = rng.standard_normal((rows, num_dense)).astype(np.float32)
    return EncodedBatch(sparse_ids, dense, None)


def torch_predict(model: torch.nn.Module) -> Predict:
    """The eager model as a server would call it: numpy in, numpy out."""

    @torch.inference_mode()
    def run(sparse_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        logits = model(torch.from_numpy(sparse_ids), torch.from_numpy(dense))
        return torch.sigmoid(logits).double().numpy()

    return run


def latencies(predict: Predict, rows: EncodedBatch, calls: int) -> np.ndarray:
    """Seconds per single-row call, after 200 warm-up calls."""
    inputs = [
        (rows.sparse_ids[i : i + 1], rows.dense[i : i + 1])
        for i in range(min(len(rows), calls))
    ]
    for i in range(200):
        predict(*inputs[i % len(inputs)])
    seconds = np.empty(calls)
    clock = time.perf_counter
    for i in range(calls):
        sparse_ids, dense = inputs[i % len(inputs)]
        started = clock()
        predict(sparse_ids, dense)
        seconds[i] = clock() - started
    return seconds


def rows_per_second(predict: Predict, rows: EncodedBatch, batch_size: int) -> float:
    """Rows/s from the median call over about 1M rows, after 3 warm-up calls."""
    chunks = max(1, len(rows) // batch_size)
    inputs = [
        (
            rows.sparse_ids[i * batch_size : (i + 1) * batch_size],
            rows.dense[i * batch_size : (i + 1) * batch_size],
        )
        for i in range(chunks)
    ]
    for i in range(3):
        predict(*inputs[i % chunks])
    calls = max(20, min(2000, 1_000_000 // batch_size))
    seconds = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        predict(*inputs[i % chunks])
        seconds[i] = time.perf_counter() - started
    return batch_size / float(np.median(seconds))


def one_round(predict: Predict, rows: EncodedBatch, calls: int) -> dict[str, float]:
    single = latencies(predict, rows, calls) * 1e6
    figures = {f"p{q}": float(np.percentile(single, q)) for q in (50, 95, 99)}
    for batch_size in LARGE_BATCHES:
        figures[f"b{batch_size}"] = rows_per_second(predict, rows, batch_size)
    return figures


def load_rows(args: argparse.Namespace, artifact) -> tuple[EncodedBatch, str]:
    if args.data is None:
        rows = random_rows(
            artifact.encoder.num_embeddings, artifact.model.num_dense, 8192, args.seed
        )
        return rows, "random in-vocabulary ids, dense ~ N(0, 1)"
    result = read_criteo(args.data, on_bad_lines="skip")
    rows = artifact.encoder.transform(result.batch)
    if len(rows) < max(LARGE_BATCHES):
        index = np.random.default_rng(args.seed).integers(0, len(rows), 8192)
        rows = rows.take(index)
    return rows, f"{args.data} ({len(result.batch)} rows)"


def table(results: dict[str, list[dict[str, float]]]) -> str:
    medians = {
        name: {k: float(np.median([r[k] for r in rounds])) for k in rounds[0]}
        for name, rounds in results.items()
    }
    lines = [
        "| path | batch 1 p50 µs | p95 µs | p99 µs | batch 64 rows/s "
        "| batch 4096 rows/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in medians.items():
        lines.append(
            f"| {name} | {m['p50']:.1f} | {m['p95']:.1f} | {m['p99']:.1f} "
            f"| {m['b64']:,.0f} | {m['b4096']:,.0f} |"
        )
    lean, eager = medians["lean"], medians["torch eager"]
    lines.append(
        f"| lean speed-up | {eager['p50'] / lean['p50']:.1f}x "
        f"| {eager['p95'] / lean['p95']:.1f}x | {eager['p99'] / lean['p99']:.1f}x "
        f"| {lean['b64'] / eager['b64']:.1f}x | {lean['b4096'] / eager['b4096']:.1f}x |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="artifact folder")
    parser.add_argument("--data", type=Path, help="a Criteo file (default: random)")
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds")
    parser.add_argument("--calls", type=int, default=2000, help="batch-1 calls")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads < 1 or args.repeats < 1 or args.calls < 2000:
        parser.error("--threads and --repeats must be >= 1, --calls >= 2000")

    torch.set_num_threads(args.threads)
    artifact = load_artifact(args.model)
    rows, source = load_rows(args, artifact)
    load_before = os.getloadavg()
    with threadpool_limits(args.threads):
        lean = LeanScorer.from_model(artifact.model, artifact.encoder)
        eager = torch_predict(artifact.model.eval())
        gap = np.abs(
            lean.predict_encoded(rows.sparse_ids, rows.dense)
            - eager(rows.sparse_ids, rows.dense)
        ).max()
        results: dict[str, list[dict[str, float]]] = {"lean": [], "torch eager": []}
        for round_ in range(args.repeats):
            order = [("lean", lean.predict_encoded), ("torch eager", eager)]
            for name, predict in order if round_ % 2 == 0 else order[::-1]:
                results[name].append(one_round(predict, rows, args.calls))
    load_after = os.getloadavg()

    print(f"command: {' '.join(shlex.quote(a) for a in sys.argv)}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cpus, "
        f"threads {args.threads}"
    )
    print(f"rows: {source}; model {args.model}")
    print(
        f"lean backends: {lean.small_backend} for 2..{lean.switch_rows - 1} rows, "
        f"{lean.large_backend} from {lean.switch_rows}, numpy at 1 row; "
        f"max |lean - torch| = {gap:.2e}"
    )
    print(
        "load average (1, 5, 15 min) before "
        f"{', '.join(f'{v:.2f}' for v in load_before)}, after "
        f"{', '.join(f'{v:.2f}' for v in load_after)}"
    )
    print(
        f"medians of {args.repeats} alternating rounds; batch 1 over "
        f"{args.calls} calls after 200 warm-up\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
