import math

import numpy as np
import pytest
import torch

from ctr.config import ModelConfig, TrainConfig
from ctr.metrics import auc
from ctr.train import fit, predict
from ctr.wide_deep import WideDeep
from data.encoder import Encoder
from tests.conftest import planted_batch


def _setup(rows=8000, train_rows=6000):
    raw = planted_batch(rows)
    encoder = Encoder.fit(raw.take(slice(0, train_rows)))
    train = encoder.transform(raw.take(slice(0, train_rows)))
    valid = encoder.transform(raw.take(slice(train_rows, rows)))
    torch.manual_seed(0)
    model = WideDeep(
        ModelConfig(embedding_dim=4, hidden_units=(16, 8)), encoder.num_embeddings, 26
    )
    return model, train, valid


def test_fit_learns_the_planted_signal_and_keeps_the_best():
    model, train, valid = _setup()
    config = TrainConfig(
        batch_size=128,
        epochs=4,
        patience=2,
        learning_rate=3e-3,
        embedding_learning_rate=1e-2,
    )
    result = fit(model, train, valid, config)
    assert result.best_valid.auc > 0.70
    best = max(h["valid_auc"] for h in result.history)
    assert result.best_valid.auc == pytest.approx(best)
    # the returned model holds the best weights, not the last ones
    assert auc(valid.labels, predict(result.model, valid)) == pytest.approx(
        best, abs=1e-9
    )
    assert result.samples_per_s > 0


def test_early_stopping_stops_before_the_epoch_limit():
    model, train, valid = _setup()
    config = TrainConfig(
        batch_size=64,
        epochs=50,
        patience=1,
        learning_rate=1e-2,
        embedding_learning_rate=1e-2,
    )
    result = fit(model, train, valid, config)
    assert result.epochs_run < 50


def test_one_class_validation_never_selects_a_checkpoint():
    model, train, valid = _setup()
    valid = valid.take(np.flatnonzero(valid.labels == 0))
    with (
        pytest.warns(UserWarning, match="one class"),
        pytest.raises(RuntimeError, match="undefined at every evaluation"),
    ):
        fit(model, train, valid, TrainConfig(epochs=1, batch_size=512))


def test_same_seed_same_result():
    results = []
    for _ in range(2):
        model, train, valid = _setup()
        results.append(fit(model, train, valid, TrainConfig(epochs=1, batch_size=256)))
    assert results[0].best_valid.auc == results[1].best_valid.auc
    assert not math.isnan(results[0].best_valid.logloss)


def test_resumed_training_ends_where_an_uninterrupted_run_ends(tmp_path, monkeypatch):
    import ctr.train as train_module
    from ctr.train import Checkpointing

    raw = planted_batch(4000)
    encoder = Encoder.fit(raw.take(slice(0, 3000)), min_count=1)
    train = encoder.transform(raw.take(slice(0, 3000)))
    valid = encoder.transform(raw.take(slice(3000, None)))
    config = TrainConfig(batch_size=128, epochs=3, patience=10, checkpoint_every=5)

    def model():
        torch.manual_seed(0)
        return WideDeep(ModelConfig(8, (16,)), encoder.num_embeddings, 26)

    whole = fit(model(), train, valid, config)

    saves = []
    real_save = train_module.save_checkpoint

    def stop_after_third(path, state):
        real_save(path, state)
        saves.append(state["step"])
        if len(saves) == 3:
            raise KeyboardInterrupt  # as if killed right after writing

    path = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(train_module, "save_checkpoint", stop_after_third)
    with pytest.raises(KeyboardInterrupt):
        fit(model(), train, valid, config, checkpointing=Checkpointing(path))
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    resumed = fit(
        model(), train, valid, config, checkpointing=Checkpointing(path, resume=True)
    )

    assert saves == [5, 6, 10]  # every 5 steps and at evaluations (24 steps / 4)
    assert resumed.best_valid.auc == pytest.approx(whole.best_valid.auc, abs=1e-12)
    assert [h["valid_auc"] for h in resumed.history] == [
        h["valid_auc"] for h in whole.history
    ]
    for name, value in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def test_a_checkpoint_resumes_only_on_its_own_data(tmp_path, monkeypatch):
    import ctr.train as train_module
    from ctr.checkpoint import CheckpointError
    from ctr.train import Checkpointing

    raw = planted_batch(2000)
    encoder = Encoder.fit(raw, min_count=1)
    rows = encoder.transform(raw)
    config = TrainConfig(batch_size=128, epochs=2, checkpoint_every=3)
    real_save = train_module.save_checkpoint

    def stop_after_first(path, state):
        real_save(path, state)
        raise KeyboardInterrupt

    path = tmp_path / "checkpoint.pt"
    model = WideDeep(ModelConfig(4, (8,)), encoder.num_embeddings, 26)
    monkeypatch.setattr(train_module, "save_checkpoint", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        fit(model, rows, rows, config, checkpointing=Checkpointing(path, data="A"))
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    with pytest.raises(CheckpointError, match="written for other data"):
        fit(model, rows, rows, config, checkpointing=Checkpointing(path, True, "B"))
    changed = TrainConfig(batch_size=64, epochs=2, checkpoint_every=3)
    with pytest.raises(CheckpointError, match="batch_size 128 -> 64"):
        fit(model, rows, rows, changed, checkpointing=Checkpointing(path, True, "A"))
