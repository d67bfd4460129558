"""Turn importance scores into keep masks, by target sparsity or threshold λ."""

import math

import torch


def keep_by_sparsity(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the highest-scoring ``1 - sparsity`` share (at least one entry).

    Args:
        scores: ``(n,)`` importance scores.
        sparsity: share to remove, in [0, 1).

    Returns:
        ``(n,)`` boolean keep mask.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity: expected a share in [0, 1), got {sparsity}")
    keep_count = max(1, math.ceil(len(scores) * (1.0 - sparsity) - 1e-9))
    keep = torch.zeros(len(scores), dtype=torch.bool)
    # stable sort so that ties resolve the same way on every run
    order = torch.sort(scores, descending=True, stable=True).indices
    keep[order[:keep_count]] = True
    return keep


def keep_by_threshold(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Keep entries scoring above ``threshold`` (λ); the best one always stays."""
    if not threshold >= 0:
        raise ValueError(f"threshold: expected a value >= 0, got {threshold}")
    keep = scores > threshold
    if not keep.any():
        keep[int(scores.argmax())] = True
    return keep


def magnitude_mask(
    weight: torch.Tensor,
    sparsity: float | None = None,
    threshold: float | None = None,
) -> torch.Tensor:
    """Unstructured mask over all entries of ``weight`` (same shape, bool).

    Exactly one of ``sparsity`` and ``threshold`` must be given; scores are
    ``|w|``. A mask only zeroes weights: bytes and time shrink only once the
    zeros are removed, which is why the pipeline thins whole neurons.
    """
    if (sparsity is None) == (threshold is None):
        raise ValueError("magnitude_mask: give exactly one of sparsity and threshold")
    scores = weight.detach().abs().flatten()
    if sparsity is not None:
        keep = keep_by_sparsity(scores, sparsity)
    else:
        keep = keep_by_threshold(scores, threshold)
    return keep.reshape(weight.shape)
