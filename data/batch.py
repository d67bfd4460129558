"""Parsed, not yet encoded rows: what a reader hands to the encoder."""

from dataclasses import dataclass

import numpy as np

from data.schema import NUM_DENSE, NUM_SPARSE


@dataclass(frozen=True)
class RawBatch:
    """Rows of the Criteo layout after parsing and validation.

    Attributes:
        labels: ``(n,)`` float32 in {0, 1}, or ``None`` for unlabeled rows.
        dense: ``(n, 13)`` float64; ``nan`` where the integer was missing.
        sparse: ``(n, 26)`` int64 keys (the hex hash read as an unsigned
            32-bit integer); ``MISSING_KEY`` (-1) where the value was empty.
        ids: ``(n,)`` row identifiers: the input's Id column when it has one,
            else the 1-based line number in the file.
        lines: ``(n,)`` int64 1-based line numbers in the source file.
    """

    labels: np.ndarray | None
    dense: np.ndarray
    sparse: np.ndarray
    ids: np.ndarray
    lines: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.dense)
        assert self.dense.shape == (n, NUM_DENSE), self.dense.shape
        assert self.sparse.shape == (n, NUM_SPARSE), self.sparse.shape
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
