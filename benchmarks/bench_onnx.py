"""ONNX Runtime against torch eager on the same encoded rows, side by side.

Exports each artifact with :func:`serving.onnx_export.export_onnx`, then times
both engines at batch 1 (p50/p95/p99 latency) and at 64 and 4096 rows (rows/s),
alternating engines over several rounds and reporting medians:

    /tmp/onnxvenv/bin/python benchmarks/bench_onnx.py \
        --model runs/real/compressed --baseline runs/real/baseline --threads 2
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from ctr.wide_deep import WideDeep
from serving.artifact import load_artifact
from serving.onnx_export import export_onnx, ort_session, sample_inputs

LATENCY_CALLS = 2000
LATENCY_WARMUP = 200
# (batch_size, timed calls, warm-up calls) for the throughput figures
THROUGHPUT = ((64, 500, 20), (4096, 40, 5))
POOL_ROWS = 4096 * 4

Engine = Callable[[np.ndarray, np.ndarray], np.ndarray]


def engines(model: WideDeep, onnx_path: Path, threads: int) -> dict[str, Engine]:
    """Both engines behind one signature: numpy rows in, probabilities out."""
    session = ort_session(onnx_path, threads)

    def run_onnx(sparse_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        return session.run(None, {"sparse_ids": sparse_ids, "dense": dense})[0]

    def run_torch(sparse_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        logits = model(torch.from_numpy(sparse_ids), torch.from_numpy(dense))
        return torch.sigmoid(logits).numpy()

    return {"onnxruntime": run_onnx, "torch eager": run_torch}


def seconds_per_call(
    engine: Engine,
    pool: tuple[np.ndarray, np.ndarray],
    batch_size: int,
    calls: int,
    warmup: int,
) -> np.ndarray:
    """Wall seconds of each of ``calls`` calls, cycling through ``pool``'s rows."""
    chunks = len(pool[0]) // batch_size
    inputs = [
        tuple(a[i * batch_size : (i + 1) * batch_size] for a in pool)
        for i in range(chunks)
    ]
    for i in range(warmup):
        engine(*inputs[i % chunks])
    seconds = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        engine(*inputs[i % chunks])
        seconds[i] = time.perf_counter() - started
    return seconds


def one_round(engine: Engine, pool: tuple[np.ndarray, np.ndarray]) -> dict:
    single = seconds_per_call(engine, pool, 1, LATENCY_CALLS, LATENCY_WARMUP) * 1e6
    figures = {f"p{q}": float(np.percentile(single, q)) for q in (50, 95, 99)}
    for batch_size, calls, warmup in THROUGHPUT:
        seconds = seconds_per_call(engine, pool, batch_size, calls, warmup)
        figures[f"rows_{batch_size}"] = batch_size / float(np.median(seconds))
    return figures


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_report(args, results: dict, gaps: dict, load: tuple) -> None:
    command = " ".join([Path(sys.executable).as_posix(), *sys.argv])
    print(f"command: `{command}`")
    print(
        f"threads {args.threads} (torch and ORT intra-op); {args.repeats} rounds, "
        f"engines alternating, medians over rounds; batch 1 over {LATENCY_CALLS} "
        f"calls after {LATENCY_WARMUP} warm-up"
    )
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}, "
        f"numpy {np.__version__}; {cpu_name()}, {os.cpu_count()} CPUs; "
        f"load average {load[0][0]:.2f} before, {load[1][0]:.2f} after"
    )
    print()
    print(
        "| model | engine | b1 p50 µs | b1 p95 µs | b1 p99 µs | b64 rows/s "
        "| b4096 rows/s | b4096 spread | max abs gap |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, per_engine in results.items():
        for engine, rounds in per_engine.items():
            median = {k: float(np.median([r[k] for r in rounds])) for k in rounds[0]}
            large = [r["rows_4096"] for r in rounds]
            spread = (max(large) - min(large)) / median["rows_4096"]
            print(
                f"| {name} | {engine} | {median['p50']:.0f} | {median['p95']:.0f} "
                f"| {median['p99']:.0f} | {median['rows_64']:,.0f} "
                f"| {median['rows_4096']:,.0f} | {spread:.0%} | {gaps[name]:.1e} |"
            )
    print()
    print("| model | ORT speed-up, b1 p50 | b1 p99 | b64 rows/s | b4096 rows/s |")
    print("|---|---:|---:|---:|---:|")
    for name, per_engine in results.items():
        ort, eager = (
            {k: np.median([r[k] for r in rounds]) for k in rounds[0]}
            for rounds in (per_engine["onnxruntime"], per_engine["torch eager"])
        )
        print(
            f"| {name} | {eager['p50'] / ort['p50']:.2f}x "
            f"| {eager['p99'] / ort['p99']:.2f}x "
            f"| {ort['rows_64'] / eager['rows_64']:.2f}x "
            f"| {ort['rows_4096'] / eager['rows_4096']:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="artifact folder")
    parser.add_argument("--baseline", type=Path, help="a second artifact folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="rounds per engine")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads: expected a positive integer, got {args.threads}")
    if args.repeats < 1:
        parser.error(f"--repeats: expected a positive integer, got {args.repeats}")
    torch.set_num_threads(args.threads)

    folders = {"model": args.model}
    if args.baseline is not None:
        folders["baseline"] = args.baseline
    load_before = os.getloadavg()
    results: dict[str, dict[str, list[dict]]] = {}
    gaps: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch, torch.inference_mode():
        setups = {}
        for name, folder in folders.items():
            model = load_artifact(folder).model
            path = export_onnx(model, Path(scratch) / f"{name}.onnx")
            pool = sample_inputs(model, POOL_ROWS, seed=0)
            setups[f"{name} ({folder})"] = (engines(model, path, args.threads), pool)

        for name, (by_engine, pool) in setups.items():
            ort, eager = (f(pool[0][:4096], pool[1][:4096]) for f in by_engine.values())
            gaps[name] = float(np.abs(ort - eager).max())
            results[name] = {engine: [] for engine in by_engine}

        for round_index in range(args.repeats):
            for name, (by_engine, pool) in setups.items():
                order = list(by_engine.items())
                if round_index % 2:
                    order.reverse()  # neither engine always runs on a warmer machine
                for engine, run in order:
                    results[name][engine].append(one_round(run, pool))

    print_report(args, results, gaps, (load_before, os.getloadavg()))


if __name__ == "__main__":
    main()
