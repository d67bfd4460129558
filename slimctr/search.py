"""Budget search: every compressed candidate measured, the best one chosen.

A candidate is one model stored one way (fp32, fp16, int8): an accepted
pruning step, or a student distilled from the last one.
Each is measured on validation (AUC, logloss), on disk (bytes) and in time
(batch-1 latency, batch-4096 throughput); the chosen candidate is the one with
the fewest bytes, or the lowest latency, among those whose validation AUC is
within ``max_auc_drop`` of the uncompressed model. Test rows never choose.
"""

import copy
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from compression.prune import PruneResult
from ctr.metrics import evaluate
from ctr.train import predict
from ctr.wide_deep import WideDeep, count_params
from data.batch import RawBatch
from data.encoder import Encoder
from serving.bench import benchmark
from serving.storage import Storage, simulate
from slimctr.search_space import OBJECTIVES, STORAGES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """A model the search may store: ``label`` names it in the report
    ("step2", "student"); ``step`` is its pruning step, or -1 for a student."""

    label: str
    step: int
    model: WideDeep
    encoder: Encoder


def pruning_sources(pruned: PruneResult) -> list[Source]:
    """Every accepted pruning step, the unpruned model first."""
    accepted = [s.step for s in pruned.steps if not s.rolled_back]
    return [
        Source(f"step{step}", step, model, encoder)
        for step, (model, encoder) in zip(accepted, pruned.snapshots, strict=True)
    ]


@dataclass
class Candidate:
    """One compressed model as it would be written, with its measurements.

    The model itself is ``source``'s, written with ``storage``.
    """

    name: str
    step: int
    storage: str
    figures: dict = field(default_factory=dict)
    source: Source | None = field(default=None, repr=False, compare=False)

    @property
    def storage_type(self) -> Storage:
        return STORAGES[self.storage]


def _nonzeros(model: WideDeep) -> int:
    return int(sum(int((p != 0).sum()) for p in model.parameters()))


def measure_candidates(
    sources: list[Source],
    valid: RawBatch,
    test: RawBatch,
    measure_bytes,
    storages: tuple[str, ...] = tuple(STORAGES),
    latency_calls: int = 500,
) -> list[Candidate]:
    """Every source in every storage, measured on the validation rows.

    Test AUC and logloss are measured too, for the report only: :func:`choose`
    reads validation figures alone.
    """
    candidates = []
    for source in sources:
        model, encoder, step = source.model, source.encoder, source.step
        encoded = encoder.transform(valid)
        encoded_test = encoder.transform(test)
        timing = benchmark(
            model, encoded, latency_calls=latency_calls, throughput_calls=10
        )
        for storage in storages:
            rounded = simulate(copy.deepcopy(model), STORAGES[storage])
            metrics = evaluate(encoded.labels, predict(rounded, encoded))
            tested = evaluate(encoded_test.labels, predict(rounded, encoded_test))
            candidate = Candidate(
                f"{source.label}-{storage}", step, storage, source=source
            )
            candidate.figures = {
                "name": candidate.name,
                "step": step,
                "storage": storage,
                "params": count_params(model),
                "nonzeros": _nonzeros(rounded),
                "bytes": measure_bytes(model, encoder, STORAGES[storage]),
                "valid_auc": metrics.auc,
                "valid_logloss": metrics.logloss,
                "hidden_units": list(model.config.hidden_units),
                "embedding_dim": model.config.embedding_dim,
                "vocabulary_rows": sum(len(v) for v in encoder.vocabularies),
                "p50_us": timing.p50_us,
                "p99_us": timing.p99_us,
                "rows_per_s": timing.rows_per_s,
                "test_auc": tested.auc,
                "test_logloss": tested.logloss,
            }
            logger.info(
                "candidate %s: bytes %d valid_auc %.4f p50_us %.1f",
                candidate.name,
                candidate.figures["bytes"],
                metrics.auc,
                timing.p50_us,
            )
            candidates.append(candidate)
    return candidates


def choose(
    candidates: list[Candidate],
    floor: float,
    objective: str = "bytes",
    logloss_ceiling: float = math.inf,
) -> Candidate:
    """The best candidate by ``objective`` among those with valid AUC ≥ ``floor``
    and valid logloss ≤ ``logloss_ceiling``.

    The logloss ceiling keeps out a model that ranks well but whose
    probabilities are off, which AUC alone cannot see. The uncompressed fp32
    model always qualifies, so a choice always exists.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
    key = "bytes" if objective == "bytes" else "p50_us"
    within = [
        c
        for c in candidates
        if c.figures["valid_auc"] >= floor
        and c.figures["valid_logloss"] <= logloss_ceiling
    ]  # nan fails both comparisons
    if not within:
        within = [c for c in candidates if c.step == 0 and c.storage == "float32"]
    for c in candidates:
        c.figures["within_budget"] = c in within
    return min(within, key=lambda c: (c.figures[key], c.figures["bytes"]))


def pareto_front(points: list[dict]) -> list[dict]:
    """Candidates no other beats on both fewer bytes and higher valid AUC."""
    ordered = sorted(points, key=lambda p: (p["bytes"], -p["valid_auc"]))
    front, best = [], -np.inf
    for point in ordered:
        if point["valid_auc"] > best:
            front.append(point)
            best = point["valid_auc"]
    return front
