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


class _Distillation:
    """One distillation run: the student, its optimisers and what it has logged.

    Batching, optimisers, the embedding L2 penalty, evaluation points and early
    stopping follow ``ctr.train.fit`` step for step; only the loss differs.
    """

    def __init__(
        self,
        student: WideDeep,
        train: EncodedBatch,
        soft_targets: torch.Tensor,
        valid: EncodedBatch,
        configs: tuple[DistillConfig, TrainConfig],
    ) -> None:
        self.student = student
        self.valid = valid
        self.config, self.train_config = configs
        # Same order of seeding and draws as ctr.train.fit, for alpha = 1 to match.
        self.generator = torch.Generator().manual_seed(self.train_config.seed)
        torch.manual_seed(self.train_config.seed)
        self.optimisers = _optimisers(student, self.train_config)
        sparse_ids, dense = tensors(train)
        labels = torch.from_numpy(train.labels)
        self.inputs = (sparse_ids, dense, labels, soft_targets)
        self.steps_per_epoch = math.ceil(len(train) / self.train_config.batch_size)
        evals = self.train_config.evals_per_epoch
        points = np.linspace(0, self.steps_per_epoch, evals + 1)[1:]
        self.eval_at = set(points.round().astype(int))

        self.history: list[dict] = []
        self.best_auc = -math.inf
        self.best_state: dict | None = None
        self.best_metrics: Metrics | None = None
        self.best_evaluation = 0
        self.stale = 0
        self.train_seconds = 0.0
        self.rows_seen = 0

    def run_epoch(self, epoch: int, progress: bool) -> bool:
        """One pass over the shuffled rows; True when early stopping says stop."""
        order = torch.randperm(len(self.inputs[0]), generator=self.generator)
        batch_size = self.train_config.batch_size
        sums = {"train_loss": 0.0, "hard_loss": 0.0, "soft_loss": 0.0}
        self.student.train()
        started = time.perf_counter()
        bar = tqdm(
            range(self.steps_per_epoch),
            desc=f"epoch {epoch}",
            # None hides the bar when stderr is not a terminal (logs, CI)
            disable=None if progress else True,
            leave=False,
            unit="batch",
        )
        for step in bar:
            rows = order[step * batch_size : (step + 1) * batch_size]
            terms = self._step(rows, f"epoch {epoch} step {step + 1}")
            for name, value in zip(sums, terms, strict=True):
                sums[name] += value
            self.rows_seen += len(rows)
            bar.set_postfix(loss=f"{sums['train_loss'] / (step + 1):.4f}")

            if step + 1 not in self.eval_at:
                continue
            self.train_seconds += time.perf_counter() - started
            if self._evaluate(epoch, step + 1, sums):
                bar.close()
                return True
            self.student.train()
            started = time.perf_counter()
        bar.close()
        return False

    def _step(self, rows: torch.Tensor, where: str) -> tuple[float, float, float]:
        """One optimiser step on ``rows``; the ``(total, hard, soft)`` losses."""
        sparse_ids, dense, labels, soft_targets = (x[rows] for x in self.inputs)
        logits = self.student(sparse_ids, dense)  # (batch_size,)
        loss, hard, soft = distillation_loss(logits, labels, soft_targets, self.config)
        if self.train_config.embedding_l2 > 0:
            looked_up = self.student.embedding(sparse_ids + self.student.offsets)
            penalty = looked_up.pow(2).sum() / len(rows)
            loss = loss + self.train_config.embedding_l2 * penalty

        for optimiser in self.optimisers:
            optimiser.zero_grad()
        if not torch.isfinite(loss):
            raise TrainingError(
                f"distillation diverged: loss is {loss.item()} at {where} (hard "
                f"{hard.item()}, soft {soft.item()}); lower train.learning_rate "
                "or train.embedding_learning_rate"
            )
        loss.backward()
        for optimiser in self.optimisers:
            optimiser.step()
        return loss.item(), hard.item(), soft.item()

    def _evaluate(self, epoch: int, step: int, sums: dict[str, float]) -> bool:
        """Validate, log, keep the best weights; True when training should stop."""
        metrics = evaluate(self.valid.labels, predict(self.student, self.valid))
        record = {
            "evaluation": len(self.history) + 1,
            "epoch": epoch,
            "step": step,
            **{name: total / step for name, total in sums.items()},
            "rows_per_s": self.rows_seen / max(self.train_seconds, 1e-9),
            **{f"valid_{k}": v for k, v in metrics.as_dict().items()},
        }
        self.history.append(record)
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

        if not math.isnan(metrics.auc) and metrics.auc > self.best_auc:
            self.best_auc, self.best_metrics = metrics.auc, metrics
            self.best_evaluation = record["evaluation"]
            self.best_state = copy.deepcopy(self.student.state_dict())
            self.stale = 0
        else:
            self.stale += 1
        return self.stale >= self.train_config.patience

    def restore_best(self) -> None:
        """Load the best weights into the student, which is left in eval mode."""
        if self.best_state is None:
            raise TrainingError(
                "validation AUC was undefined at every evaluation: the validation "
                f"split ({len(self.valid)} rows, {int(self.valid.labels.sum())} "
                "clicks) needs both clicks and non-clicks; use more rows or "
                "another split"
            )
        self.student.load_state_dict(self.best_state)
        self.student.eval()


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
    that ``fit`` would give. The teacher is never updated: its logits on the
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

    run = _Distillation(student, train, soft_targets, valid, (config, train_config))
    epoch = 0
    for epoch in range(1, train_config.epochs + 1):
        if run.run_epoch(epoch, progress):
            logger.info("early stop: no better valid AUC for %d evaluations", run.stale)
            break
    run.restore_best()
    return DistillResult(
        model=student,
        best_valid=run.best_metrics,
        best_evaluation=run.best_evaluation,
        teacher_valid=teacher_valid,
        history=run.history,
        samples_per_s=run.rows_seen / max(run.train_seconds, 1e-9),
        epochs_run=epoch,
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
