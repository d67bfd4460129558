"""The stages that the command line chains: train, compress, measure, compare.

This is the one place that wires ``data``, ``ctr``, ``compression`` and
``serving`` together.
"""

import logging
import math
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from compression.distill import DistillConfig, distill, smaller
from compression.prune import (
    PruneConfig,
    PruneResult,
    fine_tune_config,
    fine_tune_or_keep,
    prune_gradually,
)
from compression.sensitivity import field_keep, layer_keep, layer_names
from compression.thinning import remap_ids, thin_embedding_rows, thin_mlp
from ctr.bootstrap import paired_auc_drop
from ctr.config import Config
from ctr.distributed import World
from ctr.metrics import evaluate
from ctr.train import Checkpointing, TrainResult, fit
from ctr.wide_deep import WideDeep, count_params
from data.encoder import EncodedBatch, Encoder
from serving.artifact import artifact_bytes, save_artifact
from serving.bench import benchmark
from serving.scorer import Scorer
from serving.storage import Storage
from slimctr.dataset import Dataset
from slimctr.search import (
    STORAGES,
    Candidate,
    Source,
    choose,
    measure_candidates,
    pruning_sources,
)

logger = logging.getLogger(__name__)


@dataclass
class Encoded:
    """A dataset's splits encoded by one encoder."""

    encoder: Encoder
    train: EncodedBatch
    valid: EncodedBatch
    test: EncodedBatch


def encode(dataset: Dataset, encoder: Encoder) -> Encoded:
    return Encoded(
        encoder,
        encoder.transform(dataset.train),
        encoder.transform(dataset.valid),
        encoder.transform(dataset.test),
    )


def fit_encoder(
    dataset: Dataset, min_count: int, dense_buckets: bool = False
) -> Encoded:
    """Fit on the training rows only, then encode every split."""
    encoder = Encoder.fit(
        dataset.train,
        min_count=min_count,
        schema=dataset.schema,
        dense_buckets=dense_buckets,
    )
    return encode(dataset, encoder)


def train_baseline(
    config: Config,
    encoded: Encoded,
    progress: bool = False,
    world: World | None = None,
    checkpointing: Checkpointing | None = None,
) -> TrainResult:
    torch.manual_seed(config.train.seed)
    encoder = encoded.encoder
    model = WideDeep(config.model, encoder.num_embeddings, encoder.dense_width)
    return fit(
        model,
        encoded.train,
        encoded.valid,
        config.train,
        progress=progress,
        world=world,
        checkpointing=checkpointing,
    )


def measure_bytes(
    model: WideDeep, encoder: Encoder, storage: Storage | None = None
) -> int:
    """Bytes on disk of the artifact that would hold ``model`` and ``encoder``."""
    with tempfile.TemporaryDirectory(prefix="slimctr-size-") as folder:
        save_artifact(folder, model, encoder, storage=storage)
        return artifact_bytes(folder)["total"]


def distil_student(
    pruned: PruneResult,
    dataset: Dataset,
    config: Config,
    shrink: float = 0.5,
    progress: bool = False,
) -> tuple[Source, dict]:
    """A student ``shrink`` times as wide, distilled from the last accepted step.

    The student shares its teacher's encoder (vocabulary and transforms), so
    its bytes shrink in the tables' width and the layers, not the rows. It is
    trained from scratch with ``config.train`` and the default label weight
    and temperature.

    Returns:
        The student as a search source, and what the report says of it.
    """
    teacher, encoder = pruned.snapshots[-1]
    train, valid = encoder.transform(dataset.train), encoder.transform(dataset.valid)
    torch.manual_seed(config.train.seed)
    student = WideDeep(
        smaller(teacher.config, shrink), teacher.num_embeddings, teacher.num_dense
    )
    settings = DistillConfig()
    result = distill(student, teacher, train, valid, settings, config.train, progress)
    summary = {
        "teacher": f"step{pruned.chosen_step}",
        "alpha": settings.alpha,
        "temperature": settings.temperature,
        "shrink": shrink,
        "hidden_units": list(student.config.hidden_units),
        "embedding_dim": student.config.embedding_dim,
        "teacher_valid_auc": result.teacher_valid.auc,
        "valid_auc": result.best_valid.auc,
        "epochs": result.epochs_run,
    }
    logger.info(
        "student %s dim %d: valid AUC %.4f (teacher %.4f)",
        summary["hidden_units"],
        summary["embedding_dim"],
        summary["valid_auc"],
        summary["teacher_valid_auc"],
    )
    return Source("student", -1, result.model, encoder), summary


def allocated(
    model: WideDeep,
    encoded: Encoded,
    allocation: dict[str, float],
    prune_config: PruneConfig,
    config: Config,
    progress: bool = False,
) -> tuple[Source, dict]:
    """The model pruned once at the sensitivity table's per-part levels.

    Each hidden layer loses its allocated share of neurons and each field its
    allocated share of vocabulary rows (by L2 norm, as the sensitivity
    analysis measured them), then one fine-tuning round follows, undone when
    it lowers validation AUC. Each level was judged alone, so together they
    may break the budget; the search measures the result like any candidate.
    """
    fields = encoded.encoder.sparse_features
    layers = layer_names(model)
    keep_neurons = [
        layer_keep(model, i, allocation.get(name, 0.0)) for i, name in enumerate(layers)
    ]
    keep_rows = [
        field_keep(model, i, allocation.get(name, 0.0)) for i, name in enumerate(fields)
    ]
    thinned = thin_embedding_rows(thin_mlp(model, keep_neurons), keep_rows)
    encoder = encoded.encoder.keep_rows(keep_rows)
    train = remap_ids(encoded.train, keep_rows)
    valid = remap_ids(encoded.valid, keep_rows)
    valid_auc = fine_tune_or_keep(
        thinned, train, valid, fine_tune_config(config.train, prune_config), progress
    )
    summary = {
        "levels": dict(allocation),
        "hidden_units": list(thinned.config.hidden_units),
        "vocabulary_rows": sum(len(v) for v in encoder.vocabularies),
        "valid_auc": valid_auc,
    }
    logger.info(
        "allocated: %s hidden units, %d rows, valid AUC %.4f",
        summary["hidden_units"],
        summary["vocabulary_rows"],
        summary["valid_auc"],
    )
    return Source("allocated", -1, thinned, encoder), summary


def search(
    pruned: PruneResult,
    dataset: Dataset,
    max_auc_drop: float,
    storage: str = "auto",
    objective: str = "bytes",
    extra: tuple[Source, ...] = (),
    max_logloss_rise: float = math.inf,
) -> tuple[Candidate, list[Candidate]]:
    """Measure every source × storage candidate and choose one on validation.

    The sources are the accepted pruning steps and ``extra`` (a distilled
    student, a model pruned at the sensitivity levels). A candidate qualifies
    within ``max_auc_drop`` of the unpruned model's validation AUC and
    ``max_logloss_rise`` of its validation logloss. Test figures are measured
    for the report and play no part in the choice.
    """
    storages = tuple(STORAGES) if storage == "auto" else (storage,)
    candidates = measure_candidates(
        [*pruning_sources(pruned), *extra],
        dataset.valid,
        dataset.test,
        measure_bytes,
        storages,
    )
    start = pruned.steps[0]
    floor = start.valid_auc - max_auc_drop
    ceiling = start.valid_logloss + max_logloss_rise
    return choose(candidates, floor, objective, ceiling), candidates


def compress(
    model: WideDeep,
    encoded: Encoded,
    prune_config: PruneConfig,
    config: Config,
    progress: bool = False,
) -> PruneResult:
    return prune_gradually(
        model,
        encoded.encoder,
        encoded.train,
        encoded.valid,
        prune_config,
        config.train,
        measure_bytes,
        progress=progress,
    )


def snapshot(chosen: Candidate) -> tuple[WideDeep, Encoder]:
    """The unrounded model and encoder of a candidate (storage applies its
    rounding once, when the artifact is written)."""
    return chosen.source.model, chosen.source.encoder


def summarise(scorer: Scorer, folder, test: EncodedBatch) -> dict:
    """Test metrics, size and parameter count of a saved artifact."""
    scores = scorer.predict_encoded(test)
    metrics = evaluate(test.labels, scores)
    return {
        "test_auc": metrics.auc,
        "test_logloss": metrics.logloss,
        "test_calibration": metrics.calibration,
        "test_normalized_entropy": metrics.normalized_entropy,
        "params": count_params(scorer.model),
        "bytes": artifact_bytes(folder)["total"],
        "bytes_by_file": artifact_bytes(folder),
        "hidden_units": list(scorer.model.config.hidden_units),
        "embedding_dim": scorer.model.config.embedding_dim,
        "vocabulary_rows": sum(len(v) for v in scorer.encoder.vocabularies),
    }


def compare(
    baseline: Scorer, compressed: Scorer, dataset: Dataset, seed: int = 0
) -> dict:
    """Paired bootstrap of the test AUC drop, each model on its own encoding."""
    y_true = dataset.test.labels
    interval = paired_auc_drop(
        y_true,
        baseline.predict_raw(dataset.test),
        compressed.predict_raw(dataset.test),
        seed=seed,
    )
    return interval.as_dict()


def bench_pair(
    baseline: Scorer, compressed: Scorer, dataset: Dataset, repeats: int = 5
) -> dict:
    """Latency and throughput of both models on the test rows.

    The two are timed in alternation, ``repeats`` rounds each, and each figure
    is the median over rounds, so a burst of load on the machine hits both.
    """
    scorers = {"baseline": baseline, "compressed": compressed}
    encoded = {name: s.encode(dataset.test) for name, s in scorers.items()}
    rounds: dict[str, list[dict]] = {name: [] for name in scorers}
    for _ in range(repeats):
        for name, scorer in scorers.items():
            result = benchmark(scorer.model, encoded[name], latency_calls=1000)
            rounds[name].append(result.as_dict())
    summary = {}
    for name, results in rounds.items():
        summary[name] = {
            key: float(np.median([r[key] for r in results]))
            for key in ("p50_us", "p99_us", "rows_per_s")
        }
        summary[name].update(
            repeats=repeats, threads=results[0]["threads"], batch_size=4096
        )
    return summary


def oracle_auc(proba: np.ndarray, dataset: Dataset) -> float:
    """AUC of the true click probabilities on the test rows (synthetic data)."""
    test = dataset.test
    return evaluate(test.labels, proba[test.lines - 1]).auc
