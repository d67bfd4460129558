"""Reader for the Criteo click-log layout (Kaggle Display Advertising Challenge,
Criteo 1TB): raw TSV with or without the label, and the Kaggle CSV variants,
plain or gzip, read in vectorised chunks and validated field by field.
"""

import gzip
import itertools
import logging
import os
import re
import stat
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

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
from data.schema import (
    DENSE_FEATURES,
    LABEL,
    MISSING_KEY,
    NUM_DENSE,
    NUM_SPARSE,
    SPARSE_FEATURES,
)

logger = logging.getLogger(__name__)

FORMATS = ("auto", "tsv", "tsv-unlabeled", "csv")
ID = "Id"

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)
_NL, _CR = 10, 13
_BLANK = b" \r"  # all a blank line may hold
_READ_SIZE = 4 << 20
_PIECE_ROWS = 16_384  # lines parsed at once
_HEADER_EXAMPLE = "'Id,Label,I1,...,I13,C1,...,C26'"
_FEATURES = DENSE_FEATURES + SPARSE_FEATURES
# Canonical spelling of every name a header may use, keyed by its lower case.
_CANONICAL = {name.lower(): name for name in (ID, LABEL, *_FEATURES)}

# Hex digit value of each byte; 255 marks a byte that is not a hex digit.
_HEX = np.full(256, 255, dtype=np.uint16)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
# Two bytes read as a little-endian uint16 -> the byte their two hex digits
# make, or _NOT_HEX (bit 8 set) when either is not a hex digit. One lookup per
# pair halves the lookups of a per-byte table.
_NOT_HEX = 0x100
_FIRST, _SECOND = _HEX[np.arange(1 << 16) & 0xFF], _HEX[np.arange(1 << 16) >> 8]
_HEX_PAIR = np.where(
    (_FIRST > 15) | (_SECOND > 15), _NOT_HEX, (_FIRST << 4) | _SECOND
).astype(np.uint16)
_NOT_HEX_LANES = np.uint64(0x0100_0100_0100_0100)  # bit 8 of each uint16 lane
# For a field of length L, the bytes of its 8-byte little-endian word to keep;
# the rest are overwritten with ASCII "0" so that they parse as trailing zeros.
_KEEP = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)
_ZEROS = np.uint64(int.from_bytes(b"0" * 8, "little"))

# Byte-lane masks for testing the 8 bytes of a word at once ("SWAR"): a test
# leaves bit 7 of each byte lane set where the byte passes it.
_LANES = np.uint64(0x0101_0101_0101_0101)
_LOW7 = np.uint64(0x7F7F_7F7F_7F7F_7F7F)
_HIGH = np.uint64(0x8080_8080_8080_8080)
_KEEP_HIGH = _KEEP & _HIGH  # bit 7 of the first L lanes
_FIRST_LANE = np.uint64(0x80)
_ONE = np.uint64(1)
_EIGHT = np.uint64(8)
# What an I or Id value, and a label, may be written as (see iter_criteo).
_DIGIT_ZERO = _LANES * np.uint64(ord("0"))
_TEN_UP = _LANES * np.uint64(0x76)
_INTEGER = re.compile(rb"-?[0-9]+(?:\.0+)?")
_LABEL_WORDS = [np.uint64(int.from_bytes(t, "little")) for t in (b"0.0", b"1.0")]


@dataclass(frozen=True)
class Layout:
    """How the fields of a Criteo file are laid out.

    Attributes:
        separator: ``"\\t"`` or ``","``.
        has_header: whether the first non-blank line names the columns.
        has_id: whether there is an ``Id`` column (Kaggle ``train.csv``).
        has_label: whether there is a ``label`` column.
        columns: canonical column names in file order, e.g.
            ``("label", "I1", ..., "I13", "C1", ..., "C26")``.
    """

    separator: str
    has_header: bool
    has_id: bool
    has_label: bool
    columns: tuple[str, ...]

    @property
    def num_fields(self) -> int:
        """How many fields every data line must have."""
        return len(self.columns)


TSV = Layout("\t", False, False, True, (LABEL, *_FEATURES))
TSV_UNLABELED = Layout("\t", False, False, False, _FEATURES)


@dataclass(frozen=True)
class ReadResult:
    """A whole file read by ``read_criteo``."""

    batch: RawBatch
    layout: Layout
    skipped: SkipCounter


def detect_layout(path: str | os.PathLike, fmt: str = "auto") -> Layout:
    """The layout of ``path``, read from its header or first non-blank line.

    ``fmt="auto"`` recognises a header naming ``[Id,] [label,] I1..I13,
    C1..C26`` in any case and order (tab or comma separated), or a headerless
    line of 40 tab-separated fields (labeled) or 39 (unlabeled). ``"tsv"``,
    ``"tsv-unlabeled"`` and ``"csv"`` force a layout; ``"csv"`` still reads the
    header to learn the column order.
    """
    path = _check_path(path)
    fmt = _check_fmt(fmt)
    first = _first_line(path)
    if first is None:
        raise ValueError(
            f"{path}: the file is empty (no non-blank line); expected a Criteo "
            f"header such as {_HEADER_EXAMPLE} or 39 or 40 tab-separated fields"
        )
    number, text = first
    if fmt == "tsv":
        return TSV
    if fmt == "tsv-unlabeled":
        return TSV_UNLABELED
    if fmt == "csv":
        return _header_layout(path, number, text, ",")

    separator = "\t" if "\t" in text else "," if "," in text else None
    fields = text.split(separator) if separator else [text]
    if separator and fields[0].strip().lower() in _CANONICAL:
        return _header_layout(path, number, text, separator)
    if separator == "\t" and len(fields) in (TSV.num_fields, TSV_UNLABELED.num_fields):
        return TSV if len(fields) == TSV.num_fields else TSV_UNLABELED
    raise ValueError(
        f"{path}:{number}: cannot tell the layout from {_quote(text, 60)}: found "
        f"{len(fields)} field(s) and no header; expected 40 tab-separated fields "
        f"(label, I1..I13, C1..C26), 39 (no label), or a header such as "
        f"{_HEADER_EXAMPLE}; or choose the layout with --format (fmt=...): "
        "tsv, tsv-unlabeled or csv"
    )


def iter_criteo(
    path: str | os.PathLike,
    fmt: str = "auto",
    on_bad_lines: str = "error",
    chunk_rows: int = 200_000,
    skipped: SkipCounter | None = None,
    workers: int = 1,
) -> Iterator[RawBatch]:
    """Batches of at most ``chunk_rows`` valid rows of a Criteo file, in order.

    A blank line holds nothing but spaces (and carriage returns); blank lines
    are ignored anywhere and not counted. Every other line is a row, so a line
    of tabs is a row of empty fields: 39 tabs make a 40-field row whose empty
    label makes it bad.

    A row is bad when its field count departs from the layout, or a field is
    not written as its column requires (ASCII only, no signs, spaces, exponents
    or digit separators):

    * label: ``0`` or ``1``, or ``0.0`` or ``1.0``;
    * ``I1..I13`` and ``Id``: empty (missing; not for ``Id``), or an optional
      ``-`` and digits, optionally followed by ``.`` and zeros (``260.0``);
      ``+5``, ``1e3``, ``2.5``, ``1_000``, `` 5`` and ``nan`` are bad;
    * ``C1..C26``: empty (missing), or 1 to 8 hex digits (``68fd1e64``,
      ``ABCDEF01``); ``0x12`` is bad.

    Under ``on_bad_lines="error"`` batches are yielded until the first batch
    holding a bad line; from there on the file is still scanned to the end,
    nothing more is yielded, and then a ``BadLinesError`` lists the first
    ``MAX_LISTED`` faults and the totals. Callers that must not see any row of
    a faulty file should use ``read_criteo``. Under ``"skip"`` bad lines are
    dropped and counted in ``skipped`` (each line once, under the reason of its
    first faulty column in the order Id, label, I1..I13, C1..C26).

    ``workers`` threads parse runs of lines at once (numpy releases the GIL
    for most of a parse); the batches and the faults reported are the same
    for any number of workers.

    Arguments are checked when this is called, not when iteration starts.
    """
    path, layout = _check_args(path, fmt, on_bad_lines, chunk_rows, skipped)
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers: expected an int, got {type(workers)}")
    if workers < 1:
        raise ValueError(f"workers: got {workers}; expected an int >= 1")
    return _iter_batches(path, layout, on_bad_lines, chunk_rows, skipped, workers)


def read_criteo(
    path: str | os.PathLike, fmt: str = "auto", on_bad_lines: str = "error"
) -> ReadResult:
    """The whole of a Criteo file as one batch; see ``iter_criteo``.

    Under ``on_bad_lines="error"`` a file with any bad line returns nothing:
    ``BadLinesError`` is raised once the whole file has been scanned. A missing
    path raises ``FileNotFoundError``, a folder ``IsADirectoryError``, and a
    pipe, device or socket ``ValueError``, each naming the path.
    """
    skipped = SkipCounter()
    path, layout = _check_args(path, fmt, on_bad_lines, 200_000, skipped)
    batches = list(_iter_batches(path, layout, on_bad_lines, 200_000, skipped))
    batch = RawBatch.concat(batches) if batches else _empty_batch(layout.has_label)
    return ReadResult(batch=batch, layout=layout, skipped=skipped)


def parse_frame(frame: pd.DataFrame, source: str = "<frame>") -> RawBatch:
    """Rows held in memory, validated like the lines of a file.

    Columns are found by name, in any case: ``I1..I13`` and ``C1..C26`` are
    required, ``label`` and ``Id`` optional, others are ignored. Values may be
    strings, numbers, or ``None``/``NaN`` for missing; strings must be written
    as in a file (see ``iter_criteo``), numbers must be integral. A sparse value
    is read as hex digits; an integer there (or an integral float) is read as the
    digits it is written with, which is what pandas makes of an all-digit hex
    column such as ``"00012345"``. A bad value raises ``BadLinesError`` whose
    line numbers are 1-based row positions; ids are the ``Id`` column, else the
    row positions.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame: expected a pandas DataFrame, got {type(frame)}")
    names = _frame_columns(frame)
    lines = np.arange(1, len(frame) + 1, dtype=np.int64)
    numbers = {
        name: _numbers_from_column(frame[column], name)
        for name, column in names.items()
        if name not in SPARSE_FEATURES
    }
    words, lengths = zip(
        *(_sparse_words_from_column(frame[names[c]]) for c in SPARSE_FEATURES),
        strict=True,
    )
    parsed = _Parsed(lines, numbers, np.stack(words, 1), np.stack(lengths, 1))

    def text(row: int, name: str) -> str:
        value = frame[names[name]].iloc[row]
        return "" if pd.isna(value) else str(value)

    batch, bad, columns = _validate(parsed)
    if bad.any():
        log = _FaultLog(source, fix="fix or drop those rows")
        log.add(lines, bad, columns, text)
        raise log.error()
    return batch


# --- reading a file ----------------------------------------------------------


@dataclass
class _Parsed:
    """``g`` rows parsed to numbers, not yet validated.

    ``numbers`` maps Id, label and I1..I13 (those present) to ``(values,
    present, written_ok)``: ``(g,)`` numbers (nan where not a number), a
    ``(g,)`` mask of non-empty fields, and a ``(g,)`` mask of fields written as
    the column requires. That is checked on the text, never left to a number
    parser, as Python's and pandas' take ``1e3``, `` +5`` or ``1_000``; a
    number (not text) in a frame passes.
    ``words`` ``(g, 26)`` holds the first 8 bytes of each sparse field as a
    little-endian uint64, ``lengths`` ``(g, 26)`` its length.
    """

    lines: np.ndarray
    numbers: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    words: np.ndarray
    lengths: np.ndarray


@dataclass
class _Lines:
    """The lines of one piece of a file, split into fields by byte offsets.

    ``good`` holds the numbers of the ``g`` lines with the layout's field
    count; ``starts`` and ``ends`` ``(g, num_fields)`` are the byte offsets of
    their fields in ``buf``. Lines with another field count are
    ``wrong_lines``, with ``wrong_counts`` fields; blank lines are in neither.
    """

    buf: np.ndarray
    good: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    wrong_lines: np.ndarray
    wrong_counts: np.ndarray
    header_seen: bool


def _iter_batches(
    path: str,
    layout: Layout,
    on_bad_lines: str,
    chunk_rows: int,
    skipped: SkipCounter | None,
    workers: int = 1,
) -> Iterator[RawBatch]:
    """The batches of ``iter_criteo``: parse piece by piece, apply the policy,
    and yield whenever ``chunk_rows`` lines have been read."""
    log = _FaultLog(path)
    local = SkipCounter()
    pending: list[RawBatch] = []
    rows = 0
    for piece, ends_batch in _parsed_pieces(path, layout, chunk_rows, workers):
        lines, parsed = piece.lines, piece.parsed
        if parsed is not None:
            batch, bad, columns = piece.batch, piece.bad, piece.columns
            if on_bad_lines == "error":
                log.add_wrong_counts(lines, layout.num_fields)
                log.add(parsed.lines, bad, columns, _file_text(lines, layout))
            else:
                for counter in (local, skipped):
                    if counter is not None:
                        _count_skipped(counter, lines, bad, columns)
                batch = batch.take(~bad.any(1)) if bad.any() else batch
            pending.append(batch)

        if log.total:  # "error" and a bad line seen: yield nothing more
            pending = []
        if ends_batch and pending:
            batch = RawBatch.concat(pending) if len(pending) > 1 else pending[0]
            pending = []
            if len(batch):
                rows += len(batch)
                yield batch

    if log.total:
        raise log.error()
    # Info, not warning: the caller chose "skip" and holds the counts.
    logger.info("%s: read %d rows; %s", path, rows, local.summary())


@dataclass
class _Piece:
    """One run of lines split, parsed and validated (see ``_validate``);
    ``parsed`` and the rest are ``None`` when the run holds no row."""

    lines: _Lines
    parsed: _Parsed | None = None
    batch: RawBatch | None = None
    bad: np.ndarray | None = None
    columns: tuple[str, ...] = ()


def _parse_piece(
    block: bytes, first_line: int, layout: Layout, header_pending: bool
) -> _Piece:
    lines = _split_lines(block, first_line, layout, header_pending)
    if not (len(lines.good) or len(lines.wrong_lines)):
        return _Piece(lines)
    parsed = _parse_lines(lines, layout)
    batch, bad, columns = _validate(parsed)
    return _Piece(lines, parsed, batch, bad, columns)


def _parsed_pieces(
    path: str, layout: Layout, chunk_rows: int, workers: int
) -> Iterator[tuple[_Piece, bool]]:
    """``(piece, ends_batch)`` for every run of ``_pieces``, in file order.

    Runs are parsed one by one until the header (if any) has been seen, as
    only then is each run's parse independent of the others; after that, with
    ``workers`` > 1, a thread pool parses up to ``2 * workers`` runs ahead.
    """
    runs = _pieces(path, chunk_rows)
    header_pending = layout.has_header
    for first_line, block, ends_batch in runs:
        piece = _parse_piece(block, first_line, layout, header_pending)
        header_pending = header_pending and not piece.lines.header_seen
        yield piece, ends_batch
        if workers > 1 and not header_pending:
            break
    else:
        return

    pool = ThreadPoolExecutor(workers, thread_name_prefix="criteo-parse")
    ahead: deque[tuple[Future, bool]] = deque()
    try:
        for first_line, block, ends_batch in runs:
            future = pool.submit(_parse_piece, block, first_line, layout, False)
            ahead.append((future, ends_batch))
            if len(ahead) >= 2 * workers:
                future, ends = ahead.popleft()
                yield future.result(), ends
        while ahead:
            future, ends = ahead.popleft()
            yield future.result(), ends
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pieces(path: str, chunk_rows: int) -> Iterator[tuple[int, bytes, bool]]:
    """``(first line number, bytes, ends_batch)`` of runs of whole lines.

    Each run ends with a newline (one is added at the end of the file when
    missing) and holds at most ``_PIECE_ROWS`` lines, which keeps the arrays
    of one parse within the CPU caches; ``ends_batch`` marks every run that
    ends a batch of ``chunk_rows`` lines (and the last one).
    """
    piece_rows = min(chunk_rows, _PIECE_ROWS)
    line, batch_left = 1, chunk_rows
    parts: list[bytes] = []
    with _open(path) as f:
        while True:
            data = _read(f, path)
            parts.append(data)
            if data and b"\n" not in data:
                continue  # inside a long line: join once it ends
            pending = b"".join(parts)
            if not data and pending and not pending.endswith(b"\n"):
                pending += b"\n"
            newlines = np.flatnonzero(np.frombuffer(pending, np.uint8) == _NL)

            start, used = 0, 0
            while used + min(piece_rows, batch_left) <= len(newlines):
                take = min(piece_rows, batch_left)
                cut = int(newlines[used + take - 1]) + 1
                batch_left -= take
                yield line, pending[start:cut], batch_left == 0
                batch_left = batch_left or chunk_rows
                line, used, start = line + take, used + take, cut
            if not data:  # the end: always close the last batch, even if empty
                yield line, pending[start:], True
                return
            parts = [pending[start:]]


def _split_lines(
    block: bytes, first_line: int, layout: Layout, header_pending: bool
) -> _Lines:
    """Find every line and field of ``block`` with numpy, without a row loop."""
    buf = np.frombuffer(block, np.uint8)
    ends_nl = np.flatnonzero(buf == _NL)
    after_cr = ends_nl[ends_nl > 0]
    crs = after_cr[buf[after_cr - 1] == _CR] - 1
    if len(crs):  # CRLF: drop the '\r' before each '\n'
        buf = np.delete(buf, crs)
    padded = np.zeros(len(buf) + 8, dtype=np.uint8)  # room for 8-byte reads
    padded[: len(buf)] = buf

    bounds = np.flatnonzero((buf == ord(layout.separator)) | (buf == _NL))
    nl_index = np.flatnonzero(buf[bounds] == _NL)
    ends_nl = bounds[nl_index]
    line_starts = np.zeros_like(ends_nl)
    line_starts[1:] = ends_nl[:-1] + 1
    counts = np.diff(nl_index, prepend=-1)  # fields per line
    numbers = first_line + np.arange(len(ends_nl), dtype=np.int64)

    content = ends_nl > line_starts
    for i in np.flatnonzero(content & (counts == 1)):  # one field: blank or bad
        text = buf[line_starts[i] : ends_nl[i]].tobytes()
        content[i] = bool(text.strip(_BLANK))
    header_seen = bool(header_pending and content.any())
    if header_seen:
        content[np.argmax(content)] = False
    fits = counts == layout.num_fields
    good, wrong = content & fits, content & ~fits

    offsets = np.arange(1 - layout.num_fields, 1)
    ends = bounds[nl_index[good][:, None] + offsets]  # (g, num_fields)
    starts = np.empty_like(ends)
    starts[:, 0] = line_starts[good]
    starts[:, 1:] = ends[:, :-1] + 1
    return _Lines(
        buf=padded,
        good=numbers[good],
        starts=starts,
        ends=ends,
        wrong_lines=numbers[wrong],
        wrong_counts=counts[wrong],
        header_seen=header_seen,
    )


def _parse_lines(lines: _Lines, layout: Layout) -> _Parsed:
    """Every field from its bytes, by one unaligned 8-byte gather per field:
    sparse words, labels, and the numbers of Id and I1..I13."""
    position = {name: i for i, name in enumerate(layout.columns)}
    lengths = lines.ends - lines.starts  # (g, num_fields)
    words_at = np.ndarray(
        shape=(len(lines.buf) - 7,), dtype="<u8", buffer=lines.buf, strides=(1,)
    )  # words_at[k]: the 8 bytes from offset k, unaligned

    sparse_at = [position[c] for c in SPARSE_FEATURES]
    words = words_at[lines.starts[:, sparse_at]]  # (g, 26)

    numbers = {}
    if LABEL in position:
        at = position[LABEL]
        numbers[LABEL] = _labels_from_words(
            words_at[lines.starts[:, at]], lengths[:, at]
        )
    columns = [(DENSE_FEATURES, np.float64)]
    if ID in position:
        columns.append(([ID], np.int64))
    for names, dtype in columns:
        at = [position[c] for c in names]
        starts, ends = lines.starts[:, at], lines.ends[:, at]  # (g, k)

        def field(i: int, starts=starts, ends=ends) -> bytes:
            return lines.buf[starts.flat[i] : ends.flat[i]].tobytes()

        values, written_ok = _integers_from_words(
            words_at[starts].ravel(), (ends - starts).ravel(), field, dtype
        )
        values = values.reshape(starts.shape)
        written_ok = written_ok.reshape(starts.shape)
        for j, name in enumerate(names):
            numbers[name] = (values[:, j], lengths[:, at[j]] > 0, written_ok[:, j])

    return _Parsed(
        lines=lines.good,
        numbers=numbers,
        words=words,
        lengths=lengths[:, sparse_at],
    )


def _file_text(lines: _Lines, layout: Layout):
    """A function giving the text of one field of a parsed line, for messages."""
    position = {name: i for i, name in enumerate(layout.columns)}

    def text(row: int, name: str) -> bytes:
        start = lines.starts[row, position[name]]
        end = lines.ends[row, position[name]]
        return lines.buf[start:end].tobytes()

    return text


# --- validation, shared by files and frames ----------------------------------


def _validate(parsed: _Parsed) -> tuple[RawBatch, np.ndarray, tuple[str, ...]]:
    """The batch of all parsed rows, and which of their columns are bad.

    Returns the batch (bad values replaced by missing ones), a ``(g, k)`` bool
    matrix of faults and the ``k`` column names it refers to, in the order Id,
    label, I1..I13, C1..C26 (those present).
    """
    g = len(parsed.lines)
    columns, faults = [], []

    ids = parsed.lines
    if ID in parsed.numbers:
        values, present, written_ok = parsed.numbers[ID]
        ids, bad = _check_ids(values, present)
        bad |= ~written_ok
        columns.append(ID)
        faults.append(bad)

    labels = None
    if LABEL in parsed.numbers:
        values, present, written_ok = parsed.numbers[LABEL]
        bad = ~present | ~written_ok | ((values != 0) & (values != 1))
        labels = np.where(bad, 0, values).astype(np.float32)
        columns.append(LABEL)
        faults.append(bad)

    dense = np.empty((g, NUM_DENSE), dtype=np.float64)
    for j, name in enumerate(DENSE_FEATURES):
        values, present, written_ok = parsed.numbers[name]
        values = values.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            integral = np.isfinite(values) & (values == np.floor(values))
        bad = present & ~(written_ok & integral)
        dense[:, j] = np.where(present & ~bad, values, np.nan)
        faults.append(bad)
    columns += DENSE_FEATURES

    keys, bad = _sparse_keys(parsed.words.reshape(-1), parsed.lengths.reshape(-1))
    faults += list(bad.reshape(g, NUM_SPARSE).T)
    columns += SPARSE_FEATURES

    batch = RawBatch(
        labels=labels,
        dense=dense,
        sparse=keys.reshape(g, NUM_SPARSE),
        ids=ids,
        lines=parsed.lines,
    )
    return batch, np.stack(faults, 1), tuple(columns)


def _check_ids(values: np.ndarray, present: np.ndarray):
    """``(g,)`` int64 ids and the mask of bad ones (missing or not integral)."""
    if values.dtype.kind in "iu":
        bad = ~present | (values > np.iinfo(np.int64).max)
        return np.where(bad, 0, values).astype(np.int64), bad
    values = values.astype(np.float64)
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(values) & (values == np.floor(values))
        bad = ~present | ~integral | (np.abs(values) >= 2.0**63)
    return np.where(bad, 0, values).astype(np.int64), bad


def _sparse_keys(words: np.ndarray, lengths: np.ndarray):
    """Keys of ``m`` hex fields, each given as its length and the little-endian
    uint64 of its first 8 bytes (any bytes past its end).

    Returns ``(m,)`` int64 keys, ``MISSING_KEY`` where a field is empty or bad,
    and the ``(m,)`` mask of bad fields (longer than 8, or not hex digits).
    """
    short = np.minimum(lengths, 8)
    keep = _KEEP[short]
    words = (words & keep) | (_ZEROS & ~keep)  # pad with "0" digits
    pairs = _HEX_PAIR[words.astype("<u8", copy=False).view("<u2")]  # (4 m,)
    bad = (lengths > 8) | (pairs.view(np.uint64) & _NOT_HEX_LANES != 0)

    keys = pairs.astype(np.uint8).view(">u4").astype(np.int64)  # (m,)
    keys >>= 4 * (8 - short)  # drop the padding digits
    keys[(lengths == 0) | bad] = MISSING_KEY
    return keys, bad


def _integers_from_words(
    words: np.ndarray, lengths: np.ndarray, field, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """``(values, written_ok)`` of ``(m,)`` fields given as in ``_sparse_keys``.

    A field is written ok when empty or ``-?[0-9]+(\\.0+)?`` (a number too big
    for ``dtype`` is not), and ``values`` then holds its number as ``dtype``
    (0 elsewhere). ``field(i)`` gives the bytes of field ``i``; only the rare
    fields past 8 bytes need it.
    """
    short = np.minimum(lengths, 8)
    keep = _KEEP_HIGH[short]
    not_digit = _lanes_not_digit(words) & keep
    written_ok = not_digit == 0  # the common case: digits only, or empty
    num_digits, negative = short.copy(), np.zeros(len(words), dtype=bool)
    odd = np.flatnonzero(~written_ok & (lengths <= 8))
    written_ok[odd], num_digits[odd], negative[odd] = _signed_or_pointed(
        words[odd], keep[odd], not_digit[odd]
    )
    num_digits[~written_ok] = 0

    # A sign takes the first lane; digits after a point are zeros.
    numbers = _digits_value(words >> (negative * _EIGHT), num_digits)
    numbers = numbers.astype(np.int64)
    numbers[negative] *= -1
    values = numbers.astype(dtype)
    values[~written_ok | (lengths == 0)] = 0
    for i in np.flatnonzero(lengths > 8):
        written_ok[i], values[i] = _long_integer(field(i), dtype)
    return values, written_ok


def _signed_or_pointed(words: np.ndarray, keep: np.ndarray, not_digit: np.ndarray):
    """``(written_ok, num_digits, negative)`` of fields of at most 8 bytes that
    hold a byte other than a digit; ``keep`` and ``not_digit`` are byte-lane
    masks. ``num_digits`` counts the digits before the point."""
    minus = _lanes_equal(words, b"-") & keep
    point = _lanes_equal(words, b".") & keep
    zeros = _lanes_equal(words, b"0") & keep
    digits = keep & ~not_digit
    after = keep & ~((point << _ONE) - _ONE)  # the lanes past the point
    tail_ok = (
        (((point >> _EIGHT) & digits) != 0)  # a digit just before the point
        & (after != 0)
        & ((after & ~zeros) == 0)  # and only zeros after it
    )
    written_ok = (
        ((not_digit & ~(minus | point)) == 0)  # nothing but digits, "-", "."
        & ((minus & ~_FIRST_LANE) == 0)  # a "-" comes first
        & ((point & (point - _ONE)) == 0)  # at most one "."
        & (digits != 0)
        & ((point == 0) | tail_ok)
    )
    negative = minus != 0
    before_point = np.bitwise_count(keep & (point - _ONE))  # all lanes if no point
    return written_ok, before_point.astype(np.int64) - negative, negative


def _digits_value(words: np.ndarray, num_digits: np.ndarray) -> np.ndarray:
    """The ``(m,)`` numbers that the first ``num_digits`` (0 to 8) byte lanes of
    ``words`` spell in ASCII digits, most significant first.

    The digits are shifted to the top lanes (zeros pad them in front), then
    neighbouring pairs, quads and halves are merged: 8 digits in 3 steps.
    """
    v = (words - _DIGIT_ZERO) & _KEEP[num_digits]  # lane values 0..9
    v <<= ((8 - num_digits) * 8).astype(np.uint64)
    v = (v * 10 + (v >> _EIGHT)) & np.uint64(0x00FF_00FF_00FF_00FF)
    v = (v * 100 + (v >> np.uint64(16))) & np.uint64(0x0000_FFFF_0000_FFFF)
    return (v * 10_000 + (v >> np.uint64(32))) & np.uint64(0xFFFF_FFFF)


def _long_integer(text: bytes, dtype) -> tuple[bool, float | int]:
    """``(written_ok, value)`` of one field longer than 8 bytes."""
    if _INTEGER.fullmatch(text) is None:
        return False, 0
    number = int(text.partition(b".")[0])
    if dtype == np.int64:
        fits = -(2**63) <= number < 2**63
        return fits, number if fits else 0
    try:
        return True, float(number)
    except OverflowError:  # past 1.8e308
        return False, 0


def _lanes_equal(words: np.ndarray, byte: bytes) -> np.ndarray:
    """Bit 7 set in each byte lane of ``words`` that equals ``byte``."""
    x = words ^ (_LANES * np.uint64(byte[0]))  # lanes: 0 where equal
    return ~(((x & _LOW7) + _LOW7) | x) & _HIGH


def _lanes_not_digit(words: np.ndarray) -> np.ndarray:
    """Bit 7 set in each byte lane of ``words`` that is not an ASCII digit."""
    x = words ^ _DIGIT_ZERO  # lanes: 0..9 for a digit
    return (((x & _LOW7) + _TEN_UP) | x) & _HIGH  # 10 + 0x76 carries to bit 7


def _labels_from_words(words: np.ndarray, lengths: np.ndarray):
    """``(values, present, written_ok)`` of ``(m,)`` label fields given as in
    ``_sparse_keys``: exactly ``0``, ``1``, ``0.0`` or ``1.0`` is written ok."""
    first = words & np.uint64(0xFF)
    three = words & np.uint64(0xFF_FFFF)
    one_byte = (first == ord("0")) | (first == ord("1"))
    with_point = (three == _LABEL_WORDS[0]) | (three == _LABEL_WORDS[1])
    written_ok = ((lengths == 1) & one_byte) | ((lengths == 3) & with_point)
    values = np.where(written_ok, first == ord("1"), np.nan)
    return values, lengths > 0, written_ok


def _numbers_from_column(column: pd.Series, name: str):
    """``(values, present, written_ok)`` of a frame column of numbers or text,
    ``None`` or nan or ``""`` for missing; values are nan where not a number,
    and text must be written as in a file (see ``_text_written_ok``)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        if column.dtype.kind in "iu" and not column.hasnans:
            values = column.to_numpy()  # exact, e.g. for a large Id
        return values, ~np.isnan(values.astype(np.float64)), np.ones(len(values), bool)

    values = column.to_numpy(dtype=object)
    missing = pd.isna(values)
    missing[~missing] = values[~missing] == ""  # not before: pd.NA == "" is NA
    values = np.where(missing, np.nan, values)
    return _to_numbers(values), ~missing, _text_written_ok(values, name)


def _text_written_ok(values: np.ndarray, name: str) -> np.ndarray:
    """Mask of the ``(m,)`` values of a frame column that are not text, or
    text written as a file's field of column ``name`` must be."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in ("string", "empty"):
        is_text = ~pd.isna(values)
    else:
        is_text = np.fromiter((isinstance(v, str) for v in values), bool, len(values))
    text = values[is_text]
    words = _words_from_text(text.astype(str))[0]
    # Lengths of the str objects: a numpy string array drops trailing NULs.
    lengths = np.fromiter(map(len, text), np.int64, len(text))

    def field(i: int) -> bytes:
        return text[i].encode("utf-8", errors="replace")

    ok = np.ones(len(values), dtype=bool)
    if name == LABEL:
        ok[is_text] = _labels_from_words(words, lengths)[2]
    else:
        ok[is_text] = _integers_from_words(words, lengths, field)[1]
    return ok


def _to_numbers(values: np.ndarray) -> np.ndarray:
    """An object array of numbers, numeric text and nan as int64 when all are
    integers, else float64 with nan where a value is not a number.

    numpy's own casts come first, as they are several times faster than
    ``pd.to_numeric``, which only a column holding a non-number reaches.
    """
    for dtype in (np.int64, np.float64):
        try:
            return values.astype(dtype)
        except (ValueError, TypeError, OverflowError):
            pass
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if numbers.dtype.kind in "iu":
        return numbers.to_numpy()
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def _sparse_words_from_column(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(words, lengths)`` of a frame column, as ``_sparse_keys`` takes them."""
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            # Past 1e18 no float is 8 digits long; keep the cast below in range.
            integral = (np.abs(values) < 1e18) & (values == np.floor(values))
        digits = np.where(integral, values, 0).astype(np.int64).astype(str)
        text = np.where(np.isnan(values), "", np.where(integral, digits, "?"))
    else:
        text = column.astype(object).where(column.notna(), "").astype(str)
        text = text.to_numpy().astype(str)
    return _words_from_text(text)


def _words_from_text(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(words, lengths)`` of ``(m,)`` strings, as ``_sparse_keys`` takes them;
    a non-ASCII character becomes ``?``, which no check accepts."""
    lengths = np.strings.str_len(text).astype(np.int64)
    raw = np.strings.encode(text, "ascii", "replace").astype("S8")
    return np.frombuffer(raw.tobytes(), dtype="<u8").copy(), lengths


def _count_skipped(
    counter: SkipCounter, lines: _Lines, bad: np.ndarray, columns: tuple[str, ...]
) -> None:
    """Count each bad line once, under the reason of its first faulty column."""
    counter.add("field_count", len(lines.wrong_lines))
    if not bad.any():
        return
    first = bad[bad.any(1)].argmax(1)
    counts = np.bincount(first, minlength=len(columns))
    for column, count in zip(columns, counts, strict=True):
        counter.add(_reason(column), int(count))


def _reason(column: str) -> str:
    if column == LABEL:
        return "bad_label"
    if column in SPARSE_FEATURES:
        return "bad_sparse_value"
    return "not_integer"


def _detail(column: str, text: str | bytes) -> str:
    if column == LABEL:
        return f"{_quote(text)} is not 0 or 1" if text else "missing; expected 0 or 1"
    if column in SPARSE_FEATURES:
        return f"{_quote(text)} is not 1 to 8 hex digits"
    if not text:
        return "missing; expected an integer"
    return f"{_quote(text)} is not an integer"


class _FaultLog(FaultLog):
    """Faults of the Criteo byte reader, from its parsed pieces."""

    def add(self, lines: np.ndarray, bad: np.ndarray, columns, text) -> None:
        """Count the faults ``bad`` ``(g, k)`` of the parsed ``lines``; ``text``
        gives the text of a field for the message."""
        if not bad.any():
            return
        rows, cols = np.nonzero(bad)  # row-major: by line, then column
        listed = []
        for row, col in zip(rows[:MAX_LISTED], cols[:MAX_LISTED], strict=True):
            name = columns[col]
            detail = _detail(name, text(row, name))
            listed.append(
                BadLine(self.path, int(lines[row]), name, _reason(name), detail)
            )
        self.record(int(bad.any(1).sum()), len(rows), listed)

    def add_wrong_counts(self, split: _Lines, num_fields: int) -> None:
        """Count the lines of ``split`` whose field count is wrong."""
        wrong = zip(split.wrong_lines, split.wrong_counts, strict=True)
        listed = [
            BadLine(
                self.path,
                int(line),
                None,
                "field_count",
                f"expected {num_fields} fields, found {count}",
            )
            for line, count in itertools.islice(wrong, MAX_LISTED)
        ]
        self.record(len(split.wrong_lines), len(split.wrong_lines), listed)


# --- small helpers -----------------------------------------------------------


def _check_args(
    path: str | os.PathLike,
    fmt: str,
    on_bad_lines: str,
    chunk_rows: int,
    skipped: SkipCounter | None,
) -> tuple[str, Layout]:
    """The path as a string and the file's layout, after checking every argument."""
    path = _check_path(path)
    fmt = _check_fmt(fmt)
    check_read_options(on_bad_lines, chunk_rows, skipped)
    return path, detect_layout(path, fmt)


def _check_path(path: str | os.PathLike) -> str:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path)}")
    name = os.fspath(path)
    try:
        mode = os.stat(name).st_mode
    except (FileNotFoundError, NotADirectoryError) as err:
        raise FileNotFoundError(f"path: no such file: {name}") from err
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"path: {name}: is a folder, expected a file")
    if not stat.S_ISREG(mode):
        # The layout is read from the first line before the data, so the file
        # is opened twice, which a stream cannot serve.
        raise ValueError(
            f"path: {name}: is a {_file_kind(mode)}, expected a regular file; "
            "save the data to a file and pass that"
        )
    return name


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def _check_fmt(fmt: object) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"fmt: got {fmt!r}; accepted: {', '.join(FORMATS)}")
    return fmt


def _open(path: str) -> BinaryIO:
    """The file for reading bytes, gunzipped when it starts with gzip magic."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def _read(f: BinaryIO, path: str, size: int = _READ_SIZE) -> bytes:
    try:
        return f.read(size)
    except _GZIP_ERRORS as err:
        raise ValueError(f"{path}: not a readable gzip stream: {err}") from err


def _first_line(path: str) -> tuple[int, str] | None:
    """``(number, text)`` of the first non-blank line, or ``None``; bytes that
    are not UTF-8 are kept as surrogates, which ``_quote`` shows as ``\\xNN``."""
    with _open(path) as f:
        try:
            for number, raw in enumerate(f, start=1):
                line = raw.removesuffix(b"\n").removesuffix(b"\r")
                if line.strip(_BLANK):
                    text = line.decode("utf-8", errors="surrogateescape")
                    return number, text.removeprefix("\ufeff")
        except _GZIP_ERRORS as err:
            raise ValueError(f"{path}: not a readable gzip stream: {err}") from err
    return None


def _header_layout(path: str, number: int, text: str, separator: str) -> Layout:
    """The layout a header line names; ValueError when it is not a header."""
    names = [n.strip().lower() for n in text.split(separator)]
    unknown = [n for n in names if n not in _CANONICAL]
    columns = tuple(_CANONICAL.get(n, n) for n in names)
    missing = [c for c in _FEATURES if c not in columns]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    problem = (
        f"unknown column names {_quote_list(unknown)}"
        if unknown
        else f"repeated columns {repeated}"
        if repeated
        else f"missing columns {missing}"
        if missing
        else None
    )
    if problem:
        raise ValueError(
            f"{path}:{number}: not a Criteo header ({problem}) in {_quote(text, 60)}; "
            f"expected {_HEADER_EXAMPLE}, 'label,I1,...,C26' or 'Id,I1,...,C26'"
        )
    return Layout(separator, True, ID in columns, LABEL in columns, columns)


def _frame_columns(frame: pd.DataFrame) -> dict[str, object]:
    """Canonical name -> frame column label, matched case-insensitively."""
    found: dict[str, object] = {}
    for label in frame.columns:
        name = _CANONICAL.get(str(label).strip().lower())
        if name is None:
            continue
        if name in found:
            raise ValueError(
                f"frame: columns {found[name]!r} and {label!r} both name {name}; "
                "keep one"
            )
        found[name] = label
    missing = [c for c in _FEATURES if c not in found]
    if missing:
        raise ValueError(
            f"frame: missing columns {missing}; expected I1..I13 and C1..C26 "
            "(any case), with optional label and Id"
        )
    return found


def _empty_batch(labeled: bool) -> RawBatch:
    return RawBatch(
        labels=np.empty(0, dtype=np.float32) if labeled else None,
        dense=np.empty((0, NUM_DENSE), dtype=np.float64),
        sparse=np.empty((0, NUM_SPARSE), dtype=np.int64),
        ids=np.empty(0, dtype=np.int64),
        lines=np.empty(0, dtype=np.int64),
    )


def _quote(text: str | bytes, width: int = 40) -> str:
    """``text`` quoted for a message, safe to print on a terminal: control and
    other non-printable characters and bytes that are not UTF-8 are escaped as
    in a Python literal (``'ab\\x00'``, ``'caf\\xe9'``), and the text is cut
    after ``width`` characters (``'abc'...``)."""
    if isinstance(text, bytes):
        text = text[: 4 * width + 4].decode("utf-8", errors="surrogateescape")
    body = "".join(map(_escape, text[:width]))
    return f"'{body}'" + ("..." if len(text) > width else "")


def _escape(char: str) -> str:
    if "\udc80" <= char <= "\udcff":  # an undecodable byte, by surrogateescape
        return f"\\x{ord(char) - 0xDC00:02x}"
    if char == "'":
        return "\\'"
    if char.isprintable() and char != "\\":
        return char
    return repr(char)[1:-1]  # \t, \x1b, \u202e, \\


def _quote_list(names: list[str], most: int = 5) -> str:
    shown = ", ".join(_quote(n, 20) for n in names[:most])
    return f"[{shown}{', ...' if len(names) > most else ''}]"
