"""Frequency cut-off: fold the rarest vocabulary values into oov, the count
chosen on validation.

A value seen a handful of times in training gets a row that mostly learned
noise, and the long tail of such values is most of a CTR model's bytes. The
cut-off keeps the rows of values seen at least ``min_count`` times; the rest
share the oov row. Each level is tried by folding alone, without retraining,
so a trial costs one validation pass; levels rise until one falls below the
AUC floor, and the last level above it is kept.
"""

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from compression.thinning import remap_ids, split_rows, thin_embedding_rows
from ctr.metrics import evaluate
from ctr.train import predict
from ctr.wide_deep import WideDeep
from data.encoder import NUM_RESERVED, EncodedBatch

logger = logging.getLogger(__name__)

# training counts tried, lowest first
LEVELS = (2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)


@dataclass(frozen=True)
class CutoffTrial:
    """One level tried: vocabulary rows kept (the reserved missing and oov rows
    not counted) and validation AUC."""

    min_count: int
    rows: int
    valid_auc: float

    def as_dict(self) -> dict:
        return asdict(self)


def frequency_keep(
    model: WideDeep, frequency: torch.Tensor, min_count: int
) -> list[np.ndarray]:
    """Per field, the rows looked up at least ``min_count`` times, and the
    reserved missing and oov rows."""
    keep = frequency >= min_count
    starts = model.offsets
    keep[(starts[:, None] + torch.arange(NUM_RESERVED)).flatten()] = True
    return split_rows(model, keep)


def choose_cutoff(
    model: WideDeep,
    frequency: torch.Tensor,
    valid: EncodedBatch,
    floor: float,
    levels: tuple[int, ...] = LEVELS,
) -> tuple[int, list[CutoffTrial]]:
    """The highest level whose folded model keeps validation AUC ≥ ``floor``.

    Args:
        model: the trained model, left unchanged.
        frequency: ``(sum(num_embeddings),)`` training lookups per row, from
            :func:`compression.importance.embedding_row_frequency`.
        valid: validation rows encoded for ``model``.
        floor: the lowest validation AUC accepted.
        levels: counts to try, ascending.

    Returns:
        The chosen count (0 when no level keeps the floor or none removes a
        row) and every trial made, the one that broke the floor included.
    """
    if list(levels) != sorted(levels) or not all(level >= 1 for level in levels):
        raise ValueError(f"levels: expected ascending counts >= 1, got {levels}")
    reserved = NUM_RESERVED * len(model.num_embeddings)
    chosen, trials, last_rows = 0, [], sum(model.num_embeddings) - reserved
    for level in levels:
        keep = frequency_keep(model, frequency, level)
        rows = int(sum(mask.sum() for mask in keep)) - reserved
        if rows == last_rows:
            continue  # this level removes nothing more
        folded = thin_embedding_rows(model, keep)
        auc = evaluate(valid.labels, predict(folded, remap_ids(valid, keep))).auc
        trials.append(CutoffTrial(level, rows, auc))
        logger.info("cut-off %d: %d rows, valid AUC %.4f", level, rows, auc)
        if not auc >= floor:  # nan breaks too
            break
        chosen, last_rows = level, rows
        if rows == 0:
            break  # nothing left to fold
    return chosen, trials
