from dataclasses import replace

import numpy as np
import pytest

from data.avazu import AVAZU
from data.reader import DATASETS, iter_rows, read_rows
from data.schema import CRITEO

# one raw DAC line: label, 13 integers, 26 hex values
CRITEO_LINE = "\t".join(["1", *["5"] * 13, *["68fd1e64"] * 26])


def test_presets_are_criteo_and_avazu():
    assert DATASETS == {"criteo": CRITEO, "avazu": AVAZU}


def test_criteo_takes_the_criteo_reader_and_its_formats(tmp_path):
    path = tmp_path / "rows.csv"
    header = ",".join(["Id", "Label", *CRITEO.dense_features, *CRITEO.sparse_fields])
    values = CRITEO_LINE.split("\t")
    path.write_text(f"{header}\n10000000,{','.join(values)}\n")
    batch, skipped = read_rows(path)  # the Kaggle CSV, which only it detects
    assert batch.ids.tolist() == [10000000] and skipped.total == 0
    tsv = tmp_path / "rows.tsv"
    tsv.write_text(CRITEO_LINE + "\n")
    (parsed,) = iter_rows(tsv, CRITEO, "tsv")
    np.testing.assert_array_equal(parsed.sparse, batch.sparse)


def test_another_schema_takes_the_tabular_reader(tmp_path):
    tsv = tmp_path / "rows.tsv"
    tsv.write_text(CRITEO_LINE + "\n")
    batch, _ = read_rows(tsv, replace(CRITEO, name="copy"))
    assert batch.sparse[0, 0] == 0x68FD1E64


def test_format_is_for_criteo_only(tmp_path):
    with pytest.raises(ValueError, match=r"--format csv: applies to Criteo files"):
        read_rows(tmp_path / "x.csv", AVAZU, fmt="csv")
    with pytest.raises(TypeError, match=r"schema: expected a Schema"):
        iter_rows(tmp_path / "x.csv", "avazu")
