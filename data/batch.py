"""Parsed, not yet encoded rows: what a reader hands to the encoder."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RawBatch:
    """Rows of one schema after parsing and validation; the widths are the
    schema's (13 dense and 26 sparse for Criteo, 0 and 23 for Avazu).

    Attributes:
        labels: ``(n,)`` float32 in {0, 1}, or ``None`` for unlabeled rows.
        dense: ``(n, num_dense)`` float64; ``nan`` where the value was missing.
        sparse: ``(n, num_sparse)`` int64 keys (a Criteo hex hash read as an
            unsigned 32-bit integer, or a 64-bit string hash);
            ``MISSING_KEY`` (-1) where the value was empty.
        ids: ``(n,)`` row identifiers: the input's id column when it has one
            (int64 for Criteo, text for a schema's ``id_column``), else the
            1-based line number in the file.
        lines: ``(n,)`` int64 1-based line numbers in the source file.
    """

    labels: np.ndarray | None
    dense: np.ndarray
    sparse: np.ndarray
    ids: np.ndarray
    lines: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.dense)
        assert self.dense.ndim == 2 and len(self.dense) == n, self.dense.shape
        assert self.sparse.ndim == 2 and len(self.sparse) == n, self.sparse.shape
        assert len(self.ids) == n and len(self.lines) == n
        assert self.labels is None or self.labels.shape == (n,)

    def __len__(self) -> int:
        return len(self.dense)

    def take(self, index: np.ndarray | slice) -> "RawBatch":
        """Rows selected by a slice or an index array, in that order."""
        return RawBatch(
            labels=None if self.labels is None else self.labels[index],
            dense=self.dense[index],
            sparse=self.sparse[index],
            ids=self.ids[index],
            lines=self.lines[index],
        )

    @staticmethod
    def concat(batches: list["RawBatch"]) -> "RawBatch":
        """One batch holding the rows of ``batches`` in order."""
        if not batches:
            raise ValueError("batches: need at least one batch to concatenate")
        labeled = {b.labels is not None for b in batches}
        if len(labeled) != 1:
            raise ValueError("batches: cannot mix labeled and unlabeled rows")
        return RawBatch(
            labels=(
                np.concatenate([b.labels for b in batches])
                if batches[0].labels is not None
                else None
            ),
            dense=np.concatenate([b.dense for b in batches]),
            sparse=np.concatenate([b.sparse for b in batches]),
            ids=np.concatenate([b.ids for b in batches]),
            lines=np.concatenate([b.lines for b in batches]),
        )
