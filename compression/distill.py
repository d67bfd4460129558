"""Knowledge distillation of a trained wide & deep teacher into a smaller student.

The student learns from the labels and from the teacher's softened click
probabilities, after Hinton et al. (2015), "Distilling the Knowledge in a
Neural Network", with a sigmoid in place of the softmax as a CTR model has one
logit. Both networks read the same encoded rows, so they share one encoder.
"""

import logging
import math
import numbers
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ctr.config import ModelConfig, TrainConfig
from ctr.metrics import Metrics, evaluate
from ctr.train import fit, predict, tensors
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


def smaller(config: ModelConfig, shrink: float = 0.5) -> ModelConfig:
    """A student's shape: the teacher's embedding width and hidden layers times
    ``shrink``, rounded, at least 2 dimensions and 4 units a layer."""
    if isinstance(shrink, bool) or not 0.0 < shrink <= 1.0:
        raise ValueError(f"shrink: expected a share in (0, 1], got {shrink}")
    return ModelConfig(
        embedding_dim=max(2, round(config.embedding_dim * shrink)),
        hidden_units=tuple(max(4, round(u * shrink)) for u in config.hidden_units),
        dropout=config.dropout,
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

    Training is ``ctr.train.fit`` with the distillation loss in place of
    plain BCE, so ``alpha=1`` gives exactly the student that ``fit`` gives.
    The teacher is never updated: its logits on the training rows are
    computed once, in eval mode, before the first step.

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

    labels = torch.from_numpy(train.labels)

    def terms(logits: torch.Tensor, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        loss, hard, soft = distillation_loss(
            logits, labels[rows], soft_targets[rows], config
        )
        return {"loss": loss, "hard_loss": hard, "soft_loss": soft}

    result = fit(student, train, valid, train_config, progress, loss_terms=terms)
    return DistillResult(
        model=result.model,
        best_valid=result.best_valid,
        best_evaluation=result.best_evaluation,
        teacher_valid=teacher_valid,
        history=result.history,
        samples_per_s=result.samples_per_s,
        epochs_run=result.epochs_run,
    )


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
    student_inputs = (student.num_embeddings, student.num_dense)
    if student_inputs != (teacher.num_embeddings, teacher.num_dense):
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
