"""Latency and throughput of a model's scorer on encoded rows, with warm-up.

Batch-1 latency is timed call by call (p50, p99); throughput is rows per
second at a large batch, from the median of repeated calls.
"""

import time
from collections.abc import Callable
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


def random_rows(
    num_embeddings, num_dense: int, rows: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random in-vocabulary encoded rows, for timing when no data is given.

    Args:
        num_embeddings: ``(num_sparse,)`` table sizes; each id column stays
            below its size.
        num_dense: width of the dense input: standard-normal values, then
            0/1 missing flags in the second half.

    Returns:
        ``sparse_ids`` ``(rows, num_sparse)`` int64 and ``dense``
        ``(rows, num_dense)`` float32.
    """
    if rows < 1:
        raise ValueError(f"rows: expected a positive count, got {rows}")
    rng = np.random.default_rng(seed)
    high = np.asarray(num_embeddings)
    sparse_ids = (rng.random((rows, len(high))) * high).astype(np.int64)
    values = rng.standard_normal((rows, num_dense - num_dense // 2))
    flags = rng.random((rows, num_dense // 2)) < 0.2
    dense = np.concatenate([values, flags], axis=1).astype(np.float32)
    return sparse_ids, dense


def _tile(batch: EncodedBatch, rows: int, seed: int) -> EncodedBatch:
    """``rows`` rows drawn from ``batch`` (with repeats when it is smaller)."""
    index = np.random.default_rng(seed).integers(0, len(batch), rows)
    return batch.take(index)


def seconds_per_call(
    engine: Callable[[np.ndarray, np.ndarray], np.ndarray],
    pool: tuple[np.ndarray, np.ndarray],
    batch_size: int,
    calls: int,
    warmup: int | None = None,
) -> np.ndarray:
    """Wall seconds of each of ``calls`` calls on ``batch_size`` rows of ``pool``.

    Cycles through the pool's consecutive slices after ``warmup`` untimed calls
    (a tenth of ``calls``, at least 3, by default).
    """
    warmup = max(3, calls // 10) if warmup is None else warmup
    chunks = min(len(pool[0]) // batch_size, 1024)
    assert chunks >= 1, "the pool holds at least the largest batch"
    inputs = [
        tuple(a[i * batch_size : (i + 1) * batch_size] for a in pool)
        for i in range(chunks)
    ]
    for i in range(warmup):
        engine(*inputs[i % chunks])
    seconds = np.empty(calls)
    clock = time.perf_counter
    for i in range(calls):
        sparse_ids, dense = inputs[i % chunks]
        started = clock()
        engine(sparse_ids, dense)
        seconds[i] = clock() - started
    return seconds


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
    pool = (rows.sparse_ids, rows.dense)
    return seconds_per_call(scorer.predict_encoded, pool, batch_size, calls, warmup)


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
