"""Reading the rows of any supported dataset: the byte-level Criteo reader for
``CRITEO`` (its fast path, which also detects the Kaggle CSV variants), and
the pandas reader of :mod:`data.tabular` for every other schema.
"""

import os
from collections.abc import Iterator

from data.avazu import AVAZU
from data.bad_lines import SkipCounter
from data.batch import RawBatch
from data.criteo import iter_criteo, read_criteo
from data.schema import CRITEO, Schema
from data.tabular import CHUNK_ROWS, iter_tabular, read_tabular

# the presets ``--dataset`` offers, by name
DATASETS: dict[str, Schema] = {"criteo": CRITEO, "avazu": AVAZU}


def preset(name: str) -> Schema:
    """The schema of a preset dataset, by name."""
    if name not in DATASETS:
        raise ValueError(
            f"dataset: got {name!r}; accepted: {', '.join(DATASETS)}, or describe "
            "the file in a TOML schema (--schema)"
        )
    return DATASETS[name]


def iter_rows(
    path: str | os.PathLike,
    schema: Schema = CRITEO,
    fmt: str = "auto",
    on_bad_lines: str = "error",
    chunk_rows: int = CHUNK_ROWS,
    skipped: SkipCounter | None = None,
) -> Iterator[RawBatch]:
    """Batches of valid rows in file order; see :func:`data.criteo.iter_criteo`
    and :func:`data.tabular.iter_tabular` for what makes a row bad.

    Args:
        fmt: Criteo only: "auto" or a forced layout (``data.criteo.FORMATS``).
    """
    _check_fmt(schema, fmt)
    if schema == CRITEO:
        return iter_criteo(path, fmt, on_bad_lines, chunk_rows, skipped)
    return iter_tabular(path, schema, on_bad_lines, chunk_rows, skipped)


def read_rows(
    path: str | os.PathLike,
    schema: Schema = CRITEO,
    fmt: str = "auto",
    on_bad_lines: str = "error",
) -> tuple[RawBatch, SkipCounter]:
    """The whole file as one batch, and the lines skipped under "skip"."""
    _check_fmt(schema, fmt)
    if schema == CRITEO:
        result = read_criteo(path, fmt, on_bad_lines)
        return result.batch, result.skipped
    return read_tabular(path, schema, on_bad_lines)


def _check_fmt(schema: Schema, fmt: str) -> None:
    if not isinstance(schema, Schema):
        raise TypeError(f"schema: expected a Schema, got {type(schema)}")
    if schema != CRITEO and fmt != "auto":
        raise ValueError(
            f"--format {fmt}: applies to Criteo files only; the schema "
            f"{schema.name} says how its files are laid out, so drop --format"
        )
