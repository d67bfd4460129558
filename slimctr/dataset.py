"""A labeled file read, validated and split by position into train/valid/test."""

import logging
from dataclasses import dataclass
from pathlib import Path

from data.bad_lines import SkipCounter
from data.batch import RawBatch
from data.reader import read_rows
from data.schema import CRITEO, Schema
from data.split import Split

logger = logging.getLogger(__name__)


@dataclass
class Dataset:
    path: Path
    train: RawBatch
    valid: RawBatch
    test: RawBatch
    split: Split
    skipped: SkipCounter
    schema: Schema = CRITEO

    @property
    def rows(self) -> int:
        return len(self.train) + len(self.valid) + len(self.test)

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "dataset": self.schema.name,
            "rows": self.rows,
            "split": {
                "method": "by position (file order)",
                "fractions": [self.split.train, self.split.valid, self.split.test],
                "train": len(self.train),
                "valid": len(self.valid),
                "test": len(self.test),
            },
            "skipped_lines": dict(self.skipped.counts),
        }


def load_dataset(
    path: str | Path,
    split: Split | None = None,
    fmt: str = "auto",
    on_bad_lines: str = "error",
    schema: Schema = CRITEO,
) -> Dataset:
    """Read a labeled file of ``schema`` (Criteo by default) and split it in
    file order."""
    split = split or Split()
    batch, skipped = read_rows(path, schema, fmt=fmt, on_bad_lines=on_bad_lines)
    if batch.labels is None:
        raise ValueError(
            f"{path}: has no label column ({schema.label!r} for the schema "
            f"{schema.name}); training and evaluation need labeled rows"
        )
    if skipped.total:
        logger.warning("%s: %s", path, skipped.summary())
    train, valid, test = (batch.take(part) for part in split.bounds(len(batch)))
    logger.info(
        "%s: %d rows, split %d / %d / %d",
        path,
        len(batch),
        len(train),
        len(valid),
        len(test),
    )
    return Dataset(Path(path), train, valid, test, split, skipped, schema)
