import gzip
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from data.bad_lines import BadLinesError, SkipCounter
from data.criteo import read_criteo
from data.schema import CRITEO, MISSING_KEY, Schema
from data.tabular import hash_strings, iter_tabular, parse_frame, read_tabular
from tests.conftest import shared_file

TOY = Schema(
    name="toy",
    label="clicked",
    dense_features=("price", "age"),
    sparse_features=("site", "device"),
    id_column="ad",
)
HEADER = "ad,clicked,price,age,site,device"


def write(tmp_path, *lines: str, name: str = "toy.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_values_convert_and_empty_is_missing(tmp_path):
    path = write(tmp_path, HEADER, "a1,1,2.5,30,news,phone", "a2,0,,-1e3,,tablet")
    batch, skipped = read_tabular(path, TOY)
    assert skipped.total == 0 and batch.ids.tolist() == ["a1", "a2"]
    assert batch.labels.tolist() == [1.0, 0.0]
    np.testing.assert_array_equal(batch.dense, [[2.5, 30.0], [np.nan, -1000.0]])
    assert batch.sparse[1, 0] == MISSING_KEY
    np.testing.assert_array_equal(
        batch.sparse[[0, 0, 1], [0, 1, 1]],
        hash_strings(np.array(["news", "phone", "tablet"], dtype=object)),
    )


def test_header_order_is_free_and_unnamed_columns_are_ignored(tmp_path):
    header = "device,extra,site,age,price,clicked,ad"
    path = write(tmp_path, header, "phone,zzz,news,30,2.5,1,a1")
    reordered, _ = read_tabular(path, TOY)
    plain, _ = read_tabular(
        write(tmp_path, HEADER, "a1,1,2.5,30,news,phone", name="plain.csv"), TOY
    )
    np.testing.assert_array_equal(reordered.sparse, plain.sparse)
    np.testing.assert_array_equal(reordered.dense, plain.dense)


def test_quoted_fields_may_hold_the_separator(tmp_path):
    path = write(tmp_path, HEADER, 'a1,1,2,3,"news, sports",phone')
    batch, _ = read_tabular(path, TOY)
    assert batch.sparse[0, 0] == hash_strings(np.array(["news, sports"], object))[0]


def test_an_open_quote_is_a_bad_line_and_the_next_line_still_reads(tmp_path):
    path = write(tmp_path, HEADER, 'a1,1,2,3,"news,phone', "a2,1,2,3,news,phone")
    with pytest.raises(BadLinesError, match=r"toy.csv:2: a quoted field is not"):
        read_tabular(path, TOY)
    batch, skipped = read_tabular(path, TOY, on_bad_lines="skip")
    assert batch.ids.tolist() == ["a2"] and skipped.counts == {"field_count": 1}


def test_bad_fields_name_file_line_and_column(tmp_path):
    path = write(
        tmp_path,
        HEADER,
        "a1,1,2.5,30,news,phone",
        "",
        "a2,2,1,1,news,phone",  # line 4: bad label
        "a3,0,cheap,1,news,phone",  # line 5: not a number
        "a4,0,1,1,news",  # line 6: a field short
        "a5,0,1,1,news,phone,extra",  # line 7: a field too many
        "a6,,1,inf,news,phone",  # line 8: label missing, age not finite
    )
    with pytest.raises(BadLinesError) as info:
        read_tabular(path, TOY)
    error = info.value
    assert [(b.line, b.column, b.reason) for b in error.bad_lines] == [
        (4, "clicked", "bad_label"),
        (5, "price", "not_number"),
        (6, None, "field_count"),
        (7, None, "field_count"),
        (8, "clicked", "bad_label"),
        (8, "age", "not_number"),
    ]
    message = str(error)
    assert f"{path}:4: column clicked: '2' is not 0 or 1" in message
    assert f"{path}:5: column price: 'cheap' is not a number" in message
    assert f"{path}:6: expected 6 fields, found 5" in message
    assert f"{path}:8: column clicked: missing; expected 0 or 1" in message
    assert "total: 5 bad lines (6 faults); use --on-bad-lines skip" in message


def test_skip_drops_and_counts_each_bad_line_once(tmp_path):
    path = write(
        tmp_path,
        HEADER,
        "a1,1,2.5,30,news,phone",
        "a2,2,x,1,news,phone",
        "a3,0,1",
        "a4,0,1,1,news,phone",
    )
    batch, skipped = read_tabular(path, TOY, on_bad_lines="skip")
    assert batch.ids.tolist() == ["a1", "a4"] and batch.lines.tolist() == [2, 5]
    assert skipped.counts == {"bad_label": 1, "field_count": 1}


def test_error_policy_yields_nothing_from_the_first_bad_chunk(tmp_path):
    rows = [f"a{i},1,1,1,news,phone" for i in range(6)]
    rows[4] = "a4,1,1,1,news"
    path = write(tmp_path, HEADER, *rows)
    seen = []
    with pytest.raises(BadLinesError, match=r":6: expected 6 fields, found 5"):
        for batch in iter_tabular(path, TOY, chunk_rows=2):
            seen += batch.ids.tolist()
    # chunks of 2 lines, the header among them: the third holds the bad line
    assert seen == ["a0", "a1", "a2"]


def test_chunks_give_the_same_rows_as_one_read(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        f"a{i},{rng.integers(2)},{rng.normal():.3f},,s{rng.integers(9)},d"
        for i in range(50)
    ]
    path = write(tmp_path, HEADER, *rows)
    whole, _ = read_tabular(path, TOY)
    skipped = SkipCounter()
    parts = list(iter_tabular(path, TOY, chunk_rows=7, skipped=skipped))
    assert len(parts) == 8 and skipped.total == 0
    np.testing.assert_array_equal(
        np.concatenate([p.sparse for p in parts]), whole.sparse
    )
    assert np.concatenate([p.ids for p in parts]).tolist() == whole.ids.tolist()


def test_headerless_files_with_and_without_the_label(tmp_path):
    schema = replace(
        TOY,
        header=False,
        separator="\t",
        columns=("clicked", "price", "age", "site", "device", "ad"),
    )
    labeled = write(tmp_path, "1\t2\t3\tnews\tphone\ta1", name="l.tsv")
    unlabeled = write(tmp_path, "2\t3\tnews\tphone\ta1", name="u.tsv")
    a, _ = read_tabular(labeled, schema)
    b, _ = read_tabular(unlabeled, schema)
    assert a.labels.tolist() == [1.0] and b.labels is None
    np.testing.assert_array_equal(a.sparse, b.sparse)
    wrong = write(tmp_path, "1,2,3,news,phone,a1", name="w.tsv")
    with pytest.raises(ValueError, match=r"w.tsv:1: found 1 fields split on '\\t'"):
        read_tabular(wrong, schema)


def test_header_problems_are_explained(tmp_path):
    path = write(tmp_path, "ad;clicked;price;age;site;device", "a1;1;2;3;n;p")
    with pytest.raises(ValueError, match=r"toy.csv:1: the header does not fit the "):
        read_tabular(path, TOY)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match=r"empty.csv: the file is empty"):
        read_tabular(empty, TOY)


def test_no_id_column_names_rows_by_line_and_no_rows_is_an_empty_batch(tmp_path):
    path = write(tmp_path, "clicked,price,age,site,device", "1,2,3,n,p")
    batch, _ = read_tabular(path, TOY)
    assert batch.ids.tolist() == [2]
    empty, _ = read_tabular(write(tmp_path, HEADER, name="h.csv"), TOY)
    assert len(empty) == 0 and empty.sparse.shape == (0, 2)


def test_gzip_files_read_like_plain_ones(tmp_path):
    plain = write(tmp_path, HEADER, "a1,1,2.5,30,news,phone")
    packed = tmp_path / "toy.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, _ = read_tabular(plain, TOY)
    b, _ = read_tabular(packed, TOY)
    np.testing.assert_array_equal(a.sparse, b.sparse)


def test_arguments_are_checked_first(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file"):
        read_tabular(tmp_path / "nope.csv", TOY)
    with pytest.raises(IsADirectoryError):
        read_tabular(tmp_path, TOY)
    path = write(tmp_path, HEADER)
    with pytest.raises(ValueError, match=r"on_bad_lines: got 'warn'"):
        read_tabular(path, TOY, on_bad_lines="warn")
    with pytest.raises(TypeError, match=r"schema: expected a Schema"):
        read_tabular(path, "toy")
    with pytest.raises(ValueError, match=r"chunk_rows: got 0"):
        iter_tabular(path, TOY, chunk_rows=0)


def test_parse_frame_reads_numbers_and_missing_values():
    frame = pd.DataFrame(
        {
            "price": [2.5, None],
            "age": ["30", np.nan],
            "site": [15706.0, "15706"],  # an integral float is its integer
            "device": ["phone", None],
        }
    )
    batch = parse_frame(frame, TOY)
    assert batch.labels is None and batch.ids.tolist() == [1, 2]
    assert batch.sparse[0, 0] == batch.sparse[1, 0]
    assert batch.sparse[1, 1] == MISSING_KEY and np.isnan(batch.dense[1]).all()
    with pytest.raises(BadLinesError, match=r"<frame>:2: column age: 'old' is not"):
        parse_frame(frame.assign(age=["1", "old"]), TOY)
    with pytest.raises(ValueError, match=r"missing columns \['device'\]"):
        parse_frame(frame.drop(columns="device"), TOY)


def test_a_criteo_schema_reads_what_the_criteo_reader_reads():
    path = shared_file("criteo/dac_head_10k.txt")
    schema = replace(CRITEO, name="criteo-as-toml")  # forces the pandas reader
    batch, _ = read_tabular(path, schema)
    expected = read_criteo(path).batch
    np.testing.assert_array_equal(batch.sparse, expected.sparse)
    np.testing.assert_array_equal(batch.dense, expected.dense)
    np.testing.assert_array_equal(batch.labels, expected.labels)
    np.testing.assert_array_equal(batch.lines, expected.lines)
