import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from ctr.metrics import (
    UndefinedMetricWarning,
    auc,
    calibration,
    evaluate,
    logloss,
    normalized_entropy,
)


def _scores(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    y_true = (rng.random(n) < 0.25).astype(float)
    y_score = np.clip(0.25 + 0.2 * (y_true - 0.25) + 0.2 * rng.standard_normal(n), 0, 1)
    return y_true, y_score


def test_auc_matches_sklearn():
    y_true, y_score = _scores()
    assert auc(y_true, y_score) == pytest.approx(
        roc_auc_score(y_true, y_score), abs=1e-6
    )


def test_auc_with_ties_matches_sklearn():
    y_true, y_score = _scores(seed=1)
    y_score = np.round(y_score, 1)
    assert auc(y_true, y_score) == pytest.approx(
        roc_auc_score(y_true, y_score), abs=1e-6
    )


def test_auc_one_class_is_nan_with_warning():
    with pytest.warns(UndefinedMetricWarning, match="one class"):
        assert math.isnan(auc(np.zeros(10), np.linspace(0, 1, 10)))


def test_logloss_matches_sklearn():
    y_true, y_score = _scores()
    assert logloss(y_true, y_score) == pytest.approx(
        log_loss(y_true, np.clip(y_score, 1e-7, 1 - 1e-7)), rel=1e-9
    )


def test_calibration_and_normalized_entropy():
    y_true = np.array([0, 0, 0, 1.0])
    y_score = np.full(4, 0.5)
    assert calibration(y_true, y_score) == pytest.approx(2.0)
    # predicting the base rate gives NE of exactly 1
    assert normalized_entropy(y_true, np.full(4, 0.25)) == pytest.approx(1.0)


def test_undefined_calibration_and_ne_are_nan():
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(calibration(np.zeros(3), np.full(3, 0.1)))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(normalized_entropy(np.ones(3), np.full(3, 0.9)))


def test_logits_are_refused():
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\], not logits"):
        auc(np.array([0, 1.0]), np.array([-2.0, 3.0]))


def test_evaluate_counts_rows():
    y_true, y_score = _scores(100)
    assert evaluate(y_true, y_score).rows == 100
