"""Reader for any delimited click log a ``Schema`` describes (Avazu, a TOML
schema): pandas reads every field as text, a chunk of lines at a time, and each
column is then checked and converted. A bad field is reported with its file,
line and column, and ``on_bad_lines`` decides whether it stops the read.

Sparse values of kind "string" become 64-bit keys through
``pandas.util.hash_array`` with the fixed ``HASH_KEY`` and UTF-8: the same
text gives the same key in every run and on every machine, with no seed.
"""

import csv
import gzip
import io
import itertools
import logging
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.bad_lines import (
    MAX_LISTED,
    BadLine,
    FaultLog,
    SkipCounter,
    check_read_options,
)
from data.batch import RawBatch
from data.hour import hour_fields
from data.schema import HOUR_FIELDS, MISSING_KEY, Schema

logger = logging.getLogger(__name__)

# pandas' own default key, spelled out so the keys never depend on a default.
HASH_KEY = "0123456789123456"
CHUNK_ROWS = 200_000
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)
_LABEL = re.compile(r"[01](?:\.0+)?")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX32 = re.compile(r"[0-9a-fA-F]{1,8}")
BAD_QUOTING = -1  # the field count of a line whose quotes do not parse


@dataclass(frozen=True)
class _Layout:
    """The columns of one file in file order, and where its data begins."""

    columns: tuple[str, ...]
    labeled: bool
    has_id: bool
    data_from: int  # 1-based number of the first line after any header


def iter_tabular(
    path: str | os.PathLike,
    schema: Schema,
    on_bad_lines: str = "error",
    chunk_rows: int = CHUNK_ROWS,
    skipped: SkipCounter | None = None,
) -> Iterator[RawBatch]:
    """Batches of at most ``chunk_rows`` valid rows of ``path``, in file order.

    A header may order the columns freely and hold columns the schema does
    not name (they are ignored); the label and id columns may be absent (the
    rows are then unlabeled, or named by line number). A headerless file holds
    ``schema.columns``, or those without the label. Blank lines are ignored.
    A row is bad when its field count is wrong or a field is not written as
    its column requires:

    * label: ``0`` or ``1`` (``0.0``, ``1.0`` too);
    * dense: empty (missing) or a decimal number (``3``, ``-2.5``, ``1e3``);
    * sparse of kind "hex32": empty or 1 to 8 hex digits; of kind "string":
      any text, empty being missing;
    * the hour column: empty or ``YYMMDDHH`` naming a real hour.

    Fields may be quoted, but may not hold a line break. Under
    ``on_bad_lines="error"`` nothing is yielded from the first batch holding
    a bad line on, the rest of the file is still scanned, and then a
    ``BadLinesError`` lists the faults; under ``"skip"`` bad lines are dropped
    and counted in ``skipped``. Arguments are checked when this is called.
    """
    path = _check_args(path, schema, on_bad_lines, chunk_rows, skipped)
    layout = _detect_layout(path, schema)
    return _iter_batches(path, schema, layout, on_bad_lines, chunk_rows, skipped)


def read_tabular(
    path: str | os.PathLike, schema: Schema, on_bad_lines: str = "error"
) -> tuple[RawBatch, SkipCounter]:
    """The whole file as one batch, and the lines skipped; see ``iter_tabular``.

    Under ``on_bad_lines="error"`` a file with any bad line returns nothing.
    """
    skipped = SkipCounter()
    path = _check_args(path, schema, on_bad_lines, CHUNK_ROWS, skipped)
    layout = _detect_layout(path, schema)
    batches = list(
        _iter_batches(path, schema, layout, on_bad_lines, CHUNK_ROWS, skipped)
    )
    if batches:
        return RawBatch.concat(batches), skipped
    return _empty_batch(schema, layout.labeled), skipped


def parse_frame(
    frame: pd.DataFrame, schema: Schema, source: str = "<frame>"
) -> RawBatch:
    """Rows held in memory, validated like the lines of a file.

    Columns are found by their exact names; the schema's feature columns are
    required, its label and id columns optional, others ignored. Values may be
    strings, numbers or ``None``/``NaN`` (missing); an integral float is read
    as the integer (``15706.0`` is ``"15706"``). Read ids as ``dtype=str``:
    a 20-digit id does not survive a float. Line numbers in errors are 1-based
    row positions.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame: expected a pandas DataFrame, got {type(frame)}")
    if not isinstance(schema, Schema):
        raise TypeError(f"schema: expected a Schema, got {type(schema)}")
    missing = [c for c in schema.feature_columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{source}: missing columns {missing[:5]}; the schema {schema.name} "
            f"needs {list(schema.feature_columns)}"
        )
    present = [c for c in _known_columns(schema) if c in frame.columns]
    text = pd.DataFrame({c: _as_text(frame[c]) for c in present})
    layout = _Layout(
        tuple(present), schema.label in present, schema.id_column in present, 1
    )
    lines = np.arange(1, len(frame) + 1, dtype=np.int64)
    batch, faults = _convert(text, lines, schema, layout)
    if faults.any():
        log = _FaultLog(source, fix="fix or drop those rows")
        log.add(faults, text, lines)
        raise log.error()
    return batch


# --- reading a file ----------------------------------------------------------


@dataclass
class _Faults:
    """The bad fields of ``g`` converted rows: ``bad`` ``(g, k)`` over
    ``columns``, with each column's reason key and what it expects."""

    bad: np.ndarray
    columns: tuple[str, ...]
    reasons: tuple[str, ...]
    expected: tuple[str, ...]

    def any(self) -> bool:
        return bool(self.bad.any())


def _iter_batches(
    path: str,
    schema: Schema,
    layout: _Layout,
    on_bad_lines: str,
    chunk_rows: int,
    skipped: SkipCounter | None,
) -> Iterator[RawBatch]:
    log = _FaultLog(path)
    local = SkipCounter()
    rows = 0
    for numbers, lines in _line_chunks(path, chunk_rows, layout.data_from):
        counts = _field_counts(lines, schema.separator)
        good = counts == len(layout.columns)
        wrong = ~good
        text = _read_fields(lines, good, schema.separator, layout)
        batch, faults = _convert(text, numbers[good], schema, layout)
        if on_bad_lines == "error":
            log.add_wrong_counts(numbers[wrong], counts[wrong], len(layout.columns))
            log.add(faults, text, numbers[good])
        else:
            for counter in (local, skipped):
                if counter is not None:
                    counter.add("field_count", int(wrong.sum()))
                    _count_skipped(counter, faults)
            if faults.any():
                batch = batch.take(~faults.bad.any(1))
        if not log.total and len(batch):
            rows += len(batch)
            yield batch
    if log.total:
        raise log.error()
    logger.info("%s: read %d rows; %s", path, rows, local.summary())


def _line_chunks(
    path: str, chunk_rows: int, data_from: int
) -> Iterator[tuple[np.ndarray, list[str]]]:
    """``(line numbers, lines)`` of up to ``chunk_rows`` non-blank data lines
    at a time; each line keeps its line break."""
    with _open_text(path) as handle:
        number = 0
        try:
            while True:
                chunk = list(itertools.islice(handle, chunk_rows))
                if not chunk:
                    return
                numbers = np.arange(number + 1, number + 1 + len(chunk))
                number += len(chunk)
                keep = [
                    i
                    for i, line in enumerate(chunk)
                    if numbers[i] >= data_from and line.strip(" \r\n")
                ]
                if keep:
                    yield numbers[keep], [chunk[i] for i in keep]
        except _GZIP_ERRORS as err:
            raise ValueError(f"{path}: not a readable gzip stream: {err}") from err


def _field_counts(lines: list[str], separator: str) -> np.ndarray:
    """``(g,)`` int64 number of fields on each line, ``BAD_QUOTING`` where a
    quote is left open or text follows a closing quote."""
    series = pd.Series(lines, dtype=object)
    counts = series.str.count(re.escape(separator)).to_numpy(dtype=np.int64) + 1
    # a quoted field may hold the separator: count those lines as CSV does
    for i in np.flatnonzero(series.str.contains('"', regex=False).to_numpy()):
        try:
            fields = next(csv.reader([lines[i]], delimiter=separator, strict=True))
        except csv.Error:
            counts[i] = BAD_QUOTING
        else:
            counts[i] = len(fields)
    return counts


def _read_fields(
    lines: list[str], good: np.ndarray, separator: str, layout: _Layout
) -> pd.DataFrame:
    """The good lines as a frame of strings, one column per file column.

    Every line given has the layout's field count by the rules of Python's
    ``csv``, which pandas' parser follows, so each makes one row.
    """
    kept = [line for line, ok in zip(lines, good, strict=True) if ok]
    if not kept:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in layout.columns})
    frame = pd.read_csv(
        io.StringIO("".join(kept)),
        sep=separator,
        header=None,
        names=list(layout.columns),
        dtype=str,
        na_filter=False,
        skip_blank_lines=False,
        engine="c",
    )
    if len(frame) != len(kept):
        raise ValueError(
            f"{len(kept)} lines gave {len(frame)} rows: pandas split their quoted "
            "fields otherwise than Python's csv; remove the quotes from the file"
        )
    return frame


def _convert(
    text: pd.DataFrame, lines: np.ndarray, schema: Schema, layout: _Layout
) -> tuple[RawBatch, _Faults]:
    """Checked, converted rows of a frame of strings, and their faults."""
    g = len(text)
    # (bad mask, column, reason key, what the column expects), in column order
    checks: list[tuple[np.ndarray, str, str, str]] = []

    labels = None
    if layout.labeled:
        values = text[schema.label].to_numpy(dtype=object)
        ok = _matches(values, _LABEL)
        labels = np.array([v[:1] == "1" for v in values], dtype=np.float32)
        checks.append((~ok, schema.label, "bad_label", "0 or 1"))

    dense = np.empty((g, schema.num_dense), dtype=np.float64)
    for j, name in enumerate(schema.dense_features):
        dense[:, j], wrong = _numbers(text[name].to_numpy(dtype=object))
        checks.append((wrong, name, "not_number", "a number"))

    sparse = np.empty((g, schema.num_sparse), dtype=np.int64)
    for j, name in enumerate(schema.sparse_features):
        sparse[:, j], wrong = _sparse_keys(
            text[name].to_numpy(dtype=object), schema.sparse_kind
        )
        if schema.sparse_kind == "hex32":  # any text is a "string" value
            checks.append((wrong, name, "bad_sparse_value", "1 to 8 hex digits"))
    if schema.hour_column is not None:
        hour, weekday, wrong = hour_fields(text[schema.hour_column].to_numpy(object))
        sparse[:, schema.num_sparse - len(HOUR_FIELDS) :] = np.stack(
            [hour, weekday], axis=1
        )
        hour_text = "an hour written YYMMDDHH (e.g. 14102100)"
        checks.append((wrong, schema.hour_column, "bad_sparse_value", hour_text))

    if layout.has_id:
        ids = text[schema.id_column].to_numpy(dtype=str)
    else:
        ids = lines.astype(np.int64)
    batch = RawBatch(labels, dense, sparse, ids, lines.astype(np.int64))
    bad, columns, reasons, expected = zip(*checks, strict=True) if checks else [()] * 4
    faults = _Faults(
        np.stack(bad, axis=1) if bad else np.zeros((g, 0), dtype=bool),
        columns,
        reasons,
        expected,
    )
    return batch, faults


def _matches(values: np.ndarray, pattern: re.Pattern) -> np.ndarray:
    return np.fromiter(
        (pattern.fullmatch(v) is not None for v in values),
        dtype=bool,
        count=len(values),
    )


def _numbers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(g,)`` float64, ``nan`` where empty, and the mask of bad values."""
    empty = values == ""
    ok = _matches(values, _NUMBER)
    out = np.full(len(values), np.nan)
    if ok.any():
        out[ok] = values[ok].astype(np.float64)
    finite = np.isfinite(out)
    return out, ~empty & ~(ok & finite)


def _sparse_keys(values: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(g,)`` int64 keys, ``MISSING_KEY`` where empty, and the bad mask."""
    empty = values == ""
    keys = np.full(len(values), MISSING_KEY, dtype=np.int64)
    present = ~empty
    if kind == "string":
        keys[present] = hash_strings(values[present])
        return keys, np.zeros(len(values), dtype=bool)
    ok = _matches(values, _HEX32)
    keys[ok] = np.fromiter((int(v, 16) for v in values[ok]), np.int64, int(ok.sum()))
    return keys, present & ~ok


def hash_strings(values: np.ndarray) -> np.ndarray:
    """Stable 64-bit keys of strings as int64: SipHash with ``HASH_KEY``."""
    hashed = pd.util.hash_array(
        np.asarray(values, dtype=object), encoding="utf8", hash_key=HASH_KEY
    )
    return hashed.view(np.int64)


# --- faults --------------------------------------------------------------------


class _FaultLog(FaultLog):
    """Faults of the schema reader, from its checked chunks."""

    def add(self, faults: _Faults, text: pd.DataFrame, lines: np.ndarray) -> None:
        if not faults.any():
            return
        rows, cols = np.nonzero(faults.bad)  # by line, then column
        listed = []
        for row, col in zip(rows[:MAX_LISTED], cols[:MAX_LISTED], strict=True):
            name = faults.columns[col]
            value = str(text[name].iloc[row])
            detail = _detail(faults.expected[col], value)
            listed.append(
                BadLine(self.path, int(lines[row]), name, faults.reasons[col], detail)
            )
        self.record(int(faults.bad.any(1).sum()), len(rows), listed)

    def add_wrong_counts(
        self, numbers: np.ndarray, counts: np.ndarray, expected: int
    ) -> None:
        """Count the lines ``numbers`` whose field ``counts`` are wrong."""
        listed = []
        for number, count in zip(
            numbers[:MAX_LISTED], counts[:MAX_LISTED], strict=True
        ):
            detail = f"expected {expected} fields, found {count}"
            if count == BAD_QUOTING:
                detail = (
                    "a quoted field is not closed, or text follows its closing "
                    "quote (a field may not hold a line break)"
                )
            listed.append(BadLine(self.path, int(number), None, "field_count", detail))
        self.record(len(numbers), len(numbers), listed)


def _count_skipped(counter: SkipCounter, faults: _Faults) -> None:
    """Count each bad row once, under the reason of its first faulty column."""
    if not faults.any():
        return
    first = faults.bad[faults.bad.any(1)].argmax(1)
    counts = np.bincount(first, minlength=len(faults.columns))
    for reason, count in zip(faults.reasons, counts, strict=True):
        counter.add(reason, int(count))


def _detail(expected: str, text: str) -> str:
    if not text:
        return f"missing; expected {expected}"
    return f"{_quote(text)} is not {expected}"


def _quote(text: str, width: int = 40) -> str:
    """``text`` quoted and escaped for a message, cut after ``width`` chars."""
    return repr(text[:width]) + ("..." if len(text) > width else "")


# --- small helpers -------------------------------------------------------------


def _check_args(
    path: str | os.PathLike,
    schema: Schema,
    on_bad_lines: str,
    chunk_rows: int,
    skipped: SkipCounter | None,
) -> str:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path)}")
    if not isinstance(schema, Schema):
        raise TypeError(f"schema: expected a Schema, got {type(schema)}")
    check_read_options(on_bad_lines, chunk_rows, skipped)
    name = os.fspath(path)
    if os.path.isdir(name):
        raise IsADirectoryError(f"path: {name}: is a folder, expected a file")
    if not os.path.isfile(name):
        if os.path.exists(name):
            raise ValueError(
                f"path: {name}: is not a regular file; save the data to a file"
            )
        raise FileNotFoundError(f"path: no such file: {name}")
    return name


def _open_text(path: str):
    """The file as text, gunzipped when it starts with gzip magic; bytes that
    are not UTF-8 become U+FFFD, and a byte-order mark is dropped."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace")
    return open(path, encoding="utf-8-sig", errors="replace")


def _first_line(path: str) -> tuple[int, str] | None:
    """``(number, text)`` of the first non-blank line, or ``None``."""
    with _open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if line.strip(" \r\n"):
                    return number, line.rstrip("\r\n")
        except _GZIP_ERRORS as err:
            raise ValueError(f"{path}: not a readable gzip stream: {err}") from err
    return None


def _detect_layout(path: str, schema: Schema) -> _Layout:
    """The columns of ``path``, from its header or its first line's width."""
    first = _first_line(path)
    if first is None:
        if schema.header:
            raise ValueError(
                f"{path}: the file is empty; expected a header naming the "
                f"columns of the schema {schema.name}"
            )
        return _Layout(schema.columns, True, schema.id_column is not None, 1)
    number, text = first
    if schema.header:
        names = tuple(
            n.strip() for n in next(csv.reader([text], delimiter=schema.separator))
        )
        return _header_layout(path, number, names, schema)
    return _headerless_layout(path, number, text, schema)


def _header_layout(
    path: str, number: int, names: tuple[str, ...], schema: Schema
) -> _Layout:
    missing = [c for c in schema.feature_columns if c not in names]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if missing or repeated:
        problem = f"missing columns {missing[:5]}" if missing else ""
        problem = problem or f"repeated columns {repeated[:5]}"
        separator = repr(schema.separator)
        raise ValueError(
            f"{path}:{number}: the header does not fit the schema {schema.name} "
            f"({problem}); found {len(names)} columns split on {separator}: "
            f"{_quote(', '.join(names), 80)}; check the file and the schema's "
            "separator and column names"
        )
    unused = [n for n in names if n not in _known_columns(schema)]
    if unused:
        logger.info("%s: ignoring columns the schema does not name: %s", path, unused)
    return _Layout(names, schema.label in names, schema.id_column in names, number + 1)


def _headerless_layout(path: str, number: int, text: str, schema: Schema) -> _Layout:
    count = int(_field_counts([text], schema.separator)[0])
    columns = schema.columns
    has_id = schema.id_column is not None
    if count == len(columns):
        return _Layout(columns, True, has_id, number)
    if count == len(columns) - 1:
        unlabeled = tuple(c for c in columns if c != schema.label)
        return _Layout(unlabeled, False, has_id, number)
    found = "unparseable quotes" if count == BAD_QUOTING else f"{count} fields"
    raise ValueError(
        f"{path}:{number}: found {found} split on {schema.separator!r}; the "
        f"schema {schema.name} has {len(columns)} columns ({len(columns) - 1} "
        "without the label); check the separator, or set header = true if the "
        "first line names the columns"
    )


def _known_columns(schema: Schema) -> tuple[str, ...]:
    """Every column the schema names: label, id, then the features."""
    extra = (schema.label,) + ((schema.id_column,) if schema.id_column else ())
    return extra + schema.feature_columns


def _as_text(column: pd.Series) -> pd.Series:
    """A frame column as strings: missing is empty, 15706.0 is "15706"."""

    def text(value) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return str(int(value))
        return str(value)

    return pd.Series([text(v) for v in column], index=column.index, dtype=object)


def _empty_batch(schema: Schema, labeled: bool) -> RawBatch:
    return RawBatch(
        labels=np.empty(0, dtype=np.float32) if labeled else None,
        dense=np.empty((0, schema.num_dense), dtype=np.float64),
        sparse=np.empty((0, schema.num_sparse), dtype=np.int64),
        ids=np.empty(0, dtype=np.int64),
        lines=np.empty(0, dtype=np.int64),
    )
