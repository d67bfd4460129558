"""Training loop: BCE on logits, SparseAdam for embeddings, Adam elsewhere.

Validation runs over the whole validation set; training stops early when the
validation AUC has not improved for ``patience`` evaluations, and the best
weights are restored. An undefined AUC (``nan``) never counts as a best.
"""

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ctr.config import TrainConfig
from ctr.metrics import Metrics, evaluate
from ctr.wide_deep import WideDeep
from data.encoder import EncodedBatch

logger = logging.getLogger(__name__)


# (logits, row indices) -> {"loss": total, **named terms}
LossTerms = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


class TrainingError(RuntimeError):
    """Training cannot go on: the loss diverged or validation is undefined."""


@dataclass
class TrainResult:
    """What :func:`fit` did; ``model`` holds the best weights found."""

    model: WideDeep
    best_valid: Metrics
    best_evaluation: int
    history: list[dict] = field(default_factory=list)
    samples_per_s: float = math.nan
    epochs_run: int = 0


def tensors(batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sparse_ids, dense)`` as torch tensors, without copying."""
    return torch.from_numpy(batch.sparse_ids), torch.from_numpy(batch.dense)


@torch.inference_mode()
def predict(
    model: nn.Module, batch: EncodedBatch, batch_size: int = 8192
) -> np.ndarray:
    """Click probabilities, ``(n,)`` float64, in row order."""
    was_training = model.training
    model.eval()
    sparse_ids, dense = tensors(batch)
    parts = [
        torch.sigmoid(model(sparse_ids[i : i + batch_size], dense[i : i + batch_size]))
        for i in range(0, len(batch), batch_size)
    ]
    model.train(was_training)
    if not parts:
        return np.empty(0)
    return torch.cat(parts).double().numpy()


def _optimisers(model: WideDeep, config: TrainConfig) -> list[torch.optim.Optimizer]:
    return [
        torch.optim.SparseAdam(
            model.embedding_parameters(), lr=config.embedding_learning_rate
        ),
        torch.optim.Adam(model.dense_parameters(), lr=config.learning_rate),
    ]


def fit(
    model: WideDeep,
    train: EncodedBatch,
    valid: EncodedBatch,
    config: TrainConfig,
    progress: bool = False,
    loss_terms: LossTerms | None = None,
) -> TrainResult:
    """Train ``model`` in place and return it with its best validation weights.

    Args:
        train, valid: encoded rows with labels.
        config: batch size, learning rates, epochs, early stopping.
        progress: show a progress bar (for command-line use).
        loss_terms: the training loss; given a batch's logits
            ``(batch_size,)`` and its row indices into ``train``, returns
            ``{"loss": total, **other_terms}``. Every other term is averaged
            over the epoch and logged in ``history``. Default: BCE against
            the labels.
    """
    if train.labels is None or valid.labels is None:
        raise ValueError("train and valid: labels are required to fit a model")
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"train/valid: need rows, got {len(train)} / {len(valid)}")

    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimisers = _optimisers(model, config)
    sparse_ids, dense = tensors(train)
    labels = torch.from_numpy(train.labels)
    if loss_terms is None:
        bce = nn.BCEWithLogitsLoss()

        def loss_terms(logits: torch.Tensor, rows: torch.Tensor) -> dict:
            return {"loss": bce(logits, labels[rows])}

    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    eval_at = set(
        np.linspace(0, steps_per_epoch, config.evals_per_epoch + 1)[1:]
        .round()
        .astype(int)
    )

    best_auc, best_state, best_metrics, best_eval = -math.inf, None, None, 0
    history: list[dict] = []
    stale, train_seconds, rows_seen, evaluation = 0, 0.0, 0, 0
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(train), generator=generator)
        model.train()
        started = time.perf_counter()
        running = 0.0
        sums: dict[str, float] = {}
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch}",
            # None hides the bar when stderr is not a terminal (logs, CI)
            disable=None if progress else True,
            leave=False,
            unit="batch",
        )
        stop = False
        for step in bar:
            rows = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch_ids = sparse_ids[rows]
            logits = model(batch_ids, dense[rows])
            terms = loss_terms(logits, rows)
            loss = terms["loss"]
            if config.embedding_l2 > 0:
                looked_up = model.embedding(batch_ids + model.offsets)
                loss = loss + config.embedding_l2 * looked_up.pow(2).sum() / len(rows)
            for optimiser in optimisers:
                optimiser.zero_grad()
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"training diverged: loss is {loss.item()} at epoch {epoch} step "
                    f"{step + 1}; lower train.learning_rate or "
                    "train.embedding_learning_rate"
                )
            loss.backward()
            for optimiser in optimisers:
                optimiser.step()
            running += loss.item()
            for name, value in terms.items():
                if name != "loss":
                    sums[name] = sums.get(name, 0.0) + value.item()
            rows_seen += len(rows)
            bar.set_postfix(loss=f"{running / (step + 1):.4f}")

            if step + 1 not in eval_at:
                continue
            train_seconds += time.perf_counter() - started
            evaluation += 1
            metrics = evaluate(valid.labels, predict(model, valid))
            record = {
                "evaluation": evaluation,
                "epoch": epoch,
                "step": step + 1,
                "train_loss": running / (step + 1),
                **{name: total / (step + 1) for name, total in sums.items()},
                "rows_per_s": rows_seen / max(train_seconds, 1e-9),
                **{f"valid_{k}": v for k, v in metrics.as_dict().items()},
            }
            history.append(record)
            logger.info(
                "epoch %d step %d rows/s %.0f loss %.4f valid_auc %.4f",
                epoch,
                step + 1,
                record["rows_per_s"],
                record["train_loss"],
                metrics.auc,
            )
            if not math.isnan(metrics.auc) and metrics.auc > best_auc:
                best_auc, best_metrics, best_eval = metrics.auc, metrics, evaluation
                best_state = copy.deepcopy(model.state_dict())
                stale = 0
            else:
                stale += 1
            if stale >= config.patience:
                stop = True
                break
            model.train()
            started = time.perf_counter()
        bar.close()
        if stop:
            logger.info("early stop: no better valid AUC for %d evaluations", stale)
            break

    if best_state is None:
        raise TrainingError(
            "validation AUC was undefined at every evaluation: the validation "
            f"split ({len(valid)} rows, {int(valid.labels.sum())} clicks) needs both "
            "clicks and non-clicks; use more rows or another --split"
        )
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        best_valid=best_metrics,
        best_evaluation=best_eval,
        history=history,
        samples_per_s=rows_seen / max(train_seconds, 1e-9),
        epochs_run=epoch,
    )
