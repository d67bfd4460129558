"""Physically remove pruned structures: smaller ``Linear`` layers and tables.

A thinned model is a new, ordinary :class:`~ctr.wide_deep.WideDeep` with
smaller shapes: nothing is masked, so the saved artifact really shrinks.
"""

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ctr.wide_deep import WideDeep
from data.encoder import NUM_RESERVED, OOV_ID, EncodedBatch


def thin_mlp(model: WideDeep, keep: list[torch.Tensor]) -> WideDeep:
    """Drop hidden neurons and the matching inputs of the next layer.

    Args:
        model: the model to thin; left unchanged.
        keep: one boolean mask per hidden layer, ``(hidden_units[i],)``.

    Returns:
        A new model whose hidden layer ``i`` has ``keep[i].sum()`` neurons.
    """
    layers = model.linear_layers()
    if len(keep) != len(layers) - 1:
        raise ValueError(
            f"keep: expected {len(layers) - 1} masks (one per hidden layer), "
            f"got {len(keep)}"
        )
    for i, (mask, layer) in enumerate(zip(keep, layers, strict=False)):
        if mask.shape != (layer.out_features,) or not mask.any():
            raise ValueError(
                f"keep[{i}]: expected a boolean mask of {layer.out_features} "
                "with at least one True"
            )

    units = tuple(int(mask.sum()) for mask in keep)
    config = replace(model.config, hidden_units=units)
    thinned = WideDeep(config, model.num_embeddings, model.num_dense)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # the thinned model has the same layer order, so ``mlp.N`` keys carry over
    names = [n for n, m in model.mlp.named_children() if isinstance(m, nn.Linear)]
    first_columns = torch.ones(layers[0].in_features, dtype=torch.bool)
    column_masks = [first_columns, *keep]
    row_masks = [*keep, torch.ones(1, dtype=torch.bool)]
    for name, rows, columns in zip(names, row_masks, column_masks, strict=True):
        weight = state[f"mlp.{name}.weight"]
        state[f"mlp.{name}.weight"] = weight[rows][:, columns].contiguous()
        state[f"mlp.{name}.bias"] = state[f"mlp.{name}.bias"][rows].contiguous()
    thinned.load_state_dict(state)
    return thinned


def split_rows(model: WideDeep, keep: torch.Tensor) -> list[np.ndarray]:
    """Cut a keep mask over the shared table into one mask per field."""
    bounds = np.cumsum([0, *model.num_embeddings])
    mask = keep.numpy()
    return [mask[bounds[i] : bounds[i + 1]].copy() for i in range(len(bounds) - 1)]


def thin_embedding_rows(model: WideDeep, keep: list[np.ndarray]) -> WideDeep:
    """Drop vocabulary rows from the embedding and wide tables.

    Args:
        model: the model to thin; left unchanged.
        keep: per field, a boolean mask over its ids; the reserved ids
            (missing, oov) must be kept. Dropped values fall back to oov,
            which :meth:`data.encoder.Encoder.keep_rows` mirrors.
    """
    if len(keep) != len(model.num_embeddings):
        raise ValueError(f"keep: expected {len(model.num_embeddings)} field masks")
    for i, (mask, rows) in enumerate(zip(keep, model.num_embeddings, strict=True)):
        if mask.shape != (rows,) or not mask[:NUM_RESERVED].all():
            raise ValueError(
                f"keep[{i}]: expected {rows} entries with the reserved ids kept"
            )

    flat = torch.from_numpy(np.concatenate(keep))
    sizes = [int(mask.sum()) for mask in keep]
    thinned = WideDeep(model.config, sizes, model.num_dense)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["embedding.weight"] = state["embedding.weight"][flat].contiguous()
    state["wide_sparse.weight"] = state["wide_sparse.weight"][flat].contiguous()
    thinned.load_state_dict(state)
    return thinned


def remap_ids(batch: EncodedBatch, keep: list[np.ndarray]) -> EncodedBatch:
    """Re-encode ids for a model thinned with ``keep``: dropped ids become oov."""
    sparse_ids = np.empty_like(batch.sparse_ids)
    for field, mask in enumerate(keep):
        new_id = np.cumsum(mask) - 1
        new_id[~mask] = OOV_ID
        sparse_ids[:, field] = new_id[batch.sparse_ids[:, field]]
    return EncodedBatch(sparse_ids, batch.dense, batch.labels)


def embedding_columns(model: WideDeep, keep_dims: torch.Tensor) -> torch.Tensor:
    """Mask over the first ``Linear`` layer's inputs for kept embedding dims.

    The deep input is the fields' embeddings side by side, then the dense
    features, so each embedding dimension feeds one column per field.
    """
    fields = len(model.num_embeddings)
    dense = torch.ones(model.num_dense, dtype=torch.bool)
    return torch.cat([keep_dims.repeat(fields), dense])


def thin_embedding_dims(model: WideDeep, keep_dims: torch.Tensor) -> WideDeep:
    """Drop embedding dimensions, shared by every field, and the MLP inputs
    that read them.

    Args:
        model: the model to thin; left unchanged.
        keep_dims: ``(embedding_dim,)`` boolean mask, at least one True.
    """
    dim = model.config.embedding_dim
    if keep_dims.shape != (dim,) or not keep_dims.any():
        raise ValueError(
            f"keep_dims: expected a boolean mask of {dim} with at least one True"
        )
    config = replace(model.config, embedding_dim=int(keep_dims.sum()))
    thinned = WideDeep(config, model.num_embeddings, model.num_dense)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["embedding.weight"] = state["embedding.weight"][:, keep_dims].contiguous()
    first = next(n for n, m in model.mlp.named_children() if isinstance(m, nn.Linear))
    columns = embedding_columns(model, keep_dims)
    weight = state[f"mlp.{first}.weight"]
    state[f"mlp.{first}.weight"] = weight[:, columns].contiguous()
    thinned.load_state_dict(state)
    return thinned
