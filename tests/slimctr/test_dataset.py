import logging

import pytest

from data.synth import write_synthetic
from slimctr.dataset import check_splits, load_dataset


def _dataset(tmp_path, labels):
    """Synthetic DAC rows (80/10/10 by position) with ``labels`` put in."""
    path = tmp_path / "rows.tsv"
    write_synthetic(path, len(labels), seed=0)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(
        "".join(f"{label}{line[1:]}" for label, line in zip(labels, lines, strict=True))
    )
    return load_dataset(path)


def test_a_training_split_without_clicks_is_refused(tmp_path):
    labels = [0] * 800 + [0, 1] * 100
    with pytest.raises(ValueError, match=r"training split \(800 rows, 0 clicks\)"):
        check_splits(_dataset(tmp_path, labels))


def test_a_validation_split_of_one_class_is_refused(tmp_path):
    labels = [0, 1] * 400 + [1] * 100 + [0, 1] * 50
    with pytest.raises(ValueError, match=r"validation split \(100 rows, 100 clicks\)"):
        check_splits(_dataset(tmp_path, labels))


def test_small_splits_warn_that_their_auc_is_noise(tmp_path, caplog):
    labels = [0, 1] * 500
    with caplog.at_level(logging.WARNING, logger="slimctr.dataset"):
        check_splits(_dataset(tmp_path, labels))
    messages = [r.getMessage() for r in caplog.records]
    assert any("validation split has 100 rows (50 clicks)" in m for m in messages)
    assert any("test split has 100 rows" in m for m in messages)
