"""Paired bootstrap interval of an AUC difference between two models.

Both models are scored on the same resampled rows, so the interval reflects
the noise of their difference, which is much smaller than each AUC's own.
"""

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from ctr.metrics import UndefinedMetricWarning


@dataclass(frozen=True)
class AucDropInterval:
    """``drop = auc(baseline) - auc(candidate)``; positive means a loss."""

    drop: float
    low: float
    high: float
    confidence: float
    resamples: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def paired_auc_drop(
    y_true: np.ndarray,
    baseline_score: np.ndarray,
    candidate_score: np.ndarray,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AucDropInterval:
    """Percentile interval of the AUC drop over paired resamples of the rows.

    Args:
        y_true: ``(n,)`` labels in {0, 1}.
        baseline_score, candidate_score: ``(n,)`` probabilities on the same rows.
    """
    y_true = np.asarray(y_true)
    if not (len(y_true) == len(baseline_score) == len(candidate_score)):
        raise ValueError("y_true, baseline_score, candidate_score: lengths differ")
    if resamples < 10:
        raise ValueError(f"resamples: expected >= 10, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence}")
    if len(y_true) == 0 or y_true.min() == y_true.max():
        warnings.warn(
            f"the AUC drop is undefined on {len(y_true)} rows with one class only; "
            "reporting nan",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return AucDropInterval(math.nan, math.nan, math.nan, confidence, 0)

    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(resamples):
        rows = rng.integers(0, len(y_true), len(y_true))
        labels = y_true[rows]
        if labels.min() == labels.max():
            continue
        drops.append(
            roc_auc_score(labels, baseline_score[rows])
            - roc_auc_score(labels, candidate_score[rows])
        )
    alpha = (1 - confidence) / 2
    low, high = np.quantile(drops, [alpha, 1 - alpha])
    drop = roc_auc_score(y_true, baseline_score) - roc_auc_score(
        y_true, candidate_score
    )
    return AucDropInterval(float(drop), float(low), float(high), confidence, len(drops))
