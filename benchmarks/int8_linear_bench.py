"""Does computing the deep part in int8 pay off at scoring time?

The int8 storage keeps ``Linear`` weights as int8 on disk and dequantizes
them at load, so scoring runs in fp32. This benchmark measures the other
choice: the same model with its ``Linear`` layers replaced by PyTorch's
dynamically quantized int8 kernels (``torch.ao.quantization.quantize_dynamic``,
weights int8 per tensor, activations quantized per batch). For each artifact
it times both on the encoded rows of ``--data``, alternating rounds, and
reports medians with the AUC of each:

    .venv/bin/python benchmarks/int8_linear_bench.py \\
        --model runs/real/baseline runs/real/compressed \\
        --data ../shared/data/criteo/dac_union_12k.txt --threads 2
"""

import argparse
import logging
import shlex
import sys
import time
import warnings

import numpy as np
import torch
from torch import nn

from ctr.metrics import evaluate
from data.reader import read_rows
from serving.scorer import Scorer


def _quantized(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eager-mode API warns of its future
        return torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear}, dtype=torch.qint8
        )


@torch.no_grad()
def _time(model: nn.Module, sparse, dense, calls: int) -> float:
    """Median seconds of one call, after a tenth as many warm-up calls."""
    for _ in range(max(1, calls // 10)):
        model(sparse, dense)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model(sparse, dense)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", required=True, help="artifact folders")
    parser.add_argument("--data", required=True, help="labeled rows to score")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    print("command:", shlex.join(["python", *sys.argv]))
    batch, _ = read_rows(args.data)
    print(f"{len(batch):,} rows, {args.threads} threads, {args.repeats} rounds")
    print("| model | kernels | AUC on all rows | batch-1 p50 µs | batch-4096 rows/s |")
    print("|---|---|---:|---:|---:|")
    for folder in args.model:
        scorer = Scorer.load(folder)
        encoded = scorer.encode(batch)
        sparse = torch.from_numpy(encoded.sparse_ids.astype(np.int64))
        dense = torch.from_numpy(encoded.dense.astype(np.float32))
        index = np.random.default_rng(0).integers(0, len(encoded), 4096)
        models = {"fp32": scorer.model.eval(), "int8 dynamic": None}
        models["int8 dynamic"] = _quantized(scorer.model).eval()
        rounds = {name: ([], []) for name in models}
        for _ in range(args.repeats):
            for name, model in models.items():
                one = _time(model, sparse[:1], dense[:1], 500)
                big = _time(model, sparse[index], dense[index], 20)
                rounds[name][0].append(one * 1e6)
                rounds[name][1].append(4096 / big)
        for name, model in models.items():
            with torch.no_grad():
                scores = torch.sigmoid(model(sparse, dense)).double().numpy()
            auc = evaluate(encoded.labels, scores).auc
            p50 = float(np.median(rounds[name][0]))
            rows_per_s = float(np.median(rounds[name][1]))
            print(f"| {folder} | {name} | {auc:.4f} | {p50:.1f} | {rows_per_s:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
