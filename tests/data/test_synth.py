import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from data.schema import DENSE_FEATURES, LABEL, SPARSE_FEATURES
from data.synth import (
    MISSING_GROUPS,
    SynthSummary,
    proba_path_for,
    read_proba,
    write_synthetic,
)

ROWS = 50_000


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[SynthSummary, pd.DataFrame]:
    path = tmp_path_factory.mktemp("synth") / "sample.txt"
    summary = write_synthetic(path, ROWS, seed=3)
    frame = pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=[LABEL, *DENSE_FEATURES, *SPARSE_FEATURES],
        dtype=str,
        keep_default_na=False,
    )
    return summary, frame


def read_bytes(summary: SynthSummary) -> tuple[bytes, bytes]:
    return summary.path.read_bytes(), summary.proba_path.read_bytes()


def test_same_seed_gives_identical_bytes(tmp_path):
    first = write_synthetic(tmp_path / "a.txt", 3_000, seed=1)
    second = write_synthetic(str(tmp_path / "b.txt"), 3_000, seed=1)  # str works too
    assert read_bytes(first) == read_bytes(second)


@pytest.mark.parametrize("chunk_rows", [7, 999, 8_192, 10_000])
def test_chunk_rows_does_not_change_bytes(tmp_path, chunk_rows):
    reference = write_synthetic(tmp_path / "ref.txt", 9_000, seed=5)
    chunked = write_synthetic(tmp_path / "c.txt", 9_000, seed=5, chunk_rows=chunk_rows)
    assert read_bytes(chunked) == read_bytes(reference)


def test_fewer_rows_are_a_prefix(tmp_path):
    long = write_synthetic(tmp_path / "long.txt", 9_000, seed=2)
    short = write_synthetic(tmp_path / "short.txt", 8_500, seed=2)
    long_lines = long.path.read_bytes().splitlines(keepends=True)
    assert short.path.read_bytes() == b"".join(long_lines[:8_500])


def test_different_seed_gives_different_rows(tmp_path):
    first = write_synthetic(tmp_path / "a.txt", 2_000, seed=0)
    second = write_synthetic(tmp_path / "b.txt", 2_000, seed=1)
    first_lines = first.path.read_bytes().splitlines()
    second_lines = second.path.read_bytes().splitlines()
    same = sum(a == b for a, b in zip(first_lines, second_lines, strict=True))
    assert same == 0


def test_summary_describes_the_files(sample):
    summary, frame = sample
    assert summary.rows == ROWS == len(frame)
    assert summary.seed == 3
    assert summary.proba_path == proba_path_for(summary.path)
    assert summary.click_rate == pytest.approx(frame[LABEL].astype(int).mean())


def test_every_line_has_40_valid_fields(sample):
    summary, frame = sample
    lines = summary.path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the file ends with a newline
    assert {line.count(b"\t") for line in lines[:-1]} == {39}

    assert set(frame[LABEL]) == {"0", "1"}
    for name in DENSE_FEATURES:
        assert frame[name].str.fullmatch(r"(-?[0-9]+)?").all(), name
        assert not frame[name].str.fullmatch(r"-?0[0-9]+").any(), name
    for name in SPARSE_FEATURES:
        assert frame[name].str.fullmatch(r"([0-9a-f]{8})?").all(), name


def test_missing_rates_follow_the_planted_groups(sample):
    _, frame = sample
    missing = frame == ""
    planted = {name for group, _ in MISSING_GROUPS for name in group}
    for group, rate in MISSING_GROUPS:
        observed = missing[list(group)].to_numpy()
        assert (observed == observed[:, :1]).all(), group  # missing together
        assert observed[:, 0].any(), group
        assert observed[:, 0].mean() == pytest.approx(rate, abs=0.01), group
    never = [name for name in frame.columns if name not in planted]
    assert not missing[never].any().any()


def test_i2_takes_small_negative_values(sample):
    _, frame = sample
    i2 = frame["I2"].astype(int)
    assert (i2 == -1).mean() == pytest.approx(0.1, abs=0.01)
    assert (i2 == -2).any()
    assert i2.min() == -2
    others = frame[[n for n in DENSE_FEATURES if n != "I2"]]
    assert not others.apply(lambda column: column.str.startswith("-")).any().any()


def test_sparse_values_are_zipf_like(sample):
    _, frame = sample
    c3 = frame["C3"][frame["C3"] != ""].value_counts()
    assert c3.size > 10_000  # a long tail ...
    assert c3.iloc[:100].sum() / c3.sum() > 0.2  # ... under a heavy head
    assert frame["C9"].nunique() == 3
    assert frame["C20"].nunique() == 4  # three values and missing


def test_click_rate_is_near_a_quarter(sample):
    summary, _ = sample
    assert 0.22 <= summary.click_rate <= 0.28


def test_oracle_auc_from_the_side_file(sample):
    summary, frame = sample
    proba = read_proba(summary.proba_path)
    assert proba.shape == (ROWS,) and proba.dtype == np.float64
    auc = roc_auc_score(frame[LABEL].astype(int), proba)
    assert 0.76 <= auc <= 0.84
    assert summary.oracle_auc == pytest.approx(auc, abs=1e-4)


def test_side_file_has_8_significant_digits(sample):
    summary, _ = sample
    lines = summary.proba_path.read_text().splitlines()
    assert len(lines) == ROWS
    for line in lines[:2_000]:
        value = float(line)
        assert 0.0 < value < 1.0
        assert line == f"{value:.8g}"  # shortest form, no trailing zeros
        assert len(re.sub(r"^0\.0*", "", line)) <= 8


def test_progress_gets_the_rows_of_each_chunk(tmp_path):
    calls = []
    write_synthetic(tmp_path / "p.txt", 2_500, chunk_rows=1_000, progress=calls.append)
    assert calls == [1_000, 1_000, 500]


def test_folder_is_created_and_no_temporary_file_is_left(tmp_path):
    summary = write_synthetic(tmp_path / "new" / "x.txt", 10)
    assert sorted(p.name for p in summary.path.parent.iterdir()) == [
        "x.txt",
        "x.txt.proba",
    ]


def test_proba_path_for_appends_the_suffix(tmp_path):
    assert proba_path_for(tmp_path / "a.txt") == tmp_path / "a.txt.proba"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rows": 0}, ValueError, r"rows: expected an integer >= 1, got 0"),
        ({"rows": -5}, ValueError, r"rows: expected an integer >= 1, got -5"),
        ({"rows": 2.5}, TypeError, r"rows: expected an integer >= 1, got 2\.5"),
        ({"rows": True}, TypeError, r"rows: expected an integer >= 1, got True"),
        ({"seed": -1}, ValueError, r"seed: expected a non-negative integer, got -1"),
        ({"seed": "7"}, TypeError, r"seed: expected a non-negative integer, got '7'"),
        ({"chunk_rows": 0}, ValueError, r"chunk_rows: expected an integer >= 1"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, error, message):
    arguments = {"path": tmp_path / "bad.txt", "rows": 10} | kwargs
    with pytest.raises(error, match=message):
        write_synthetic(**arguments)
    assert not (tmp_path / "bad.txt").exists()


def test_numpy_integers_are_accepted(tmp_path):
    summary = write_synthetic(tmp_path / "n.txt", np.int64(200), seed=np.uint8(2))
    assert summary.rows == 200 and summary.seed == 2
    assert type(summary.rows) is int and type(summary.seed) is int


def test_oracle_auc_over_one_class_is_nan_with_a_warning(tmp_path):
    with pytest.warns(RuntimeWarning, match="oracle AUC is undefined"):
        summary = write_synthetic(tmp_path / "one.txt", 1)
    assert np.isnan(summary.oracle_auc)


def test_read_proba_refuses_a_missing_or_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"path: no probability file at"):
        read_proba(tmp_path / "none.proba")
    bad = tmp_path / "bad.proba"
    bad.write_text("0.5\n1.5\n")
    with pytest.raises(ValueError, match=r"line 2: expected a probability in \[0, 1\]"):
        read_proba(bad)
    bad.write_text("0.5\nabc\n")
    with pytest.raises(ValueError, match=r"expected one probability per line"):
        read_proba(bad)
