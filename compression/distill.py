"""Knowledge distillation of a trained wide & deep teacher into a smaller student.

The student learns from the labels and from the teacher's softened click
probabilities, after Hinton et al. (2015), "Distilling the Knowledge in a
Neural Network", with a sigmoid in place of the softmax as a CTR model has one
logit. Both networks read the same encoded rows, so they share one encoder.
"""

import copy
import logging
import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ctr.config import TrainConfig
from ctr.metrics import Metrics, evaluate
from ctr.train import TrainingError, _optimisers, predict, tensors
from ctr.wide_deep import WideDeep
from data.encoder import EncodedBatch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """How much the student listens to the teacher.

    Attributes:
        alpha: weight of the label term, in [0, 1]; ``1 - alpha`` weighs the
            teacher term. 1 is label-only training, 0 teacher-only.
        temperature: the teacher's and student's logits are divided by it
            before the sigmoid; above 1 softens the targets. The teacher term
            is multiplied by ``temperature ** 2`` so its gradient keeps its
            size as the temperature changes (Hinton et al., section 2).
    """

    alpha: float = 0.5
    temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("alpha", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name}: expected a number, got {value!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha: expected a weight in [0, 1], got {self.alpha}")
        if not 0.0 < self.temperature < math.inf:
            raise ValueError(
                f"temperature: expected a finite number > 0, got {self.temperature}"
            )


@dataclass
class DistillResult:
    """What :func:`distill` did; ``model`` holds the best student weights found.

    ``history`` has one entry per evaluation with ``train_loss`` (the weighted
    total), ``hard_loss`` (BCE against the labels) and ``soft_loss`` (the
    teacher term, ``temperature ** 2`` included), each averaged over the epoch
    so far, then ``rows_per_s`` and the ``valid_*`` metrics.
    """

    model: WideDeep
    best_valid: Metrics
    best_evaluation: int
    teacher_valid: Metrics
    history: list[dict] = field(default_factory=list)
    samples_per_s: float = math.nan
    epochs_run: int = 0


@torch.no_grad()
def teacher_logits(
    teacher: torch.nn.Module, batch: EncodedBatch, batch_size: int = 8192
) -> torch.Tensor:
    """The teacher's logits in eval mode, ``(n,)`` float32, in row order."""
    was_training = teacher.training
    teacher.eval()
    sparse_ids, dense = tensors(batch)
    parts = [
        teacher(sparse_ids[i : i + batch_size], dense[i : i + batch_size])
        for i in range(0, len(batch), batch_size)
    ]
    teacher.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0)


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    soft_targets: torch.Tensor,
    config: DistillConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, hard, soft)`` with ``loss = alpha * hard + (1 - alpha) * soft``.

    ``hard`` is the BCE of the student's logits against the labels; ``soft``
    is ``T**2`` times the BCE of ``sigmoid(student_logits / T)`` against the
    teacher's ``sigmoid(teacher_logits / T)``. The soft BCE never reaches 0:
    its floor is the entropy of the soft targets.

    Args:
        student_logits: ``(batch_size,)`` float32, with gradients.
        labels: ``(batch_size,)`` float32 in {0, 1}.
        soft_targets: ``(batch_size,)`` float32, ``sigmoid(teacher_logits / T)``.
    """
    temperature = config.temperature
    hard = F.binary_cross_entropy_with_logits(student_logits, labels)
    soft = F.binary_cross_entropy_with_logits(
        student_logits / temperature, soft_targets
    ) * (temperature**2)
    return config.alpha * hard + (1.0 - config.alpha) * soft, hard, soft


class _EarlyStopping:
    """Keeps the best weights by validation AUC; ``nan`` never counts."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_auc = -math.inf
        self.best_state: dict | None = None
        self.best_metrics: Metrics | None = None
        self.best_evaluation = 0
        self.stale = 0

    def update(self, model: WideDeep, metrics: Metrics, evaluation: int) -> bool:
        """Record one evaluation; True when training should stop."""
        if not math.isnan(metrics.auc) and metrics.auc > self.best_auc:
            self.best_auc, self.best_metrics = metrics.auc, metrics
            self.best_evaluation = evaluation
            self.best_state = copy.deepcopy(model.state_dict())
            self.stale = 0
        else:
            self.stale += 1
        return self.stale >= self.patience


def distill(
    student: WideDeep,
    teacher: WideDeep,
    train: EncodedBatch,
    valid: EncodedBatch,
    config: DistillConfig,
    train_config: TrainConfig,
    progress: bool = False,
) -> DistillResult:
    """Train ``student`` in place on labels and teacher; keep its best valid AUC.

    Batching, optimisers (SparseAdam for the tables, Adam elsewhere), the
    embedding L2 penalty, evaluation points and early stopping are those of
    ``ctr.train.fit``, seeded the same way, so ``alpha=1`` gives the student
    ``fit`` would give. The teacher is never updated: its logits on the
    training rows are computed once, in eval mode, before the first step.

    Args:
        student, teacher: wide & deep networks over the same encoder (equal
            ``num_embeddings`` and ``num_dense``); their widths may differ.
        train, valid: encoded rows with labels.
        config: label weight and temperature.
        train_config: batch size, learning rates, epochs, early stopping, seed.
        progress: show a progress bar (for command-line use).
    """
    _check_inputs(student, teacher, train, valid, config, train_config)
    teacher_valid = evaluate(valid.labels, predict(teacher, valid))
    soft_targets = torch.sigmoid(teacher_logits(teacher, train) / config.temperature)
    logger.info(
        "distilling: alpha %.3f temperature %.3f teacher valid_auc %.4f",
        config.alpha,
        config.temperature,
        teacher_valid.auc,
    )

    # Same order of seeding and draws as ctr.train.fit, for alpha = 1 to match.
    generator = torch.Generator().manual_seed(train_config.seed)
    torch.manual_seed(train_config.seed)
    optimisers = _optimisers(student, train_config)
    inputs = (*tensors(train), torch.from_numpy(train.labels), soft_targets)
    steps_per_epoch = math.ceil(len(train) / train_config.batch_size)
    eval_at = set(
        np.linspace(0, steps_per_epoch, train_config.evals_per_epoch + 1)[1:]
        .round()
        .astype(int)
    )

    stopping = _EarlyStopping(train_config.patience)
    history: list[dict] = []
    clock = {"seconds": 0.0, "rows": 0}
    epoch = 0
    for epoch in range(1, train_config.epochs + 1):
        order = torch.randperm(len(train), generator=generator)
        stop = _epoch(
            student,
            optimisers,
            inputs,
            order,
            valid,
            (config, train_config),
            (epoch, eval_at, progress),
            (stopping, history, clock),
        )
        if stop:
            logger.info(
                "early stop: no better valid AUC for %d evaluations", stopping.stale
            )
            break

    return _finish(student, valid, stopping, teacher_valid, history, clock, epoch)


def _check_inputs(
    student: WideDeep,
    teacher: WideDeep,
    train: EncodedBatch,
    valid: EncodedBatch,
    config: DistillConfig,
    train_config: TrainConfig,
) -> None:
    for name, model in (("student", student), ("teacher", teacher)):
        if not isinstance(model, WideDeep):
            raise TypeError(f"{name}: expected a WideDeep, got {type(model).__name__}")
    if not isinstance(config, DistillConfig):
        raise TypeError(f"config: expected a DistillConfig, got {config!r}")
    if not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config: expected a TrainConfig, got {train_config!r}")
    if student is teacher:
        raise ValueError("student and teacher: got the same model; pass a new student")
    if (student.num_embeddings, student.num_dense) != (
        teacher.num_embeddings,
        teacher.num_dense,
    ):
        raise ValueError(
            "student and teacher: inputs differ (num_embeddings "
            f"{sum(student.num_embeddings)} vs {sum(teacher.num_embeddings)} rows, "
            f"num_dense {student.num_dense} vs {teacher.num_dense}); build the "
            "student with the teacher's encoder.num_embeddings"
        )
    if train.labels is None or valid.labels is None:
        raise ValueError("train and valid: labels are required to distill a model")
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"train/valid: need rows, got {len(train)} / {len(valid)}")


def _epoch(student, optimisers, inputs, order, valid, configs, where, state) -> bool:
    """One pass over the shuffled rows; True when early stopping says stop."""
    config, train_config = configs
    epoch, eval_at, progress = where
    stopping, history, clock = state
    sparse_ids, dense, labels, soft_targets = inputs
    batch_size = train_config.batch_size
    sums = {"train_loss": 0.0, "hard_loss": 0.0, "soft_loss": 0.0}

    student.train()
    started = time.perf_counter()
    bar = tqdm(
        range(math.ceil(len(order) / batch_size)),
        desc=f"epoch {epoch}",
        # None hides the bar when stderr is not a terminal (logs, CI)
        disable=None if progress else True,
        leave=False,
        unit="batch",
    )
    for step in bar:
        rows = order[step * batch_size : (step + 1) * batch_size]
        terms = _step(
            student,
            optimisers,
            (sparse_ids[rows], dense[rows], labels[rows], soft_targets[rows]),
            configs,
            f"epoch {epoch} step {step + 1}",
        )
        for name, value in zip(sums, terms, strict=True):
            sums[name] += value
        clock["rows"] += len(rows)
        bar.set_postfix(loss=f"{sums['train_loss'] / (step + 1):.4f}")

        if step + 1 not in eval_at:
            continue
        clock["seconds"] += time.perf_counter() - started
        record = _evaluation(student, valid, sums, (epoch, step + 1), clock, history)
        if stopping.update(student, record.pop("metrics"), record["evaluation"]):
            bar.close()
            return True
        student.train()
        started = time.perf_counter()
    bar.close()
    return False


def _step(student, optimisers, batch, configs, where: str) -> tuple[float, ...]:
    """One optimiser step; returns the ``(total, hard, soft)`` loss values."""
    config, train_config = configs
    batch_ids, batch_dense, batch_labels, batch_targets = batch
    logits = student(batch_ids, batch_dense)  # (batch_size,)
    loss, hard, soft = distillation_loss(logits, batch_labels, batch_targets, config)
    if train_config.embedding_l2 > 0:
        looked_up = student.embedding(batch_ids + student.offsets)
        penalty = looked_up.pow(2).sum() / len(batch_ids)
        loss = loss + train_config.embedding_l2 * penalty

    for optimiser in optimisers:
        optimiser.zero_grad()
    if not torch.isfinite(loss):
        raise TrainingError(
            f"distillation diverged: loss is {loss.item()} at {where} (hard "
            f"{hard.item()}, soft {soft.item()}); lower train.learning_rate or "
            "train.embedding_learning_rate"
        )
    loss.backward()
    for optimiser in optimisers:
        optimiser.step()
    return loss.item(), hard.item(), soft.item()


def _evaluation(student, valid, sums, position, clock, history) -> dict:
    """Validate, log one line and append the history entry (metrics included)."""
    epoch, step = position
    metrics = evaluate(valid.labels, predict(student, valid))
    record = {
        "evaluation": len(history) + 1,
        "epoch": epoch,
        "step": step,
        **{name: total / step for name, total in sums.items()},
        "rows_per_s": clock["rows"] / max(clock["seconds"], 1e-9),
        **{f"valid_{k}": v for k, v in metrics.as_dict().items()},
    }
    history.append(record)
    logger.info(
        "epoch %d step %d rows/s %.0f loss %.4f hard %.4f soft %.4f valid_auc %.4f",
        epoch,
        step,
        record["rows_per_s"],
        record["train_loss"],
        record["hard_loss"],
        record["soft_loss"],
        metrics.auc,
    )
    return {**record, "metrics": metrics}


def _finish(student, valid, stopping, teacher_valid, history, clock, epochs_run):
    """Restore the best weights into the student and wrap up the result."""
    if stopping.best_state is None:
        raise TrainingError(
            "validation AUC was undefined at every evaluation: the validation "
            f"split ({len(valid)} rows, {int(valid.labels.sum())} clicks) needs both "
            "clicks and non-clicks; use more rows or another split"
        )
    student.load_state_dict(stopping.best_state)
    student.eval()
    return DistillResult(
        model=student,
        best_valid=stopping.best_metrics,
        best_evaluation=stopping.best_evaluation,
        teacher_valid=teacher_valid,
        history=history,
        samples_per_s=clock["rows"] / max(clock["seconds"], 1e-9),
        epochs_run=epochs_run,
    )
