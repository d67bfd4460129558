"""Sensitivity analysis: prune one hidden layer or one field alone, no fine-tuning.

Each hidden ``Linear`` layer loses its lowest-norm neurons, and each sparse
field folds its lowest-norm vocabulary rows into oov, one at a time and at a
series of levels; the validation AUC drop against the unpruned model shows how
much sparsity each part tolerates. After Han et al. (2015), "Learning both
Weights and Connections for Efficient Neural Networks".
"""

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compression.importance import (
    NORMS,
    embedding_row_importance,
    neuron_importance,
)
from compression.selection import keep_by_sparsity
from ctr.metrics import auc
from ctr.wide_deep import WideDeep
from data.encoder import NUM_RESERVED, OOV_ID, EncodedBatch
from data.schema import NUM_SPARSE, SPARSE_FEATURES

logger = logging.getLogger(__name__)

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class SensitivityRow:
    """Validation AUC with one layer or one field pruned to ``level``.

    Attributes:
        kind: "layer" (hidden neurons removed) or "field" (vocabulary rows
            folded into oov).
        name: the layer's module name ("mlp.0") or the field's ("C3").
        level: share of the layer's neurons, or of the field's vocabulary rows
            (reserved ids not counted), that was removed.
        valid_auc: validation AUC of the pruned model.
        auc_drop: unpruned AUC minus ``valid_auc``; negative when pruning helped.
        params_removed: scalar parameters the pruning removes from the model.
    """

    kind: Literal["layer", "field"]
    name: str
    level: float
    valid_auc: float
    auc_drop: float
    params_removed: int


@dataclass(frozen=True)
class _Baseline:
    """Tensors of the unpruned forward pass, shared by every pruned variant.

    ``B`` is the number of validation rows, ``F`` of fields, ``D`` the
    embedding width.
    """

    deep_input: torch.Tensor  # (B, F * D + num_dense)
    wide_fields: torch.Tensor  # (B, F): each field's wide weight
    wide_dense: torch.Tensor  # (B,)
    linear_inputs: list[torch.Tensor]  # input of each mlp Linear, in order
    logits: torch.Tensor  # (B,)


def field_names(model: WideDeep) -> list[str]:
    """``C1`` … ``C26`` for a Criteo model, ``F1`` … otherwise."""
    count = len(model.num_embeddings)
    if count == NUM_SPARSE:
        return list(SPARSE_FEATURES)
    return [f"F{i}" for i in range(1, count + 1)]


def layer_names(model: WideDeep) -> list[str]:
    """Module names of the hidden ``Linear`` layers (``mlp.0``, ``mlp.2``, …)."""
    names = [
        f"mlp.{n}" for n, m in model.mlp.named_children() if isinstance(m, nn.Linear)
    ]
    return names[:-1]


def layer_keep(
    model: WideDeep, layer: int, level: float, norm: str = "l2"
) -> torch.Tensor:
    """Keep mask of hidden layer ``layer`` with ``level`` of its neurons removed.

    Returns:
        ``(hidden_units[layer],)`` bool, for :func:`~compression.thinning.thin_mlp`.
    """
    hidden = len(model.linear_layers()) - 1
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < hidden:
        raise ValueError(f"layer: expected an index in [0, {hidden}), got {layer!r}")
    scores = neuron_importance(model.linear_layers()[layer], norm)
    return keep_by_sparsity(scores, level)


def field_keep(
    model: WideDeep, field: int, level: float, norm: str = "l2"
) -> np.ndarray:
    """Keep mask over field ``field``'s ids, ``level`` of its vocabulary folded.

    The reserved missing and oov ids always stay and do not count in ``level``.

    Returns:
        ``(num_embeddings[field],)`` bool, one entry of the ``keep`` list that
        :func:`~compression.thinning.thin_embedding_rows` takes.
    """
    fields = len(model.num_embeddings)
    if isinstance(field, bool) or not isinstance(field, int) or not 0 <= field < fields:
        raise ValueError(f"field: expected an index in [0, {fields}), got {field!r}")
    return _keep_rows(_field_scores(model, norm)[field], level)


def _field_scores(model: WideDeep, norm: str) -> list[torch.Tensor]:
    """Row importance cut per field: ``(num_embeddings[f],)`` each."""
    return list(embedding_row_importance(model, norm).split(model.num_embeddings))


def _keep_rows(scores: torch.Tensor, level: float) -> np.ndarray:
    keep = torch.ones(len(scores), dtype=torch.bool)
    if len(scores) > NUM_RESERVED:
        keep[NUM_RESERVED:] = keep_by_sparsity(scores[NUM_RESERVED:], level)
    return keep.numpy()


def _check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    try:
        levels = tuple(float(level) for level in levels)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"levels: expected a sequence of numbers, got {levels!r}"
        ) from err
    if not levels:
        raise ValueError("levels: expected at least one level, got none")
    if not all(0.0 < level < 1.0 for level in levels):
        raise ValueError(f"levels: expected shares in (0, 1), got {levels}")
    if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
        raise ValueError(
            f"levels: expected strictly increasing values, got {levels}; sort them "
            "and drop duplicates"
        )
    return levels


def _check_names(model: WideDeep, names: Sequence[str] | None) -> list[str]:
    if names is None:
        return field_names(model)
    names = list(names)
    if len(names) != len(model.num_embeddings) or not all(
        isinstance(n, str) for n in names
    ):
        raise ValueError(
            f"names: expected {len(model.num_embeddings)} field names, one per "
            f"sparse field, got {names!r:.80}"
        )
    return names


def _check_valid(model: WideDeep, valid: EncodedBatch) -> None:
    if not isinstance(valid, EncodedBatch):
        raise TypeError(f"valid: expected an EncodedBatch, got {type(valid).__name__}")
    if valid.labels is None:
        raise ValueError("valid: expected labelled rows, got labels=None")
    if len(valid) == 0:
        raise ValueError("valid: expected labelled rows, got 0 rows")
    positives = int(valid.labels.sum())
    if positives in (0, len(valid)):
        raise ValueError(
            f"valid: AUC needs clicks and non-clicks, got {positives} clicks in "
            f"{len(valid)} rows; use a larger validation split"
        )
    fields = len(model.num_embeddings)
    if valid.sparse_ids.shape != (len(valid), fields):
        raise ValueError(
            f"valid.sparse_ids: expected shape ({len(valid)}, {fields}), "
            f"got {valid.sparse_ids.shape}"
        )
    if valid.dense.shape != (len(valid), model.num_dense):
        raise ValueError(
            f"valid.dense: expected shape ({len(valid)}, {model.num_dense}), "
            f"got {valid.dense.shape}"
        )
    smallest, largest = valid.sparse_ids.min(axis=0), valid.sparse_ids.max(axis=0)
    for name, low, high, rows in zip(
        field_names(model), smallest, largest, model.num_embeddings, strict=True
    ):
        if low < 0 or high >= rows:
            raise ValueError(
                f"valid.sparse_ids: field {name} holds ids outside [0, {rows}); "
                "encode the rows with the encoder the model was trained with"
            )


def _baseline(model: WideDeep, valid: EncodedBatch) -> _Baseline:
    """The forward pass of :meth:`WideDeep.forward`, keeping its intermediates."""
    sparse_ids = torch.from_numpy(valid.sparse_ids)
    dense = torch.from_numpy(valid.dense)
    index = sparse_ids + model.offsets  # (B, F)
    embedded = model.embedding(index)  # (B, F, D)
    deep_input = torch.cat([embedded.flatten(1), dense], dim=1)
    wide_fields = model.wide_sparse(index).squeeze(2)  # (B, F)
    wide_dense = model.wide_dense(dense).squeeze(1)  # (B,)

    linear_inputs = []
    hidden = deep_input
    for module in model.mlp:
        if isinstance(module, nn.Linear):
            linear_inputs.append(hidden)
        hidden = module(hidden)
    logits = wide_fields.sum(1) + wide_dense + hidden.squeeze(1)  # (B,)
    return _Baseline(deep_input, wide_fields, wide_dense, linear_inputs, logits)


def _thinned_mlp_output(
    model: WideDeep, layer: int, keep: torch.Tensor, hidden: torch.Tensor
) -> torch.Tensor:
    """The deep output once hidden layer ``layer`` keeps only ``keep``.

    Slicing the rows of that layer and the matching columns of the next one is
    what :func:`~compression.thinning.thin_mlp` stores, without copying the
    model; the layers before ``layer`` are unchanged, so ``hidden`` is their
    cached output.

    Args:
        hidden: ``(B, in_features)`` input of layer ``layer``.

    Returns:
        ``(B,)`` deep logits.
    """
    modules = list(model.mlp)
    linears = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    pruned, following = modules[linears[layer]], modules[linears[layer + 1]]
    for module in modules[linears[layer] :]:
        if module is pruned:
            hidden = F.linear(hidden, module.weight[keep], module.bias[keep])
        elif module is following:
            hidden = F.linear(hidden, module.weight[:, keep], module.bias)
        else:
            hidden = module(hidden)
    return hidden.squeeze(1)


def _oov_logits(
    model: WideDeep, baseline: _Baseline, field: int, rows: torch.Tensor
) -> torch.Tensor:
    """Logits of ``rows`` with the id of ``field`` replaced by ``OOV_ID``.

    Thinning the tables (``thin_embedding_rows``) and re-encoding the ids
    (``remap_ids``) sends every dropped id to the oov row, which is the old
    oov row, and every kept id to a copy of its old row. A field pruned that
    way therefore gives the outputs of the unpruned model with its dropped ids
    replaced by ``OOV_ID``, and needs no copy of the tables.

    Args:
        rows: ``(B,)`` bool, the validation rows to compute.

    Returns:
        ``(rows.sum(),)`` logits.
    """
    oov = int(model.offsets[field]) + OOV_ID
    width = model.config.embedding_dim
    # boolean indexing copies, so the cached tensors stay untouched
    deep_input = baseline.deep_input[rows]  # (rows, F * D + num_dense)
    deep_input[:, field * width : (field + 1) * width] = model.embedding.weight[oov]
    wide_fields = baseline.wide_fields[rows]  # (rows, F)
    wide_fields[:, field] = model.wide_sparse.weight[oov, 0]
    deep = model.mlp(deep_input).squeeze(1)
    return wide_fields.sum(1) + baseline.wide_dense[rows] + deep


def _auc(valid: EncodedBatch, logits: torch.Tensor) -> float:
    # same float32 sigmoid as ``ctr.train.predict``, so ties agree with it
    return auc(valid.labels, torch.sigmoid(logits).double().numpy())


@torch.inference_mode()
def sensitivity(
    model: WideDeep,
    valid: EncodedBatch,
    levels: Sequence[float] = LEVELS,
    norm: str = "l2",
    names: Sequence[str] | None = None,
) -> list[SensitivityRow]:
    """AUC drop of each hidden layer and each field pruned alone, per level.

    A layer loses ``level`` of its neurons by ``norm`` of their incoming
    weights (the other layers untouched); a field folds ``level`` of its
    lowest-norm vocabulary rows into oov. Nothing is fine-tuned.

    Args:
        model: a trained model; left unchanged.
        valid: labelled rows with clicks and non-clicks, encoded for ``model``.
        levels: shares to remove, strictly increasing, each in (0, 1).
        norm: "l1" or "l2" importance.
        names: the fields' names (``Encoder.sparse_features``); by default
            :func:`field_names`.

    Returns:
        Rows for every hidden layer at every level, then every field at
        every level.
    """
    if not isinstance(model, WideDeep):
        raise TypeError(f"model: expected a WideDeep, got {type(model).__name__}")
    levels = _check_levels(levels)
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
    _check_valid(model, valid)
    names = _check_names(model, names)

    started = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        baseline = _baseline(model, valid)
        base_auc = _auc(valid, baseline.logits)
        rows = _layer_rows(model, valid, baseline, base_auc, levels, norm)
        rows += _field_rows(model, valid, baseline, base_auc, levels, norm, names)
    finally:
        model.train(was_training)
    logger.info(
        "sensitivity: %d rows (%d levels) in %.2f s, unpruned valid_auc %.4f",
        len(rows),
        len(levels),
        time.perf_counter() - started,
        base_auc,
    )
    return rows


def _layer_rows(
    model: WideDeep,
    valid: EncodedBatch,
    baseline: _Baseline,
    base_auc: float,
    levels: tuple[float, ...],
    norm: str,
) -> list[SensitivityRow]:
    rows = []
    wide = baseline.wide_fields.sum(1) + baseline.wide_dense  # (B,)
    linears = model.linear_layers()
    for layer, name in enumerate(layer_names(model)):
        scores = neuron_importance(linears[layer], norm)
        fan_in = linears[layer].in_features + 1  # weights and bias
        fan_out = linears[layer + 1].out_features
        for level in levels:
            keep = keep_by_sparsity(scores, level)
            hidden = baseline.linear_inputs[layer]
            logits = wide + _thinned_mlp_output(model, layer, keep, hidden)
            valid_auc = _auc(valid, logits)
            removed = int((~keep).sum()) * (fan_in + fan_out)
            rows.append(
                SensitivityRow(
                    "layer", name, level, valid_auc, base_auc - valid_auc, removed
                )
            )
    return rows


def _field_rows(
    model: WideDeep,
    valid: EncodedBatch,
    baseline: _Baseline,
    base_auc: float,
    levels: tuple[float, ...],
    norm: str,
    names: list[str],
) -> list[SensitivityRow]:
    rows = []
    row_params = model.config.embedding_dim + 1  # embedding vector and wide weight
    for field, (name, scores) in enumerate(
        zip(names, _field_scores(model, norm), strict=True)
    ):
        ids = valid.sparse_ids[:, field]
        foldable = torch.from_numpy(ids >= NUM_RESERVED)  # (B,)
        # a folded row reads oov at every level, and the folded sets grow with
        # the level, so one pass over the foldable rows serves every level
        oov_logits = baseline.logits.clone()
        oov_logits[foldable] = _oov_logits(model, baseline, field, foldable)
        for level in levels:
            keep = _keep_rows(scores, level)
            folded = torch.from_numpy(~keep[ids])  # (B,)
            valid_auc = _auc(valid, torch.where(folded, oov_logits, baseline.logits))
            removed = int((~keep).sum()) * row_params
            rows.append(
                SensitivityRow(
                    "field", name, level, valid_auc, base_auc - valid_auc, removed
                )
            )
    return rows


def allocate(rows: Sequence[SensitivityRow], max_auc_drop: float) -> dict[str, float]:
    """Per layer and per field, the largest level whose AUC drop fits the budget.

    Each part is judged alone; pruning several at their allocated levels can
    lose more than ``max_auc_drop`` in total. A level whose drop is ``nan``
    never fits.

    Args:
        rows: output of :func:`sensitivity`.
        max_auc_drop: largest accepted AUC drop, >= 0.

    Returns:
        ``{name: level}`` in the order of ``rows``; 0.0 where no level fits.
    """
    if isinstance(max_auc_drop, bool) or not isinstance(max_auc_drop, int | float):
        raise TypeError(f"max_auc_drop: expected a number, got {max_auc_drop!r}")
    if not max_auc_drop >= 0 or math.isinf(max_auc_drop):
        raise ValueError(
            f"max_auc_drop: expected a finite value >= 0, got {max_auc_drop}"
        )
    allowed: dict[str, float] = {}
    for row in rows:
        if not isinstance(row, SensitivityRow):
            raise TypeError(
                f"rows: expected SensitivityRow entries, got {type(row).__name__}"
            )
        best = allowed.setdefault(row.name, 0.0)
        if row.auc_drop <= max_auc_drop and row.level > best:
            allowed[row.name] = row.level
    return allowed


def sensitivity_table(rows: Sequence[SensitivityRow]) -> str:
    """Markdown table: one line per layer or field, one column per level.

    Cells hold the AUC drop to 4 decimals; a level not measured for a name is
    left blank.
    """
    if not rows:
        raise ValueError("rows: expected the output of sensitivity(), got no rows")
    levels = sorted({row.level for row in rows})
    drops: dict[tuple[str, str], dict[float, float]] = {}
    for row in rows:
        drops.setdefault((row.kind, row.name), {})[row.level] = row.auc_drop

    header = ["kind", "name", *(f"{level:g}" for level in levels)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---", *("---:" for _ in levels)]) + "|",
    ]
    for (kind, name), by_level in drops.items():
        cells = [f"{by_level[lv]:.4f}" if lv in by_level else "" for lv in levels]
        lines.append("| " + " | ".join([kind, name, *cells]) + " |")
    return "\n".join(lines)
