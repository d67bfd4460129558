"""Fitting an ``Encoder`` on training rows that arrive in chunks, in memory
bounded by the vocabulary rather than the rows: per-field key counts merged
chunk by chunk, and the dense statistics merged from per-chunk moments.
"""

import logging
import warnings

import numpy as np

from data.batch import RawBatch
from data.encoder import Encoder, field_keys, field_names, signed_log
from data.schema import CRITEO, MISSING_KEY, Schema

logger = logging.getLogger(__name__)

# Runs of per-chunk counts wait until they hold as many keys as the merged
# counts (or this floor), so each key is re-sorted O(log chunks) times in all.
MERGE_FLOOR = 1 << 16


class EncoderFit:
    """Accumulates what ``Encoder.fit`` needs, one batch of training rows at a
    time; ``finish`` gives the encoder.

    Fed the same rows in any chunking, ``finish`` gives the vocabularies of
    ``Encoder.fit(rows, min_count)`` exactly; the dense mean and standard
    deviation agree with it to rounding (relative 1e-12), since they are merged
    from chunk moments instead of summed over all rows at once.

    Args:
        min_count: a key enters a vocabulary when seen at least this often.
        max_vocab: keep at most this many keys per field, the most frequent;
            equal counts go to the smaller key. ``None`` keeps every key that
            passes ``min_count``. Keys left out become oov.
        schema: the schema the rows are read with.
        dense_buckets: also count the log-squared bucket of each dense
            feature as a categorical field (see :mod:`data.buckets`).

    Example (B rows of 13 dense and 26 sparse features)::

        fit = EncoderFit(min_count=3)
        for batch in train_batches:  # RawBatch, (B, 13) dense, (B, 26) sparse
            fit.update(batch)
        encoder = fit.finish()
    """

    def __init__(
        self,
        min_count: int = 1,
        max_vocab: int | None = None,
        schema: Schema = CRITEO,
        dense_buckets: bool = False,
    ) -> None:
        if isinstance(min_count, bool) or not isinstance(min_count, int):
            raise TypeError(f"min_count: expected an int, got {min_count!r}")
        if min_count < 1:
            raise ValueError(f"min_count: expected an integer >= 1, got {min_count}")
        if max_vocab is not None and (
            isinstance(max_vocab, bool) or not isinstance(max_vocab, int)
        ):
            raise TypeError(f"max_vocab: expected an int or None, got {max_vocab!r}")
        if max_vocab is not None and max_vocab < 1:
            raise ValueError(
                f"max_vocab: expected an integer >= 1 or None (no cap), got {max_vocab}"
            )
        if not isinstance(schema, Schema):
            raise TypeError(f"schema: expected a Schema, got {type(schema)}")
        self.min_count = min_count
        self.max_vocab = max_vocab
        self.schema = schema
        self.dense_buckets = dense_buckets
        self.rows = 0
        num_fields = len(field_names(schema, dense_buckets))
        self._keys = [_KeyCounts() for _ in range(num_fields)]
        self._dense = _Moments(schema.num_dense)

    def update(self, batch: RawBatch) -> None:
        """Count the keys and dense values of ``batch``'s rows (training rows
        only; never validation or test rows)."""
        if not isinstance(batch, RawBatch):
            raise TypeError(f"batch: expected a RawBatch, got {type(batch)}")
        widths = (batch.dense.shape[1], batch.sparse.shape[1])
        if widths != (self.schema.num_dense, self.schema.num_sparse):
            raise ValueError(
                f"batch: has {widths[0]} dense and {widths[1]} sparse columns, but "
                f"the schema {self.schema.name} has {self.schema.num_dense} and "
                f"{self.schema.num_sparse}"
            )
        if len(batch) == 0:
            return
        keys = np.ascontiguousarray(field_keys(batch, self.dense_buckets).T)
        for counts, column in zip(self._keys, keys, strict=True):
            counts.add(column[column != MISSING_KEY])
        # (num_dense, B): reductions along rows of contiguous memory vectorise
        self._dense.add(signed_log(np.ascontiguousarray(batch.dense.T)))
        self.rows += len(batch)

    def finish(self) -> Encoder:
        """The encoder of every row given to ``update``."""
        if self.rows == 0:
            raise ValueError("batch: cannot fit an encoder on zero rows")
        vocabularies = []
        for counts in self._keys:
            keys, seen = counts.merged()
            keep = seen >= self.min_count
            vocabularies.append(top_keys(keys[keep], seen[keep], self.max_vocab))
        mean, std = self._dense.mean_std()
        return Encoder(
            vocabularies, mean, std, self.min_count, self.schema, self.dense_buckets
        )


def top_keys(keys: np.ndarray, counts: np.ndarray, max_vocab: int | None):
    """The ``max_vocab`` keys of ``keys`` (sorted, distinct) with the largest
    ``counts``, smaller keys first among equal counts; returned sorted."""
    if max_vocab is None or len(keys) <= max_vocab:
        return keys
    order = np.lexsort((keys, -counts))  # by count descending, then key
    return np.sort(keys[order[:max_vocab]])


class _KeyCounts:
    """Counts of one field's keys: a merged run of sorted distinct keys with
    their counts, and the per-chunk runs not merged into it yet."""

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.int64)
        self._counts = np.empty(0, dtype=np.int64)
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending = 0

    def add(self, keys: np.ndarray) -> None:
        run = np.unique(keys, return_counts=True)
        self._runs.append(run)
        self._pending += len(run[0])
        if self._pending >= max(len(self._keys), MERGE_FLOOR):
            self._merge()

    def merged(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct keys and their counts, int64 both."""
        self._merge()
        return self._keys, self._counts

    def _merge(self) -> None:
        if not self._runs:
            return
        runs = [(self._keys, self._counts), *self._runs]
        keys = np.concatenate([k for k, _ in runs])
        counts = np.concatenate([c for _, c in runs]).astype(np.int64, copy=False)
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        starts = np.flatnonzero(first)
        self._keys = keys[starts]
        self._counts = (
            np.add.reduceat(counts, starts) if len(starts) else counts[:0].copy()
        )
        self._runs, self._pending = [], 0


class _Moments:
    """Count, mean and sum of squared deviations of each dense column, over
    the non-missing values, merged chunk by chunk (Chan et al., 1979)."""

    def __init__(self, width: int) -> None:
        self.count = np.zeros(width, dtype=np.int64)
        self.mean = np.zeros(width, dtype=np.float64)
        self.m2 = np.zeros(width, dtype=np.float64)

    def add(self, values: np.ndarray) -> None:
        """``values`` ``(width, B)``, nan where missing; overwritten."""
        missing = np.isnan(values)
        count = values.shape[1] - np.count_nonzero(missing, axis=1)
        values[missing] = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, values.sum(axis=1) / count, 0.0)
        values -= mean[:, None]
        values[missing] = 0.0
        m2 = np.einsum("ij,ij->i", values, values)

        total = self.count + count
        delta = mean - self.mean
        share = np.divide(count, total, out=np.zeros(len(total)), where=total > 0)
        self.mean = self.mean + delta * share
        self.m2 = self.m2 + m2 + delta * delta * self.count * share
        self.count = total

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """As ``Encoder.fit`` gives them: a column never present has mean 0 and
        standard deviation 1, and a deviation under 1e-6 becomes 1."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.where(self.count > 0, self.mean, 0.0)
            std = np.where(self.count > 0, np.sqrt(self.m2 / self.count), 1.0)
        std[std < 1e-6] = 1.0
        return mean, std
