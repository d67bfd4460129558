"""CTR metrics over a whole evaluation set: AUC, logloss, calibration, NE.

Normalized entropy follows He et al. (2014), "Practical Lessons from
Predicting Clicks on Ads at Facebook": logloss divided by the entropy of the
observed click rate. A metric that is undefined (one class only) is ``nan``
with a warning, never 0 or 0.5.
"""

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

EPS = 1e-7


class UndefinedMetricWarning(UserWarning):
    """A metric could not be computed on the given labels."""


@dataclass(frozen=True)
class Metrics:
    auc: float
    logloss: float
    calibration: float
    normalized_entropy: float
    rows: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    if y_true.shape != y_score.shape:
        raise ValueError(
            f"y_true and y_score: shapes differ, {y_true.shape} vs {y_score.shape}"
        )
    if not np.isin(y_true, (0.0, 1.0)).all():
        raise ValueError("y_true: expected labels in {0, 1}")
    bad = int(np.count_nonzero(~np.isfinite(y_score)))
    if bad:
        raise ValueError(
            f"y_score: {bad} of {y_score.size} predictions are not finite (nan or "
            "inf); the model is broken, e.g. training diverged"
        )
    if y_score.size and (y_score.min() < 0 or y_score.max() > 1):
        raise ValueError("y_score: expected probabilities in [0, 1], not logits")
    return y_true, y_score


def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve; ``nan`` with a warning when one class is absent.

    Args:
        y_true: ``(n,)`` labels in {0, 1}.
        y_score: ``(n,)`` predicted click probabilities.
    """
    y_true, y_score = _check(y_true, y_score)
    positives = int(y_true.sum())
    if positives == 0 or positives == y_true.size:
        warnings.warn(
            f"AUC is undefined on {y_true.size} rows with one class only; "
            "reporting nan",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return math.nan
    # imported here: torchmetrics loads scipy.signal and matplotlib, close to a
    # second that commands which never compute an AUC should not pay
    from torchmetrics.functional.classification import binary_auroc

    return float(
        binary_auroc(torch.from_numpy(y_score), torch.from_numpy(y_true).long())
    )


def logloss(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]."""
    y_true, y_score = _check(y_true, y_score)
    if y_true.size == 0:
        warnings.warn("logloss of zero rows is undefined", UndefinedMetricWarning, 2)
        return math.nan
    p = np.clip(y_score, EPS, 1 - EPS)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))


def calibration(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean predicted click rate over the observed one (1.0 is calibrated)."""
    y_true, y_score = _check(y_true, y_score)
    observed = y_true.mean() if y_true.size else 0.0
    if observed == 0:
        warnings.warn(
            "calibration is undefined without clicks; reporting nan",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return math.nan
    return float(y_score.mean() / observed)


def normalized_entropy(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Logloss over the entropy of the observed click rate (lower is better)."""
    y_true, y_score = _check(y_true, y_score)
    rate = y_true.mean() if y_true.size else 0.0
    if rate in (0.0, 1.0):
        warnings.warn(
            "normalized entropy is undefined with one class only; reporting nan",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return math.nan
    entropy = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    return float(logloss(y_true, y_score) / entropy)


def evaluate(y_true: np.ndarray, y_score: np.ndarray) -> Metrics:
    """All four metrics at once."""
    return Metrics(
        auc=auc(y_true, y_score),
        logloss=logloss(y_true, y_score),
        calibration=calibration(y_true, y_score),
        normalized_entropy=normalized_entropy(y_true, y_score),
        rows=int(np.asarray(y_true).size),
    )
