"""Training loop: BCE on logits, lazy Adam for embeddings, Adam elsewhere.

Validation runs over the whole validation set; training stops early when the
validation AUC has not improved for ``patience`` evaluations, and the best
weights are restored. An undefined AUC (``nan``) never counts as a best.

Rows come from memory or from a memory-mapped cache (see :mod:`ctr.batches`).
Under ``torchrun`` every process trains on its own rows and gradients are
averaged by ``DistributedDataParallel`` (see :mod:`ctr.distributed`). With a
checkpoint file, the whole training state is saved at every evaluation (and
every ``checkpoint_every`` steps) and ``resume=True`` continues from it with
the same result as an uninterrupted run.
"""

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ctr.batches import (
    Batch,
    Rows,
    Shuffle,
    epoch_batches,
    labels_of,
    read_rows,
    steps_per_epoch,
)
from ctr.checkpoint import (
    CheckpointError,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from ctr.config import TrainConfig
from ctr.distributed import (
    World,
    agree,
    average_sparse_gradients,
    data_parallel,
    gather_rows,
)
from ctr.metrics import Metrics, evaluate
from ctr.row_adam import RowAdam
from ctr.training_error import TrainingError
from ctr.wide_deep import WideDeep
from data.encoder import EncodedBatch

logger = logging.getLogger(__name__)


# the tables whose gradients are sparse, averaged over ranks outside DDP
_SPARSE_TABLES = ["embedding.weight", "wide_sparse.weight"]

# (logits, row indices) -> {"loss": total, **named terms}
LossTerms = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class TrainResult:
    """What :func:`fit` did; ``model`` holds the best weights found."""

    model: WideDeep
    best_valid: Metrics
    best_evaluation: int
    history: list[dict] = field(default_factory=list)
    samples_per_s: float = math.nan
    epochs_run: int = 0


@dataclass(frozen=True)
class Checkpointing:
    """Where training state is saved, and whether to continue from it.

    ``data`` names the training data (e.g. a cache's encoder fingerprint and
    split sizes); a checkpoint only resumes on the same.
    """

    path: Path
    resume: bool = False
    data: str = ""


def tensors(batch: EncodedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sparse_ids, dense)`` as torch tensors, without copying."""
    return torch.from_numpy(batch.sparse_ids), torch.from_numpy(batch.dense)


@torch.inference_mode()
def predict(
    model: nn.Module, batch: "EncodedBatch | Rows", batch_size: int = 8192
) -> np.ndarray:
    """Click probabilities, ``(n,)`` float64, in row order.

    ``batch`` is an in-memory batch or a cache split, read ``batch_size`` rows
    at a time.
    """
    was_training = model.training
    model.eval()
    parts = []
    for start in range(0, len(batch), batch_size):
        part = read_rows(batch, start, min(start + batch_size, len(batch)))
        sparse_ids = torch.from_numpy(np.ascontiguousarray(part.sparse_ids, "int64"))
        dense = torch.from_numpy(np.ascontiguousarray(part.dense, "float32"))
        parts.append(torch.sigmoid(model(sparse_ids, dense)))
    model.train(was_training)
    if not parts:
        return np.empty(0)
    return torch.cat(parts).double().numpy()


def fit(
    model: WideDeep,
    train: "EncodedBatch | Rows",
    valid: "EncodedBatch | Rows",
    config: TrainConfig,
    progress: bool = False,
    loss_terms: LossTerms | None = None,
    world: World | None = None,
    checkpointing: Checkpointing | None = None,
) -> TrainResult:
    """Train ``model`` in place and return it with its best validation weights.

    Args:
        train, valid: encoded rows with labels, in memory or from a cache.
        config: batch size, learning rates, epochs, early stopping.
        progress: show a progress bar (for command-line use).
        loss_terms: the training loss; given a batch's logits
            ``(batch_size,)`` and its row indices into ``train``, returns
            ``{"loss": total, **other_terms}``. Every other term is averaged
            over the epoch and logged in ``history``. Default: BCE against
            the labels.
        world: this process among ``torchrun``'s; default one process.
        checkpointing: a file for the training state; with ``resume`` the
            run continues from it.
    """
    trainer = _Trainer(model, train, valid, config, loss_terms, world or World())
    if checkpointing is not None:
        trainer.checkpointing = checkpointing
        if checkpointing.resume:
            trainer.restore(load_checkpoint(checkpointing.path))
    return trainer.run(progress)


class _Trainer:
    """The state of one training run, so it can be saved and resumed whole."""

    def __init__(
        self,
        model: WideDeep,
        train,
        valid,
        config: TrainConfig,
        loss_terms: LossTerms | None,
        world: World,
    ) -> None:
        _check_rows(train, valid)
        self.model, self.train, self.valid = model, train, valid
        self.config, self.world = config, world
        self.checkpointing: Checkpointing | None = None
        self.shuffle = Shuffle(
            config.batch_size,
            config.block_rows,
            config.shuffle_window,
            world.rank,
            world.size,
        )
        self.steps = steps_per_epoch(train, self.shuffle)
        if self.steps == 0:
            raise ValueError(
                f"train: {len(train)} rows make no whole step of "
                f"{config.batch_size} rows over {world.size} processes; use "
                "more rows or a smaller train.batch_size or train.block_rows"
            )
        self.eval_at = set(
            np.linspace(0, self.steps, config.evals_per_epoch + 1)[1:]
            .round()
            .astype(int)
        )
        self.valid_part = _rank_part(len(valid), world)
        self.valid_labels = gather_rows(
            labels_of(_Slice(valid, *self.valid_part)), world
        )

        self.generator = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        self.optimisers = [
            RowAdam(model.embedding_parameters(), lr=config.embedding_learning_rate),
            torch.optim.Adam(model.dense_parameters(), lr=config.learning_rate),
        ]
        self.forward = data_parallel(model, _SPARSE_TABLES, world)
        self.loss_terms = loss_terms

        # progress, saved and restored as a whole by checkpoints
        self.epoch, self.step = 1, 0
        self.epoch_generator_state = self.generator.get_state()
        self.running, self.sums = 0.0, {}
        self.best_auc, self.best_state, self.best_metrics = -math.inf, None, None
        self.best_eval, self.stale, self.evaluation = 0, 0, 0
        self.history: list[dict] = []
        self.train_seconds, self.rows_seen = 0.0, 0
        self.finished = False

    def run(self, progress: bool) -> TrainResult:
        while not self.finished and self.epoch <= self.config.epochs:
            self._epoch(progress)
        if self.best_state is None:
            raise TrainingError(
                "validation AUC was undefined at every evaluation: the validation "
                f"split ({len(self.valid)} rows, {int(self.valid_labels.sum())} "
                "clicks) needs both clicks and non-clicks; use more rows or "
                "another --split"
            )
        self.model.load_state_dict(self.best_state)
        self.model.eval()
        return TrainResult(
            model=self.model,
            best_valid=self.best_metrics,
            best_evaluation=self.best_eval,
            history=self.history,
            samples_per_s=self.rows_seen / max(self.train_seconds, 1e-9),
            epochs_run=min(self.epoch, self.config.epochs),
        )

    def _epoch(self, progress: bool) -> None:
        if self.step == 0:
            self.epoch_generator_state = self.generator.get_state()
            self.running, self.sums = 0.0, {}
        else:  # resumed mid-epoch: replay the epoch's draws from its start
            self.generator.set_state(self.epoch_generator_state)
        batches = epoch_batches(self.train, self.shuffle, self.generator, self.step)
        bar = tqdm(
            total=self.steps,
            initial=self.step,
            desc=f"epoch {self.epoch}",
            # None hides the bar when stderr is not a terminal (logs, CI)
            disable=None if (progress and self.world.is_main) else True,
            leave=False,
            unit="batch",
        )
        self.model.train()
        started = time.perf_counter()
        for batch in batches:
            self._train_step(batch)
            self.step += 1
            bar.update()
            bar.set_postfix(loss=f"{self.running / self.step:.4f}")
            if self.step in self.eval_at:
                self.train_seconds += time.perf_counter() - started
                self._evaluate()
                self._save()
                if self.finished:
                    break
                self.model.train()
                started = time.perf_counter()
            elif self._checkpoint_due():
                self.train_seconds += time.perf_counter() - started
                self._save()
                started = time.perf_counter()
        bar.close()
        if self.finished:
            logger.info(
                "early stop: no better valid AUC for %d evaluations", self.stale
            )
            return
        self.epoch, self.step = self.epoch + 1, 0

    def _train_step(self, batch: Batch) -> None:
        logits = self.forward(batch.sparse_ids, batch.dense)
        if self.loss_terms is None:
            bce = nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
            terms = {"loss": bce}
        else:
            terms = self.loss_terms(logits, batch.rows)
        loss = terms["loss"]
        if self.config.embedding_l2 > 0:
            looked_up = self.model.embedding(batch.sparse_ids + self.model.offsets)
            loss = loss + self.config.embedding_l2 * looked_up.pow(2).sum() / len(
                batch.rows
            )
        for optimiser in self.optimisers:
            optimiser.zero_grad()
        if agree(not torch.isfinite(loss).item(), self.world):
            raise TrainingError(
                f"training diverged: loss is {loss.item()} at epoch {self.epoch} "
                f"step {self.step + 1}; lower train.learning_rate or "
                "train.embedding_learning_rate"
            )
        loss.backward()
        average_sparse_gradients(self.model.embedding_parameters(), self.world)
        for optimiser in self.optimisers:
            optimiser.step()
        self.running += loss.item()
        for name, value in terms.items():
            if name != "loss":
                self.sums[name] = self.sums.get(name, 0.0) + value.item()
        self.rows_seen += len(batch.rows) * self.world.size

    def _evaluate(self) -> None:
        self.evaluation += 1
        scores = predict(self.model, _Slice(self.valid, *self.valid_part))
        metrics = evaluate(self.valid_labels, gather_rows(scores, self.world))
        record = {
            "evaluation": self.evaluation,
            "epoch": self.epoch,
            "step": self.step,
            "train_loss": self.running / self.step,
            **{name: total / self.step for name, total in self.sums.items()},
            "rows_per_s": self.rows_seen / max(self.train_seconds, 1e-9),
            **{f"valid_{k}": v for k, v in metrics.as_dict().items()},
        }
        self.history.append(record)
        logger.info(
            "epoch %d step %d rows/s %.0f loss %.4f valid_auc %.4f",
            self.epoch,
            self.step,
            record["rows_per_s"],
            record["train_loss"],
            metrics.auc,
        )
        if not math.isnan(metrics.auc) and metrics.auc > self.best_auc:
            self.best_auc, self.best_metrics = metrics.auc, metrics
            self.best_eval = self.evaluation
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.stale = 0
        else:
            self.stale += 1
        if self.stale >= self.config.patience:
            self.finished = True

    def _checkpoint_due(self) -> bool:
        every = self.config.checkpoint_every
        return self.checkpointing is not None and every > 0 and self.step % every == 0

    # -- checkpoints -------------------------------------------------------

    def _save(self) -> None:
        if self.checkpointing is None or not self.world.is_main:
            return
        save_checkpoint(self.checkpointing.path, self.state())

    def state(self) -> dict:
        """Everything needed to continue: weights, optimisers, RNGs, position."""
        return {
            "train_config": asdict(self.config),
            "world_size": self.world.size,
            "data": self.checkpointing.data if self.checkpointing else "",
            "model": self.model.state_dict(),
            "optimisers": [o.state_dict() for o in self.optimisers],
            "torch_rng": torch.get_rng_state(),
            "epoch_generator": self.epoch_generator_state,
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "step": self.step,
            "running": self.running,
            "sums": dict(self.sums),
            "best_auc": self.best_auc,
            "best_state": self.best_state,
            "best_metrics": (
                None if self.best_metrics is None else self.best_metrics.as_dict()
            ),
            "best_eval": self.best_eval,
            "stale": self.stale,
            "evaluation": self.evaluation,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "rows_seen": self.rows_seen,
            "finished": self.finished,
        }

    def restore(self, state: dict) -> None:
        """Continue from :meth:`state`; refuses a checkpoint of another setup."""
        path = self.checkpointing.path if self.checkpointing else "checkpoint"
        saved, current = state.get("train_config") or {}, asdict(self.config)
        if saved != current:
            changed = sorted(
                f"{k} {saved.get(k)!r} -> {current.get(k)!r}"
                for k in set(saved) | set(current)
                if saved.get(k) != current.get(k)
            )
            raise CheckpointError(
                f"{path}: written with other training settings "
                f"({'; '.join(changed)}); resume with the same config and options"
            )
        data = self.checkpointing.data if self.checkpointing else ""
        if state.get("data") != data:
            raise CheckpointError(
                f"{path}: written for other data ({state.get('data')!r}, not "
                f"{data!r}); resume on the cache or file it was trained on"
            )
        if state.get("world_size") != self.world.size:
            raise CheckpointError(
                f"{path}: written by {state.get('world_size')} process(es), resumed "
                f"by {self.world.size}; resume with the same --nproc"
            )
        try:
            self.model.load_state_dict(state["model"])
            for optimiser, saved in zip(
                self.optimisers, state["optimisers"], strict=True
            ):
                optimiser.load_state_dict(saved)
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"{path}: does not fit this model ({err}); was the data or the "
                "model config changed?"
            ) from err
        torch.set_rng_state(state["torch_rng"])
        self.generator.set_state(state["generator"])
        self.epoch_generator_state = state["epoch_generator"]
        self.epoch, self.step = state["epoch"], state["step"]
        self.running, self.sums = state["running"], dict(state["sums"])
        self.best_auc, self.best_state = state["best_auc"], state["best_state"]
        saved_metrics = state["best_metrics"]
        self.best_metrics = None if saved_metrics is None else Metrics(**saved_metrics)
        self.best_eval, self.stale = state["best_eval"], state["stale"]
        self.evaluation, self.history = state["evaluation"], list(state["history"])
        self.train_seconds, self.rows_seen = state["train_seconds"], state["rows_seen"]
        self.finished = state["finished"]
        if self.step == self.steps:  # saved at an epoch's last step
            self.epoch, self.step = self.epoch + 1, 0
        remove_stale_temporaries(Path(path).parent)
        logger.info("resumed at epoch %d step %d", self.epoch, self.step)


class _Slice:
    """Rows ``start:stop`` of a source, as a source."""

    def __init__(self, source, start: int, stop: int) -> None:
        self.source, self.start, self.stop = source, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def read(self, start: int, stop: int) -> EncodedBatch:
        return read_rows(self.source, self.start + start, self.start + stop)


def _rank_part(n: int, world: World) -> tuple[int, int]:
    """This rank's contiguous share of ``n`` rows."""
    bounds = np.linspace(0, n, world.size + 1).round().astype(int)
    return int(bounds[world.rank]), int(bounds[world.rank + 1])


def _check_rows(train, valid) -> None:
    for name, rows in (("train", train), ("valid", valid)):
        if isinstance(rows, EncodedBatch) and rows.labels is None:
            raise ValueError(f"{name}: labels are required to fit a model")
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"train/valid: need rows, got {len(train)} / {len(valid)}")
