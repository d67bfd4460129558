"""Importance scores by L1 or L2 norm: per weight, per neuron, per embedding row."""

import torch
from torch import nn

from compression.prune_config import NORMS
from ctr.wide_deep import WideDeep


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")


def weight_importance(weight: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    """Per-weight score, same shape as ``weight``: ``|w|`` (l1) or ``w**2`` (l2)."""
    _check_norm(norm)
    return weight.detach().abs() if norm == "l1" else weight.detach().pow(2)


def neuron_importance(layer: nn.Linear, norm: str = "l2") -> torch.Tensor:
    """Norm of each output neuron's incoming weights and bias.

    After Li et al. (2017), "Pruning Filters for Efficient ConvNets".

    Returns:
        ``(out_features,)`` scores.
    """
    _check_norm(norm)
    rows = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], dim=1)
    return rows.norm(p=1 if norm == "l1" else 2, dim=1)


def embedding_row_importance(model: WideDeep, norm: str = "l2") -> torch.Tensor:
    """Norm of each vocabulary row: its embedding vector and its wide weight.

    Rows of rarely seen values stay near their small initial values, so they
    score low and are the first to be folded into oov.

    Returns:
        ``(sum(num_embeddings),)`` scores over the shared table.
    """
    _check_norm(norm)
    rows = torch.cat(
        [model.embedding.weight.detach(), model.wide_sparse.weight.detach()], dim=1
    )
    return rows.norm(p=1 if norm == "l1" else 2, dim=1)


def embedding_row_frequency(model: WideDeep, sparse_ids: torch.Tensor) -> torch.Tensor:
    """How often each vocabulary row is looked up in ``sparse_ids``.

    The frequency cut-off criterion: rows of values seen rarely in training
    learn little and are the cheapest to fold into oov.

    Args:
        sparse_ids: ``(rows, num_sparse)`` training ids for ``model``.

    Returns:
        ``(sum(num_embeddings),)`` float counts over the shared table.
    """
    index = (sparse_ids + model.offsets).flatten()
    return torch.bincount(index, minlength=model.embedding.num_embeddings).double()


def embedding_dim_importance(model: WideDeep, norm: str = "l2") -> torch.Tensor:
    """Importance of each embedding dimension shared by all fields.

    The norm of the dimension's column over the whole table times the norm
    of the first-layer weights that read it: a dimension matters when its
    values are large and the network uses them.

    Returns:
        ``(embedding_dim,)`` scores.
    """
    _check_norm(norm)
    p = 1 if norm == "l1" else 2
    dim = model.config.embedding_dim
    table = model.embedding.weight.detach().norm(p=p, dim=0)  # (embedding_dim,)
    first = model.linear_layers()[0].weight.detach()
    fields = len(model.num_embeddings)
    reads = first[:, : fields * dim].reshape(first.shape[0], fields, dim)
    used = reads.norm(p=p, dim=(0, 1))  # (embedding_dim,)
    return table * used
