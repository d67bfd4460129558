"""Latency and throughput of a model's scorer on encoded rows, with warm-up.

Batch-1 latency is timed call by call (p50, p99); throughput is rows per
second at a large batch, from the median of repeated calls.
"""

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ctr.wide_deep import WideDeep
from data.encoder import EncodedBatch
from serving.lean import LeanScorer


@dataclass(frozen=True)
class BenchResult:
    p50_us: float
    p99_us: float
    rows_per_s: float
    batch_size: int
    calls: int
    threads: int

    def as_dict(self) -> dict:
        return asdict(self)


def _tile(batch: EncodedBatch, rows: int, seed: int) -> EncodedBatch:
    """``rows`` rows drawn from ``batch`` (with repeats when it is smaller)."""
    index = np.random.default_rng(seed).integers(0, len(batch), rows)
    return batch.take(index)


def time_calls(
    scorer: LeanScorer,
    batch: EncodedBatch,
    batch_size: int,
    calls: int,
    warmup: int,
    seed: int = 0,
) -> np.ndarray:
    """Seconds per call of ``scorer`` for ``calls`` batches of ``batch_size`` rows."""
    if len(batch) == 0:
        raise ValueError("batch: benchmarking needs at least one encoded row")
    rows = _tile(batch, batch_size * min(calls, 64), seed)
    chunks = len(rows) // batch_size
    inputs = [
        (
            rows.sparse_ids[i * batch_size : (i + 1) * batch_size],
            rows.dense[i * batch_size : (i + 1) * batch_size],
        )
        for i in range(chunks)
    ]
    for i in range(warmup):
        scorer.predict_encoded(*inputs[i % chunks])
    seconds = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        scorer.predict_encoded(*inputs[i % chunks])
        seconds[i] = time.perf_counter() - started
    return seconds


def benchmark(
    model: WideDeep,
    batch: EncodedBatch,
    latency_calls: int = 2000,
    throughput_calls: int = 30,
    large_batch: int = 4096,
) -> BenchResult:
    """Batch-1 p50/p99 latency and ``large_batch`` rows/s on ``batch``'s rows.

    Times the lean scorer built from ``model``, the path that ``score`` and
    ``serve`` run; ``slimctr bench --baseline`` compares it with other engines.
    """
    scorer = LeanScorer.from_model(model)
    single = time_calls(scorer, batch, 1, latency_calls, warmup=200)
    large = time_calls(scorer, batch, large_batch, throughput_calls, warmup=3)
    return BenchResult(
        p50_us=float(np.percentile(single, 50) * 1e6),
        p99_us=float(np.percentile(single, 99) * 1e6),
        rows_per_s=float(large_batch / np.median(large)),
        batch_size=large_batch,
        calls=latency_calls,
        threads=torch.get_num_threads(),
    )
