import csv

import numpy as np
import pytest

from data.avazu import AVAZU, AVAZU_SPARSE_FEATURES
from data.bad_lines import BadLinesError
from data.reader import preset, read_rows
from data.tabular import hash_strings
from tests.conftest import shared_file

HEADER = ["id", "click", "hour", *AVAZU_SPARSE_FEATURES]
# two real first fields of the sample, the second past int64, and the largest id
IDS = ["1000009418151094273", "10000169349117863715", "18446744073709551615"]


def avazu_row(row_id: str, click: str, hour: str, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    values = [f"{v:08x}" for v in rng.integers(0, 2**32, len(AVAZU_SPARSE_FEATURES))]
    values[0] = "1005"  # C1, an integer code
    return [row_id, click, hour, *values]


def write_avazu(path, rows: list[list[str]], header: list[str] = HEADER) -> None:
    lines = [",".join(header)] + [",".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def test_ids_stay_text_with_every_digit(tmp_path):
    path = tmp_path / "avazu.csv"
    rows = [avazu_row(i, "0", "14102100", n) for n, i in enumerate(IDS)]
    write_avazu(path, rows)
    batch, skipped = read_rows(path, AVAZU)
    assert batch.ids.tolist() == IDS and skipped.total == 0
    assert batch.lines.tolist() == [2, 3, 4]


def test_hour_becomes_hour_of_day_and_weekday(tmp_path):
    path = tmp_path / "avazu.csv"
    hours = ["14102100", "14102523", "14103017"]  # Tue 0 h, Sat 23 h, Thu 17 h
    write_avazu(path, [avazu_row("1", "1", h, n) for n, h in enumerate(hours)])
    batch, _ = read_rows(path, AVAZU)
    assert batch.dense.shape == (3, 0) and batch.sparse.shape == (3, 23)
    assert batch.sparse[:, -2].tolist() == [0, 23, 17]
    assert batch.sparse[:, -1].tolist() == [1, 5, 3]
    assert batch.labels.tolist() == [1.0, 1.0, 1.0]


def test_categorical_keys_are_stable_64_bit_hashes(tmp_path):
    path = tmp_path / "avazu.csv"
    row = avazu_row("7", "0", "14102100", 0)
    row[HEADER.index("site_id")] = "1fbe01fe"
    write_avazu(path, [row])
    batch, _ = read_rows(path, AVAZU)
    site_id = AVAZU.sparse_fields.index("site_id")
    # pinned: the key of a value must never change between runs or versions
    assert batch.sparse[0, site_id] == 4126287903757704847
    expected = hash_strings(np.array(row[3:], dtype=object))
    np.testing.assert_array_equal(batch.sparse[0, :-2], expected)


def test_bad_label_and_hour_name_line_and_column(tmp_path):
    path = tmp_path / "avazu.csv"
    rows = [
        avazu_row("1", "0", "14102100", 0),
        avazu_row("2", "yes", "14102100", 1),
        avazu_row("3", "1", "14102199", 2),
    ]
    write_avazu(path, rows)
    with pytest.raises(BadLinesError) as info:
        read_rows(path, AVAZU)
    message = str(info.value)
    assert f"{path}:3: column click: 'yes' is not 0 or 1" in message
    assert f"{path}:4: column hour: '14102199' is not an hour" in message
    assert "use --on-bad-lines skip" in message

    batch, skipped = read_rows(path, AVAZU, on_bad_lines="skip")
    assert batch.ids.tolist() == ["1"]
    assert skipped.counts == {"bad_label": 1, "bad_sparse_value": 1}


def test_a_file_without_click_is_unlabeled(tmp_path):
    path = tmp_path / "test.csv"
    rows = [avazu_row(i, "0", "14102100", n) for n, i in enumerate(IDS)]
    write_avazu(path, [r[:1] + r[2:] for r in rows], HEADER[:1] + HEADER[2:])
    batch, _ = read_rows(path, AVAZU)
    assert batch.labels is None and batch.ids.tolist() == IDS


def test_the_preset_is_named_avazu():
    assert preset("avazu") is AVAZU
    with pytest.raises(ValueError, match=r"dataset: got 'kdd'; accepted: criteo"):
        preset("kdd")


def test_the_real_sample_reads_whole():
    path = shared_file("avazu/avazu_head_10k.csv")
    batch, skipped = read_rows(path, AVAZU)
    with open(path, newline="") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    assert len(batch) == 9999 and skipped.total == 0
    assert batch.ids.tolist() == ids and max(map(len, ids)) == 20
    assert batch.labels.mean() == pytest.approx(0.171, abs=0.001)
    # the sample is the first hour of the Avazu log: 2014-10-21 (a Tuesday), 00 h
    assert set(batch.sparse[:, -2]) == {0} and set(batch.sparse[:, -1]) == {1}
