"""Dense integers as categorical keys: the log-squared buckets of Criteo winners.

A count ``x`` above 2 falls in bucket ``3 + floor(ln(x) ** 2)``; 2 and below
(0, 1, 2 and the rare negatives) keep their own value, so no two ranges share
a bucket (the winners' transform, ``floor(ln(x) ** 2)`` alone, puts 1 and 3
together). Buckets widen with the magnitude, so 13 dense features become 13
small categorical fields (a few dozen keys each) that get embeddings like the
sparse ones. Keys are offset
above the range of every possible bucket so a bucket never equals
``MISSING_KEY``.
"""

import numpy as np

from data.schema import MISSING_KEY

# buckets of small values are those values; shifting by this keeps all keys
# non-negative (Criteo dense values are >= -3)
_SHIFT = 1 << 20


def bucket_keys(dense: np.ndarray) -> np.ndarray:
    """Bucket keys of dense values.

    Args:
        dense: ``(n, num_dense)`` float64, ``nan`` where missing.

    Returns:
        ``(n, num_dense)`` int64 keys, ``MISSING_KEY`` where the value is missing.
    """
    missing = np.isnan(dense)
    values = np.where(missing, 0.0, dense)
    large = values > 2
    with np.errstate(divide="ignore", invalid="ignore"):
        logged = 3 + np.floor(np.log(np.where(large, values, 1.0)) ** 2)
    buckets = np.where(large, logged, np.floor(values))
    keys = (np.clip(buckets, -_SHIFT + 1, _SHIFT) + _SHIFT).astype(np.int64)
    keys[missing] = MISSING_KEY
    return keys
