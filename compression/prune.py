"""Iterative prune → fine-tune: structured neuron pruning and embedding rows.

First, a frequency cut-off (:mod:`compression.cutoff`) folds the rarest values
into oov, its count chosen on validation within a share of the budget. Then
each step ranks hidden neurons and vocabulary rows, keeps the share the
schedule allows, physically thins the model and fine-tunes it; when
fine-tuning does not raise validation AUC, the step keeps its pruned weights
as they were. Validation AUC is measured after every step; the first step
that falls more than ``max_auc_drop`` below the unpruned model is rolled back
and pruning stops.
"""

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from compression.cutoff import CutoffTrial, choose_cutoff, frequency_keep
from compression.importance import (
    embedding_dim_importance,
    embedding_row_frequency,
    embedding_row_importance,
    neuron_importance,
)
from compression.prune_config import PruneConfig
from compression.schedule import agp_schedule
from compression.selection import keep_by_sparsity, keep_by_threshold
from compression.thinning import (
    remap_ids,
    split_rows,
    thin_embedding_dims,
    thin_embedding_rows,
    thin_mlp,
)
from ctr.config import TrainConfig
from ctr.metrics import evaluate
from ctr.train import fit, predict
from ctr.wide_deep import WideDeep, count_params
from data.encoder import NUM_RESERVED, EncodedBatch, Encoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRecord:
    """One row of the compression table; step 0 is the unpruned model.

    ``stage`` is "start", "cut-off" (rows seen fewer than ``min_count`` times
    in training folded into oov) or "prune" (a schedule step).
    """

    step: int
    neuron_sparsity: float
    row_sparsity: float
    sparsity: float
    params: int
    bytes: int
    valid_auc: float
    valid_logloss: float
    hidden_units: tuple[int, ...]
    embedding_dim: int
    vocabulary_rows: int
    rolled_back: bool = False
    stage: str = "prune"
    min_count: int = 0

    def as_dict(self) -> dict:
        return {**asdict(self), "hidden_units": list(self.hidden_units)}


@dataclass
class PruneResult:
    """The chosen (last accepted) model and encoder, and every step's record.

    ``snapshots[i]`` holds the model and encoder after accepted step ``i``
    (step 0 is the unpruned model), so later stages can compare them all.
    """

    model: WideDeep
    encoder: Encoder
    steps: list[StepRecord] = field(default_factory=list)
    chosen_step: int = 0
    snapshots: list[tuple[WideDeep, Encoder]] = field(default_factory=list)
    cutoff: list[CutoffTrial] = field(default_factory=list)


def _targets(config: PruneConfig) -> list[tuple[float, float, float]]:
    thresholds = config.neuron_threshold is not None or config.row_threshold is not None
    steps = 1 if config.schedule == "one-shot" or thresholds else config.steps
    neurons = agp_schedule(config.neuron_sparsity, steps)
    rows = agp_schedule(config.row_sparsity, steps)
    dims = agp_schedule(config.dim_sparsity, steps)
    return list(zip(neurons, rows, dims, strict=True))


def prune_dims(
    model: WideDeep, original_dim: int, sparsity: float, norm: str
) -> WideDeep:
    """Keep ``1 - sparsity`` of the original embedding dimensions."""
    target = max(1, math.ceil(original_dim * (1.0 - sparsity) - 1e-9))
    if target >= model.config.embedding_dim:
        return model
    share = 1.0 - target / model.config.embedding_dim
    keep = keep_by_sparsity(embedding_dim_importance(model, norm), share)
    return thin_embedding_dims(model, keep)


def prune_neurons(
    model: WideDeep,
    original_units: tuple[int, ...],
    sparsity: float,
    norm: str,
    threshold: float | None = None,
) -> WideDeep:
    """Thin each hidden layer to ``1 - sparsity`` of its original width.

    With ``threshold`` (λ) set, neurons scoring at most λ go instead.
    """
    keep = []
    for layer, units in zip(model.linear_layers()[:-1], original_units, strict=True):
        scores = neuron_importance(layer, norm)
        if threshold is not None:
            keep.append(keep_by_threshold(scores, threshold))
            continue
        target = max(1, math.ceil(units * (1.0 - sparsity) - 1e-9))
        share = 1.0 - target / layer.out_features
        keep.append(keep_by_sparsity(scores, max(share, 0.0)))
    return thin_mlp(model, keep)


def prune_rows(
    model: WideDeep,
    original_rows: int,
    sparsity: float,
    norm: str,
    threshold: float | None = None,
    frequency: torch.Tensor | None = None,
    weighted: bool = False,
) -> tuple[WideDeep, list[np.ndarray]]:
    """Fold the lowest-norm vocabulary rows into oov, ranked over all fields.

    Keeps ``1 - sparsity`` of ``original_rows`` (or, with ``threshold`` set,
    the rows scoring above λ); the reserved missing and oov rows always stay.
    With ``frequency`` given, rows are ranked by it (ties by norm) instead,
    or with ``weighted`` by frequency times norm.

    Returns:
        The thinned model and, per field, the keep mask over its old ids.
    """
    scores = embedding_row_importance(model, norm)
    if frequency is not None and weighted:
        scores = frequency * scores.double()
    elif frequency is not None:
        # norms are far below 1, so they only break ties between equal counts
        scores = frequency + scores.double() / (1.0 + scores.max().double())
    starts = torch.tensor([0, *model.num_embeddings[:-1]]).cumsum(0)
    reserved = (starts[:, None] + torch.arange(NUM_RESERVED)).flatten()
    scores[reserved] = math.inf

    if threshold is not None:
        flat_keep = keep_by_threshold(scores, threshold)
    else:
        target = len(reserved) + math.ceil(original_rows * (1.0 - sparsity) - 1e-9)
        share = 1.0 - min(target, len(scores)) / len(scores)
        flat_keep = keep_by_sparsity(scores, max(share, 0.0))
    flat_keep[reserved] = True  # whatever λ is, missing and oov stay
    keep = split_rows(model, flat_keep)
    return thin_embedding_rows(model, keep), keep


def prune_gradually(
    model: WideDeep,
    encoder: Encoder,
    train: EncodedBatch,
    valid: EncodedBatch,
    config: PruneConfig,
    train_config: TrainConfig,
    measure_bytes: Callable[[WideDeep, Encoder], int],
    progress: bool = False,
) -> PruneResult:
    """Prune ``model`` step by step, fine-tuning and validating after each step.

    Args:
        model, encoder: the trained model and the encoder its ids come from.
        train, valid: rows encoded by ``encoder``.
        measure_bytes: size on disk of an artifact holding a model and encoder.
    """
    original_units = model.config.hidden_units
    original_dim = model.config.embedding_dim
    original_rows = sum(model.num_embeddings) - NUM_RESERVED * len(model.num_embeddings)
    original_params = count_params(model)
    fine_tune = fine_tune_config(train_config, config)

    def record(  # rows_in: validation rows encoded for ``current``
        step: int, current: WideDeep, current_encoder: Encoder, rows_in: EncodedBatch
    ) -> StepRecord:
        metrics = evaluate(rows_in.labels, predict(current, rows_in))
        rows = sum(len(v) for v in current_encoder.vocabularies)
        return StepRecord(
            step=step,
            neuron_sparsity=1.0
            - sum(current.config.hidden_units) / sum(original_units),
            row_sparsity=1.0 - rows / max(original_rows, 1),
            sparsity=1.0 - count_params(current) / original_params,
            params=count_params(current),
            bytes=measure_bytes(current, current_encoder),
            valid_auc=metrics.auc,
            valid_logloss=metrics.logloss,
            hidden_units=current.config.hidden_units,
            embedding_dim=current.config.embedding_dim,
            vocabulary_rows=rows,
        )

    start = replace(record(0, model, encoder, valid), stage="start")
    result = PruneResult(
        model=model, encoder=encoder, steps=[start], snapshots=[(model, encoder)]
    )
    floor = start.valid_auc - config.max_auc_drop
    current, current_encoder = model, encoder

    def accept(entry: StepRecord) -> None:
        result.steps.append(entry)
        result.snapshots.append((current, current_encoder))
        result.model, result.encoder = current, current_encoder
        result.chosen_step = entry.step

    step = 0
    if config.cutoff_share > 0:
        frequency = embedding_row_frequency(model, torch.from_numpy(train.sparse_ids))
        cutoff_floor = start.valid_auc - config.cutoff_share * config.max_auc_drop
        min_count, result.cutoff = choose_cutoff(model, frequency, valid, cutoff_floor)
        if min_count:
            keep = frequency_keep(model, frequency, min_count)
            current = thin_embedding_rows(model, keep)
            current_encoder = encoder.keep_rows(keep)
            train, valid = remap_ids(train, keep), remap_ids(valid, keep)
            step = 1
            accept(
                replace(
                    record(step, current, current_encoder, valid),
                    stage="cut-off",
                    min_count=min_count,
                )
            )
            logger.info(
                "cut-off: values seen fewer than %d times folded into oov, "
                "%d rows left",
                min_count,
                result.steps[-1].vocabulary_rows,
            )

    for neurons, rows, dims in _targets(config):
        step += 1
        candidate = prune_neurons(
            current, original_units, neurons, config.norm, config.neuron_threshold
        )
        candidate = prune_dims(candidate, original_dim, dims, config.norm)
        frequency = None
        if config.row_criterion != "norm":
            frequency = embedding_row_frequency(
                candidate, torch.from_numpy(train.sparse_ids)
            )
        candidate, keep = prune_rows(
            candidate,
            original_rows,
            rows,
            config.norm,
            config.row_threshold,
            frequency,
            weighted=config.row_criterion == "impact",
        )
        candidate_encoder = current_encoder.keep_rows(keep)
        step_train, step_valid = remap_ids(train, keep), remap_ids(valid, keep)
        fine_tune_or_keep(candidate, step_train, step_valid, fine_tune, progress)

        entry = record(step, candidate, candidate_encoder, step_valid)
        logger.info(
            "step %d sparsity %.3f params %d bytes %d valid_auc %.4f",
            step,
            entry.sparsity,
            entry.params,
            entry.bytes,
            entry.valid_auc,
        )
        if math.isnan(entry.valid_auc) or entry.valid_auc < floor:
            result.steps.append(replace(entry, rolled_back=True))
            logger.info(
                "step %d rolled back: valid AUC %.4f is below the floor %.4f",
                step,
                entry.valid_auc,
                floor,
            )
            break
        current, current_encoder = candidate, candidate_encoder
        train, valid = step_train, step_valid
        accept(entry)
    return result


def fine_tune_config(train_config: TrainConfig, config: PruneConfig) -> TrainConfig:
    """Training settings for fine-tuning: fewer epochs, scaled learning rates."""
    return replace(
        train_config,
        epochs=config.fine_tune_epochs,
        learning_rate=train_config.learning_rate * config.fine_tune_lr_scale,
        embedding_learning_rate=(
            train_config.embedding_learning_rate * config.fine_tune_lr_scale
        ),
    )


def fine_tune_or_keep(
    model: WideDeep,
    train: EncodedBatch,
    valid: EncodedBatch,
    config: TrainConfig,
    progress: bool,
) -> float:
    """Fine-tune ``model`` in place, unless that lowers its validation AUC.

    Training more epochs on the rows a model has already fitted can overfit
    it; then the pruned weights are kept as they were.

    Returns:
        The validation AUC of the weights kept.
    """
    before = evaluate(valid.labels, predict(model, valid)).auc
    pruned = {k: v.clone() for k, v in model.state_dict().items()}
    # fit leaves the best weights it evaluated, so its best AUC is theirs
    after = fit(model, train, valid, config, progress=progress).best_valid.auc
    if before > after or (math.isnan(after) and not math.isnan(before)):
        logger.info(
            "fine-tuning lowered valid AUC %.4f -> %.4f; pruned weights kept",
            before,
            after,
        )
        model.load_state_dict(pruned)
        return before
    return after
