import math

import numpy as np
import pytest

from ctr.bootstrap import paired_auc_drop
from ctr.metrics import UndefinedMetricWarning


def test_identical_models_have_zero_drop():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.3).astype(float)
    s = rng.random(500)
    result = paired_auc_drop(y, s, s, resamples=100)
    assert result.drop == 0.0 and result.low == 0.0 and result.high == 0.0


def test_worse_candidate_has_positive_interval():
    rng = np.random.default_rng(1)
    y = (rng.random(4000) < 0.3).astype(float)
    good = np.clip(0.3 + 0.3 * (y - 0.3) + 0.1 * rng.standard_normal(4000), 0, 1)
    bad = rng.random(4000)
    result = paired_auc_drop(y, good, bad, resamples=200)
    assert result.low > 0.2 and result.low <= result.drop <= result.high


def test_one_class_gives_nan_with_a_warning():
    with pytest.warns(UndefinedMetricWarning, match="one class only"):
        result = paired_auc_drop(np.zeros(20), np.zeros(20), np.zeros(20))
    assert math.isnan(result.drop) and math.isnan(result.low)
