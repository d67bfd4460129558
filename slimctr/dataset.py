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
            "resolved": str(Path(self.path).resolve()),
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


# below these, an AUC measured on a split is too noisy to choose by
FEW_ROWS, FEW_OF_A_CLASS = 500, 25


def check_splits(dataset: Dataset) -> None:
    """Refuse splits that cannot train or validate; warn of noisy ones.

    Raises:
        ValueError: the training or validation split lacks clicks or
            non-clicks.
    """
    for name, part in (("training", dataset.train), ("validation", dataset.valid)):
        clicks = int(part.labels.sum()) if len(part) else 0
        if clicks == 0 or clicks == len(part):
            raise ValueError(
                f"{dataset.path}: the {name} split ({len(part)} rows, {clicks} "
                "clicks) needs both clicks and non-clicks; use more rows or "
                "another --split"
            )
    for name, part in (("validation", dataset.valid), ("test", dataset.test)):
        clicks = int(part.labels.sum()) if len(part) else 0
        if len(part) < FEW_ROWS or min(clicks, len(part) - clicks) < FEW_OF_A_CLASS:
            logger.warning(
                "%s: the %s split has %d rows (%d clicks); an AUC on so few is "
                "noise of several hundredths, so %s figures cannot be trusted",
                dataset.path,
                name,
                len(part),
                clicks,
                "budget choices and their" if name == "validation" else "its",
            )
