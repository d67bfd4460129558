from pathlib import Path

import pytest

from ctr.config import ModelConfig, TrainConfig, load_config

BASELINE = Path(__file__).resolve().parents[2] / "configs" / "baseline.toml"


def test_shipped_baseline_is_the_bars_shape():
    config = load_config(BASELINE)
    assert config.model.embedding_dim == 16
    assert config.model.hidden_units == (400, 400, 400)
    assert config.min_count == 3


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nembeding_dim = 8\n")
    with pytest.raises(ValueError, match="unknown key\\(s\\) \\['embeding_dim'\\]"):
        load_config(path)


def test_bad_values_are_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nbatch_size = 0\n")
    with pytest.raises(ValueError, match="train.batch_size: expected an integer >= 1"):
        load_config(path)
    with pytest.raises(ValueError, match="model.dropout"):
        ModelConfig(dropout=1.5)
    with pytest.raises(ValueError, match="train.learning_rate"):
        TrainConfig(learning_rate=0)


def test_max_vocab_sits_beside_min_count(tmp_path):
    assert load_config(BASELINE).max_vocab is None  # commented out: no cap
    path = tmp_path / "c.toml"
    path.write_text("[encoder]\nmin_count = 2\nmax_vocab = 1000\n")
    assert load_config(path).max_vocab == 1000
    path.write_text("[encoder]\nmax_vocab = 0\n")
    with pytest.raises(ValueError, match="encoder.max_vocab: expected an integer"):
        load_config(path)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    path = tmp_path / "c.toml"
    path.write_text("[model\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(path)
