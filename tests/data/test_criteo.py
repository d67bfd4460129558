import gzip
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data import criteo
from data.bad_lines import BadLinesError, SkipCounter
from data.criteo import (
    TSV,
    TSV_UNLABELED,
    detect_layout,
    iter_criteo,
    parse_frame,
    read_criteo,
)
from data.schema import DENSE_FEATURES, LABEL, MISSING_KEY, SPARSE_FEATURES

REAL = Path(__file__).parents[2].parent / "shared/data/criteo"

DENSE = ["1", "-1", "260.0", "", "9223372036854775807", "0", "-2"]
DENSE += ["3", "", "5", "6", "", "13"]
NAN = float("nan")
DENSE_VALUES = [1, -1, 260, NAN, 9.223372036854776e18, 0, -2, 3, NAN, 5, 6, NAN, 13]
SPARSE = ["68fd1e64", "", "0", "ABCDEF01", "1f"] + ["a73ee510"] * 21
SPARSE_KEYS = [0x68FD1E64, MISSING_KEY, 0, 0xABCDEF01, 0x1F] + [0xA73EE510] * 21
HEADER = ",".join(["Id", "Label", *DENSE_FEATURES, *SPARSE_FEATURES])


def row(label="1", dense=DENSE, sparse=SPARSE, sep="\t", id=None) -> str:
    fields = ([] if id is None else [str(id)]) + ([] if label is None else [label])
    return sep.join(fields + list(dense) + list(sparse))


def write(path: Path, lines: list[str], end: str = "\n", gz: bool = False) -> Path:
    data = "".join(line + end for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def row_with(column: str, value: str | bytes) -> bytes:
    """A labeled TSV line like ``row()``, with the raw ``value`` in ``column``."""
    fields = [f.encode() for f in row().split("\t")]
    fields[TSV.columns.index(column)] = (
        value if isinstance(value, bytes) else value.encode()
    )
    return b"\t".join(fields)


def write_raw(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def assert_first_row(batch, label=1.0):
    np.testing.assert_array_equal(batch.dense[0], DENSE_VALUES)
    np.testing.assert_array_equal(batch.sparse[0], SPARSE_KEYS)
    if label is None:
        assert batch.labels is None
    else:
        assert batch.labels.dtype == np.float32 and batch.labels[0] == label


# --- layouts -----------------------------------------------------------------


def test_tsv_labeled(tmp_path):
    path = write(tmp_path / "d.txt", [row("1"), row("0", sparse=[""] * 26)])
    result = read_criteo(path)

    assert result.layout == TSV and result.skipped.total == 0
    batch = result.batch
    assert_first_row(batch)
    assert batch.labels.tolist() == [1.0, 0.0]
    assert (batch.sparse[1] == MISSING_KEY).all()
    assert batch.lines.tolist() == [1, 2] and batch.ids.tolist() == [1, 2]
    assert batch.dense.dtype == np.float64 and batch.sparse.dtype == np.int64


def test_tsv_unlabeled(tmp_path):
    path = write(tmp_path / "test.txt", [row(None), row(None)])
    result = read_criteo(path)

    assert result.layout == TSV_UNLABELED
    assert_first_row(result.batch, label=None)
    assert len(result.batch) == 2


def test_csv_with_id_and_label(tmp_path):
    lines = [HEADER, row("0", sep=",", id=10000083), row("1", sep=",", id=10000088)]
    result = read_criteo(write(tmp_path / "train.csv", lines))

    layout = result.layout
    assert (layout.separator, layout.has_header, layout.has_id) == (",", True, True)
    assert layout.columns[:3] == ("Id", LABEL, "I1")
    assert_first_row(result.batch, label=0.0)
    assert result.batch.ids.tolist() == [10000083, 10000088]
    assert result.batch.lines.tolist() == [2, 3]  # the header is line 1


def test_csv_header_names_any_case_without_id(tmp_path):
    header = ",".join(["LABEL", *(c.lower() for c in DENSE_FEATURES + SPARSE_FEATURES)])
    result = read_criteo(write(tmp_path / "s.csv", [header, row("1", sep=",")]))

    assert not result.layout.has_id and result.layout.has_label
    assert_first_row(result.batch)
    assert result.batch.ids.tolist() == [2]


def test_csv_unlabeled_with_id(tmp_path):
    header = ",".join(["id", *DENSE_FEATURES, *SPARSE_FEATURES])
    result = read_criteo(write(tmp_path / "t.csv", [header, row(None, sep=",", id=7)]))

    assert result.layout.has_id and not result.layout.has_label
    assert_first_row(result.batch, label=None)
    assert result.batch.ids.tolist() == [7]


def test_csv_columns_in_another_order(tmp_path):
    names = [*SPARSE_FEATURES, *DENSE_FEATURES, "label"]
    line = ",".join([*SPARSE, *DENSE, "1"])
    result = read_criteo(write(tmp_path / "o.csv", [",".join(names), line]))
    assert_first_row(result.batch)


def test_tsv_with_header_and_csv_with_byte_order_mark(tmp_path):
    header = "\t".join([LABEL, *DENSE_FEATURES, *SPARSE_FEATURES])
    result = read_criteo(write(tmp_path / "h.txt", [header, row()]))
    assert result.layout.has_header and result.layout.separator == "\t"
    assert result.batch.lines.tolist() == [2]

    result = read_criteo(
        write(tmp_path / "bom.csv", ["\ufeff" + HEADER, row(sep=",", id=3)])
    )
    assert result.layout.has_id and result.batch.ids.tolist() == [3]


def test_forced_formats(tmp_path):
    path = write(tmp_path / "d.txt", [row("1")])
    assert detect_layout(path, "tsv") == TSV
    assert detect_layout(path, "tsv-unlabeled") == TSV_UNLABELED
    with pytest.raises(ValueError, match=r"d.txt:1: not a Criteo header"):
        detect_layout(path, "csv")
    # Forced unlabeled, a 40-field line is a bad line, not a layout error.
    with pytest.raises(BadLinesError, match="expected 39 fields, found 40"):
        read_criteo(path, fmt="tsv-unlabeled")


def test_bad_fmt_names_value_and_accepted(tmp_path):
    path = write(tmp_path / "d.txt", [row()])
    with pytest.raises(ValueError, match=r"fmt: got 'parquet'; accepted: auto, tsv"):
        detect_layout(path, "parquet")
    with pytest.raises(ValueError, match="fmt: got 'TSV'"):
        iter_criteo(path, fmt="TSV")


@pytest.mark.parametrize("lines", [[], ["", "", ""]])
def test_empty_file(tmp_path, lines):
    path = write(tmp_path / "empty.txt", lines)
    with pytest.raises(ValueError, match=r"empty.txt: the file is empty"):
        detect_layout(path)


def test_unrecognisable_first_line(tmp_path):
    path = write(tmp_path / "odd.txt", ["a\tb\tc"])
    with pytest.raises(ValueError, match=r"odd.txt:1: cannot tell the layout.*found 3"):
        detect_layout(path)
    with pytest.raises(
        ValueError,
        match=r"or choose the layout with --format \(fmt=\.\.\.\): tsv, "
        r"tsv-unlabeled or csv$",
    ):
        detect_layout(path)
    path = write(tmp_path / "odd.csv", ["Id,Label,I1,I2"])
    with pytest.raises(ValueError, match=r"missing columns \['I3'"):
        detect_layout(path)


def test_header_only_csv_reads_no_rows(tmp_path):
    result = read_criteo(write(tmp_path / "h.csv", [HEADER]))
    assert len(result.batch) == 0 and result.batch.labels is not None


# --- encodings and line handling ---------------------------------------------


def test_gzip_by_magic_bytes_not_extension(tmp_path):
    plain = read_criteo(write(tmp_path / "d.txt", [row(), row("0")])).batch
    for name in ("d.txt.gz", "no_extension.txt"):
        batch = read_criteo(write(tmp_path / name, [row(), row("0")], gz=True)).batch
        np.testing.assert_array_equal(batch.sparse, plain.sparse)
        np.testing.assert_array_equal(batch.labels, plain.labels)


def test_crlf(tmp_path):
    lines = [HEADER, row(sep=",", id=1), row("0", sep=",", id=2)]
    batch = read_criteo(write(tmp_path / "w.csv", lines, end="\r\n")).batch
    assert_first_row(batch)
    assert batch.sparse[1, -1] == 0xA73EE510  # no '\r' left in the last field


def test_blank_lines_are_skipped_and_lines_keep_their_numbers(tmp_path):
    lines = ["", HEADER, "", row(sep=",", id=1), "", "", row("0", sep=",", id=2)]
    path = write(tmp_path / "b.csv", lines + ["", ""])
    result = read_criteo(path)

    assert result.skipped.total == 0
    assert result.batch.lines.tolist() == [4, 7]
    assert result.batch.ids.tolist() == [1, 2]


def test_last_line_without_newline(tmp_path):
    path = tmp_path / "n.txt"
    path.write_text(row("1") + "\n" + row("0"))
    assert read_criteo(path).batch.labels.tolist() == [1.0, 0.0]


def test_small_chunks_give_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(criteo, "_PIECE_ROWS", 2)  # several pieces per batch
    lines = [row(str(i % 2), sparse=[f"{i:x}"] * 26) for i in range(11)]
    path = write(tmp_path / "c.txt", lines[:4] + [""] + lines[4:])

    batches = list(iter_criteo(path, chunk_rows=5))
    assert [len(b) for b in batches] == [4, 5, 2]  # 5 lines each, one blank
    lines_read = np.concatenate([b.lines for b in batches])
    assert lines_read.tolist() == [1, 2, 3, 4, *range(6, 13)]
    keys = np.concatenate([b.sparse[:, 0] for b in batches])
    assert keys.tolist() == list(range(11))


@pytest.mark.parametrize("header", [False, True])
def test_parser_threads_give_the_same_batches_and_faults(tmp_path, monkeypatch, header):
    monkeypatch.setattr(criteo, "_PIECE_ROWS", 3)  # many pieces, parsed ahead
    sep = "," if header else "\t"
    lines = [row(str(i % 2), sparse=[f"{i:x}"] * 26, sep=sep) for i in range(40)]
    lines[17] = row("2", sep=sep)  # a bad label
    lines = ([HEADER.replace("Id,", "")] if header else []) + lines
    path = write(tmp_path / "c.txt", lines)

    def read(workers, on_bad_lines):
        skipped = SkipCounter()
        it = iter_criteo(path, "auto", on_bad_lines, 7, skipped, workers=workers)
        return list(it), skipped.counts

    one, counts = read(1, "skip")
    for workers in (2, 3):
        many, many_counts = read(workers, "skip")
        assert [b.lines.tolist() for b in many] == [b.lines.tolist() for b in one]
        for a, b in zip(one, many, strict=True):
            np.testing.assert_array_equal(a.sparse, b.sparse)
            np.testing.assert_array_equal(a.dense, b.dense)
        assert many_counts == counts == {"bad_label": 1}
        with pytest.raises(BadLinesError) as info:
            read(workers, "error")
        assert [b.line for b in info.value.bad_lines] == [18 + header]
    with pytest.raises(ValueError, match="workers: got 0"):
        iter_criteo(path, workers=0)


def test_iter_checks_arguments_at_call_time(tmp_path):
    path = write(tmp_path / "d.txt", [row()])
    with pytest.raises(ValueError, match="on_bad_lines: got 'ignore'"):
        iter_criteo(path, on_bad_lines="ignore")
    with pytest.raises(ValueError, match="chunk_rows: got 0"):
        iter_criteo(path, chunk_rows=0)
    with pytest.raises(TypeError, match="skipped: expected a SkipCounter"):
        iter_criteo(path, skipped={})
    with pytest.raises(FileNotFoundError, match="no such file: .*missing.txt"):
        iter_criteo(tmp_path / "missing.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_criteo(tmp_path / "missing.txt")


def test_lines_of_spaces_are_blank(tmp_path):
    lines = [
        "   ",
        HEADER,
        " \r",
        row(sep=",", id=1),
        "",
        "    ",
        row("0", sep=",", id=2),
    ]
    result = read_criteo(write(tmp_path / "s.csv", lines + [" "], end="\r\n"))
    assert result.skipped.total == 0
    assert result.batch.lines.tolist() == [4, 7]

    result = read_criteo(write(tmp_path / "s.txt", ["  ", row(), " ", row("0")]))
    assert result.layout == TSV and result.batch.lines.tolist() == [2, 4]

    path = write(tmp_path / "spaces.txt", [" ", "  \r", ""])
    with pytest.raises(ValueError, match=r"spaces.txt: the file is empty"):
        detect_layout(path)


def test_a_line_with_a_tab_is_a_row_not_blank(tmp_path):
    # 39 tabs make 40 empty fields: a full row whose empty label is bad.
    path = write(tmp_path / "t.txt", [row(), "\t" * 39, "\t", " \t "])
    with pytest.raises(BadLinesError) as info:
        read_criteo(path)
    assert [str(b).split(": ", 1)[1] for b in info.value.bad_lines] == [
        "column label: missing; expected 0 or 1",
        "expected 40 fields, found 2",
        "expected 40 fields, found 2",
    ]
    path = write(tmp_path / "t.csv", [HEADER, row(sep=",", id=1), "\t"])
    with pytest.raises(BadLinesError, match=r"t.csv:3: expected 41 fields, found 1"):
        read_criteo(path)


def test_path_must_be_a_regular_file(tmp_path):
    for call in (read_criteo, iter_criteo, detect_layout):
        with pytest.raises(IsADirectoryError, match=r": is a folder, expected a file"):
            call(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no such file: .*d.txt/inner"):
        read_criteo(write(tmp_path / "d.txt", [row()]) / "inner")

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)  # never opened: a read would block
    with pytest.raises(
        ValueError,
        match=r"pipe: is a pipe, expected a regular file; save the data to a file",
    ):
        read_criteo(pipe)
    if Path("/dev/null").exists():
        with pytest.raises(ValueError, match=r"/dev/null: is a device, expected a"):
            iter_criteo("/dev/null")


# --- bad lines -----------------------------------------------------------------


def faulty_file(tmp_path: Path) -> Path:
    """Eight lines: 3 has 39 fields, 5 has 'abc' in I5, 7 has label 2."""
    abc = DENSE[:4] + ["abc"] + DENSE[5:]
    lines = [row("1"), row("0"), row(None), row("1"), row("0", dense=abc)]
    lines += [row("1"), row("2"), row("0")]
    return write(tmp_path / "data.txt", lines)


def test_error_names_every_bad_line(tmp_path):
    expected = (
        r"found 3 bad lines:\n"
        r".*data.txt:3: expected 40 fields, found 39\n"
        r".*data.txt:5: column I5: 'abc' is not an integer\n"
        r".*data.txt:7: column label: '2' is not 0 or 1\n"
        r"total: 3 bad lines; use --on-bad-lines skip to drop them"
    )
    with pytest.raises(BadLinesError, match=expected) as info:
        read_criteo(faulty_file(tmp_path))
    assert [b.line for b in info.value.bad_lines] == [3, 5, 7]
    assert [b.reason for b in info.value.bad_lines] == [
        "field_count",
        "not_integer",
        "bad_label",
    ]


def test_skip_returns_the_good_rows_and_counts_by_reason(tmp_path, caplog):
    skipped = SkipCounter()
    with caplog.at_level(logging.INFO, logger="data.criteo"):
        batches = list(
            iter_criteo(faulty_file(tmp_path), on_bad_lines="skip", skipped=skipped)
        )

    assert [b.lines.tolist() for b in batches] == [[1, 2, 4, 6, 8]]
    assert batches[0].labels.tolist() == [1, 0, 1, 1, 0]
    assert_first_row(batches[0])  # the text path keeps good values right
    np.testing.assert_array_equal(batches[0].dense[-1], DENSE_VALUES)
    assert skipped.counts == {"field_count": 1, "not_integer": 1, "bad_label": 1}
    assert "skipped 3 bad lines: field_count 1, not_integer 1, bad_label 1" in (
        caplog.text
    )
    result = read_criteo(faulty_file(tmp_path), on_bad_lines="skip")
    assert result.skipped.counts == skipped.counts
    np.testing.assert_array_equal(result.batch.lines, [1, 2, 4, 6, 8])


def test_error_yields_batches_before_the_first_bad_one_then_raises(tmp_path):
    batches = []
    with pytest.raises(BadLinesError, match="data.txt:3:"):
        for batch in iter_criteo(faulty_file(tmp_path), chunk_rows=2):
            batches.append(batch)
    assert [b.lines.tolist() for b in batches] == [[1, 2]]


@pytest.mark.parametrize(
    ("dense", "sparse", "label", "column", "detail"),
    [
        (DENSE[:2] + ["2.5"] + DENSE[3:], SPARSE, "1", "I3", "'2.5' is not an"),
        (DENSE[:2] + ["inf"] + DENSE[3:], SPARSE, "1", "I3", "'inf' is not an"),
        (DENSE, ["xyz00000"] + SPARSE[1:], "1", "C1", "'xyz00000' is not 1 to 8"),
        (DENSE, ["123456789"] + SPARSE[1:], "1", "C1", "'123456789' is not 1"),
        (DENSE, SPARSE, "", "label", "missing; expected 0 or 1"),
        (DENSE, SPARSE, "yes", "label", "'yes' is not 0 or 1"),
    ],
)
def test_each_kind_of_bad_value(tmp_path, dense, sparse, label, column, detail):
    path = write(tmp_path / "d.txt", [row(), row(label, dense, sparse)])
    with pytest.raises(BadLinesError, match=f"d.txt:2: column {column}: {detail}"):
        read_criteo(path)


def test_wrong_field_counts_and_odd_bytes(tmp_path):
    lines = [row(), row() + "\textra", row(sparse=["\xe9"] + SPARSE[1:]), row("1.0")]
    with pytest.raises(BadLinesError) as info:
        read_criteo(write(tmp_path / "d.txt", lines))
    assert [str(b).split(": ", 1)[1] for b in info.value.bad_lines] == [
        "expected 40 fields, found 41",
        "column C1: '\xe9' is not 1 to 8 hex digits",
    ]  # and label 1.0 counts as 1


def test_line_with_several_faults_counts_once(tmp_path):
    abc = ["abc"] + DENSE[1:]
    path = write(tmp_path / "d.txt", [row(), row("7", abc, ["zz"] + SPARSE[1:])])

    with pytest.raises(BadLinesError) as info:
        read_criteo(path)
    assert info.value.total == 1 and info.value.num_faults == 3
    assert [b.column for b in info.value.bad_lines] == ["label", "I1", "C1"]
    assert "total: 1 bad line (3 faults)" in str(info.value)

    result = read_criteo(path, on_bad_lines="skip")
    assert result.skipped.counts == {"bad_label": 1}  # the first faulty column
    assert len(result.batch) == 1


def test_more_than_a_hundred_bad_lines(tmp_path):
    lines = [row()] + [row(None)] * 60 + [row("2")] * 60 + [row()]
    with pytest.raises(BadLinesError) as info:
        list(iter_criteo(write(tmp_path / "d.txt", lines), chunk_rows=7))

    err = info.value
    assert err.total == 120 and len(err.bad_lines) == 100
    assert [b.line for b in err.bad_lines] == list(range(2, 102))
    message = str(err).splitlines()
    assert len(message) == 1 + 100 + 2
    assert message[-2] == "... and 20 more"
    assert message[-1].startswith("total: 120 bad lines;")


def test_bad_id(tmp_path):
    lines = [HEADER, row(sep=",", id=1), row(sep=",", id="x"), row(sep=",", id="")]
    with pytest.raises(BadLinesError, match=r"(?s):3: column Id: 'x' is not.*:4: "):
        read_criteo(write(tmp_path / "i.csv", lines))


REJECTED = {
    "not_integer": ["1_000", "+5", " 5", "5 ", "\u0663", "\uff15", "1e3", "1E3"]
    + ["0x10", "nan", "inf", "5.", ".0", "-.0", "-", "5-", "--5", "1.0.0", "1.5"]
    + ["123456789.5", "+123456789", "9" * 400],  # past 8 bytes, and past 1e308
    "bad_label": ["+1", "0_0", "\u0661", " 1", "1 ", "00", "-0", "1.00", "1.", "2"],
    "bad_sparse_value": ["0x12", "0XAB", b"caf\xe9", b"caf\xc3", b"ab\xe9cd"]
    + ["a\x00b", " ab", "abcdefg", "abcdef0-", "\uff21"],
}
COLUMN_OF = {"not_integer": "I3", "bad_label": LABEL, "bad_sparse_value": "C1"}


@pytest.mark.parametrize(
    ("reason", "value"), [(r, v) for r, values in REJECTED.items() for v in values]
)
def test_values_the_rules_reject(tmp_path, reason, value):
    column = COLUMN_OF[reason]
    path = write_raw(
        tmp_path / "d.txt", [row_with(column, b"1"), row_with(column, value)]
    )
    with pytest.raises(BadLinesError) as info:
        read_criteo(path)
    (bad,) = info.value.bad_lines
    assert (bad.line, bad.column, bad.reason) == (2, column, reason)

    result = read_criteo(path, on_bad_lines="skip")
    assert result.skipped.counts == {reason: 1} and result.batch.lines.tolist() == [1]


@pytest.mark.parametrize(
    ("column", "value", "detail"),
    [
        ("I3", "1e3", "'1e3' is not an integer"),
        ("I3", " 5", "' 5' is not an integer"),
        ("I3", "\uff15", "'\uff15' is not an integer"),
        (LABEL, "+1", "'+1' is not 0 or 1"),
        ("C1", "0x12", "'0x12' is not 1 to 8 hex digits"),
        ("C1", b"caf\xe9", "'caf\\xe9' is not 1 to 8 hex digits"),
        ("C1", b"caf\xc3\xa9", "'caf\xe9' is not 1 to 8 hex digits"),  # UTF-8
    ],
)
def test_rejected_value_messages(tmp_path, column, value, detail):
    path = write_raw(tmp_path / "d.txt", [row_with(column, value)])
    with pytest.raises(
        BadLinesError, match=re.escape(f"d.txt:1: column {column}: {detail}")
    ):
        read_criteo(path)


def test_values_the_rules_accept(tmp_path):
    dense = ["-0", "007", "260.0", "-12.000", "12345678", "123456789", "-1234567.0"]
    dense += ["99999999999999999999", "0.0", "", "-99999999", "1.0000000000", "5"]
    expected = [0, 7, 260, -12, 12345678, 123456789, -1234567, 1e20, 0, NAN]
    expected += [-99999999, 1, 5]
    sparse = ["aBcD", "0", "fFfFfFfF", "00000000", "", "1"] + ["a73ee510"] * 20
    labels = ["0", "1", "0.0", "1.0"]
    lines = [row(label, dense, sparse) for label in labels]
    batch = read_criteo(write(tmp_path / "d.txt", lines)).batch

    assert batch.labels.tolist() == [0, 1, 0, 1]
    np.testing.assert_array_equal(batch.dense[0], expected)
    assert batch.sparse[0, :6].tolist() == [0xABCD, 0, 0xFFFFFFFF, 0, MISSING_KEY, 1]


def test_ids_are_exact_and_strict(tmp_path):
    ids = [
        "9223372036854775807",
        "10000083.0",
        "-3",
        "+5",
        "1e3",
        "9223372036854775808",
    ]
    lines = [HEADER] + [row(sep=",", id=i) for i in ids]
    result = read_criteo(write(tmp_path / "i.csv", lines), on_bad_lines="skip")
    assert result.batch.ids.tolist() == [2**63 - 1, 10000083, -3]
    assert result.skipped.counts == {"not_integer": 3}


def test_integers_match_a_reference_parser(tmp_path):
    # Random text in I1..I13 (mostly well formed), against a regex and int().
    rng = np.random.default_rng(0)
    alphabet = list("0123456789-.e+ ") + ["\u0663"]

    def value() -> str:
        if rng.random() < 0.2:
            return "".join(rng.choice(alphabet, rng.integers(0, 11)))
        sign = "-" if rng.random() < 0.3 else ""
        digits = "".join(rng.choice(list("0123456789"), rng.integers(1, 13)))
        return sign + digits + ("." + "0" * rng.integers(0, 3)) * (rng.random() < 0.3)

    rows = [[value() for _ in DENSE_FEATURES] for _ in range(3000)]
    path = write(tmp_path / "r.txt", [row("1", dense) for dense in rows])
    result = read_criteo(path, on_bad_lines="skip")

    rule = re.compile(r"-?[0-9]+(\.0+)?")
    good = [all(v == "" or rule.fullmatch(v) for v in dense) for dense in rows]
    assert result.batch.lines.tolist() == [i + 1 for i, ok in enumerate(good) if ok]
    assert result.skipped.counts == {"not_integer": good.count(False)}
    expected = [
        [float(int(v.split(".")[0])) if v else NAN for v in dense]
        for dense, ok in zip(rows, good, strict=True)
        if ok
    ]
    np.testing.assert_array_equal(result.batch.dense, expected)


def test_sparse_keys_match_a_reference_parser(tmp_path):
    rng = np.random.default_rng(1)
    alphabet = list("0123456789abcdefABCDEFgxX- ") + ["\xe9"]
    hex_digits = alphabet[:22]

    def value() -> str:  # about 1 in 30 from any character, up to 9 long
        chars = alphabet if rng.random() < 0.03 else hex_digits
        return "".join(
            rng.choice(chars, rng.integers(0, 10 if chars is alphabet else 9))
        )

    rows = [[value() for _ in SPARSE_FEATURES] for _ in range(2000)]
    result = read_criteo(
        write(tmp_path / "h.txt", [row("0", DENSE, s) for s in rows]),
        on_bad_lines="skip",
    )

    rule = re.compile(r"[0-9a-fA-F]{0,8}")
    good = [all(rule.fullmatch(v) for v in sparse) for sparse in rows]
    assert result.batch.lines.tolist() == [i + 1 for i, ok in enumerate(good) if ok]
    assert 500 < len(result.batch) < 1900
    expected = [
        [int(v, 16) if v else MISSING_KEY for v in sparse]
        for sparse, ok in zip(rows, good, strict=True)
        if ok
    ]
    np.testing.assert_array_equal(result.batch.sparse, expected)


def test_messages_escape_control_bytes_and_clip_long_values(tmp_path):
    lines = [row_with("I1", b"1\x1b[31m"), row_with("C1", b"\xff\xfe")]
    lines += [row_with("C2", b"f" * 500), row_with(LABEL, b"\x07")]
    lines += [row_with("I2", "\u202e5")]  # a bidi override
    with pytest.raises(BadLinesError) as info:
        read_criteo(write_raw(tmp_path / "d.txt", lines))

    message = str(info.value)
    assert all(line.isprintable() for line in message.splitlines())
    assert "column I1: '1\\x1b[31m' is not an integer" in message
    assert "column C1: '\\xff\\xfe' is not 1 to 8 hex" in message
    assert f"column C2: '{'f' * 40}'... is not 1 to 8 hex digits" in message
    assert "column label: '\\x07' is not 0 or 1" in message
    assert "column I2: '\\u202e5' is not an integer" in message

    path = write_raw(tmp_path / "odd.txt", [b"\x1b[2J\xff" + b"x" * 100])
    with pytest.raises(
        ValueError, match=re.escape("from '\\x1b[2J\\xff" + "x" * 55 + "'...")
    ):
        detect_layout(path)
    header = HEADER.replace("I5", "\x1b]0;" + "z" * 30).encode()
    with pytest.raises(ValueError) as info:
        detect_layout(write_raw(tmp_path / "h.csv", [header]))
    assert f"unknown column names ['\\x1b]0;{'z' * 16}'...]" in str(info.value)
    assert str(info.value).isprintable()


# --- frames ---------------------------------------------------------------------


def test_parse_frame_matches_the_file_reader(tmp_path):
    lines = [HEADER, row(sep=",", id=5), row("0", sep=",", id=6, sparse=[""] * 26)]
    from_file = read_criteo(write(tmp_path / "f.csv", lines)).batch
    frame = pd.read_csv(tmp_path / "f.csv", dtype=str, keep_default_na=False)
    from_frame = parse_frame(frame)

    np.testing.assert_array_equal(from_frame.dense, from_file.dense)
    np.testing.assert_array_equal(from_frame.sparse, from_file.sparse)
    np.testing.assert_array_equal(from_frame.labels, from_file.labels)
    np.testing.assert_array_equal(from_frame.ids, [5, 6])
    np.testing.assert_array_equal(from_frame.lines, [1, 2])


def test_parse_frame_numbers_and_missing_values():
    data = {"Label": [1, 0.0], **{c: [None, 7] for c in DENSE_FEATURES}}
    data |= {c: ["a1", np.nan] for c in SPARSE_FEATURES}
    data["I2"] = [-1.0, 2.0]
    data["C1"] = [12345, 10]  # what pandas makes of an all-digit hex column
    data["C2"] = [12345.0, np.nan]
    data["C3"] = pd.array(["a1", pd.NA], dtype="string")
    data["I13"] = pd.array([pd.NA, 7], dtype="Int64")
    batch = parse_frame(pd.DataFrame(data))

    assert batch.labels.tolist() == [1.0, 0.0]
    assert np.isnan(batch.dense[0, 0]) and batch.dense[1, 0] == 7
    assert batch.dense[:, 1].tolist() == [-1.0, 2.0]
    assert batch.sparse[:, 0].tolist() == [0x12345, 0x10]
    assert batch.sparse[:, 1].tolist() == [0x12345, MISSING_KEY]
    assert batch.sparse[:, 2].tolist() == [0xA1, MISSING_KEY]
    assert np.isnan(batch.dense[0, 12]) and batch.dense[1, 12] == 7
    assert batch.ids.tolist() == [1, 2]


def test_parse_frame_bad_values():
    data = {c: ["1", "2"] for c in DENSE_FEATURES} | {
        c: ["ab"] * 2 for c in SPARSE_FEATURES
    }
    data["I4"] = ["1", "x"]
    data["C9"] = ["ab", "g"]
    with pytest.raises(BadLinesError, match=r"(?s)<frame>:2: column I4: 'x'.*C9: 'g'"):
        parse_frame(pd.DataFrame(data))


def test_parse_frame_text_follows_the_file_rules():
    data = {"label": ["1", "+1", "1.0"]} | {c: ["1", "2", "3"] for c in DENSE_FEATURES}
    data |= {c: ["ab"] * 3 for c in SPARSE_FEATURES}
    data["I1"] = ["1e3", "5", "260.0"]
    data["I2"] = [7, " 5", "\u0663"]  # a number passes; text is checked
    data["C1"] = ["0x12", "ab", "ab"]
    with pytest.raises(BadLinesError) as info:
        parse_frame(pd.DataFrame(data))
    assert [(b.line, b.column) for b in info.value.bad_lines] == [
        (1, "I1"),
        (1, "C1"),
        (2, "label"),
        (2, "I2"),
        (3, "I2"),
    ]

    data["I1"], data["I2"], data["C1"] = ["-1", "5", "0"], [7, "5", "3"], ["ab"] * 3
    data["label"] = ["1", "0.0", "1.0"]
    batch = parse_frame(pd.DataFrame(data))
    assert batch.dense[:, 0].tolist() == [-1, 5, 0] and batch.dense[:, 1].tolist() == [
        7,
        5,
        3,
    ]
    assert batch.labels.tolist() == [1, 0, 1]


def test_parse_frame_columns():
    with pytest.raises(ValueError, match=r"frame: missing columns \['I1'"):
        parse_frame(pd.DataFrame({"label": [1]}))
    with pytest.raises(TypeError, match="frame: expected a pandas DataFrame"):
        parse_frame([1, 2])


# --- the real sample files --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rows", "has_id"),
    [
        ("dac_union_12k.txt", 12_494, False),
        ("dac_tr_rx_2k.csv", 1_999, True),
        ("deepctr_criteo_sample_200.csv", 200, False),
    ],
)
def test_real_files_read_without_bad_lines(name, rows, has_id):
    path = REAL / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (real Criteo samples live in ../shared)")
    result = read_criteo(path)

    assert len(result.batch) == rows and result.skipped.total == 0
    assert result.layout.has_id == has_id and result.layout.has_label
    if has_id:
        assert result.batch.ids[0] == 10000083
        assert (np.diff(result.batch.ids) > 0).all()
    assert 0.2 < result.batch.labels.mean() < 0.26
    assert (result.batch.sparse >= MISSING_KEY).all()

    # The same numbers as pandas reading the text and Python parsing it.
    frame = pd.read_csv(
        path,
        sep="\t" if name.endswith(".txt") else ",",
        header=None if name.endswith(".txt") else "infer",
        names=list(TSV.columns) if name.endswith(".txt") else None,
        dtype=str,
        keep_default_na=False,
    )
    column = {str(c).lower(): frame[c] for c in frame.columns}
    batch = result.batch
    np.testing.assert_array_equal(batch.labels, column["label"].astype(float))
    for j, name in enumerate(DENSE_FEATURES):
        expected = [float(v) if v else NAN for v in column[name.lower()]]
        np.testing.assert_array_equal(batch.dense[:, j], expected)
    for j, name in enumerate(SPARSE_FEATURES):
        expected = [int(v, 16) if v else MISSING_KEY for v in column[name.lower()]]
        np.testing.assert_array_equal(batch.sparse[:, j], expected)
