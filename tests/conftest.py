"""Shared fixtures: tiny planted rows, and the real samples in ../shared/data."""

from pathlib import Path

import numpy as np
import pytest

from data.batch import RawBatch
from data.schema import NUM_DENSE, NUM_SPARSE

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or a skip that says it is absent."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(
            f"real sample {path} is absent (../shared/data not beside the checkout)"
        )
    return path


def planted_batch(rows: int, seed: int = 0) -> RawBatch:
    """Rows whose click depends on C1 and on I1, so a model can learn it."""
    rng = np.random.default_rng(seed)
    sparse = rng.integers(0, 50, size=(rows, NUM_SPARSE)).astype(np.int64) * 7919
    sparse[rng.random((rows, NUM_SPARSE)) < 0.1] = -1
    dense = rng.integers(-2, 1000, size=(rows, NUM_DENSE)).astype(np.float64)
    dense[rng.random((rows, NUM_DENSE)) < 0.2] = np.nan
    logit = (
        -1.0
        + 2.0 * ((sparse[:, 0] // 7919) % 2 == 0)
        + 0.002 * np.nan_to_num(dense[:, 0])
    )
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    lines = np.arange(1, rows + 1)
    return RawBatch(labels, dense, sparse, lines.copy(), lines)


@pytest.fixture
def planted() -> RawBatch:
    return planted_batch(3000)


def tiny_model(
    raw: RawBatch,
    embedding_dim: int = 4,
    hidden_units: tuple[int, ...] = (16, 8),
    min_count: int = 1,
    seed: int = 0,
):
    """An untrained wide & deep over ``raw``'s vocabulary, with non-zero wide
    weights so its outputs differ from row to row; returns (model, encoder)."""
    import torch

    from ctr.config import ModelConfig
    from ctr.wide_deep import WideDeep
    from data.encoder import Encoder

    encoder = Encoder.fit(raw, min_count=min_count)
    torch.manual_seed(seed)
    config = ModelConfig(embedding_dim=embedding_dim, hidden_units=hidden_units)
    model = WideDeep(config, encoder.num_embeddings, 26)
    with torch.no_grad():
        model.wide_sparse.weight.normal_()
    return model, encoder


# Pruning and timing flags that keep a test's `run` or `compress` quick and
# accept every candidate: the mechanics are tested, not the defaults' quality.
QUICK_COMPRESSION = [
    "--steps",
    "2",
    "--fine-tune-epochs",
    "1",
    "--threads",
    "2",
    "--max-auc-drop",
    "1",
    "--max-logloss-rise",
    "1",
    "--bench-repeats",
    "1",
]
