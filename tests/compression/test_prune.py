import copy

import pytest
import torch

from compression.prune import PruneConfig, prune_gradually
from ctr.config import ModelConfig, TrainConfig
from ctr.train import fit
from ctr.wide_deep import WideDeep
from data.encoder import Encoder
from slimctr.pipeline import measure_bytes
from tests.conftest import planted_batch

TRAIN = TrainConfig(
    batch_size=128,
    epochs=3,
    patience=2,
    learning_rate=3e-3,
    embedding_learning_rate=1e-2,
)


@pytest.fixture(scope="module")
def trained():
    raw = planted_batch(6000)
    encoder = Encoder.fit(raw.take(slice(0, 4500)))
    train = encoder.transform(raw.take(slice(0, 4500)))
    valid = encoder.transform(raw.take(slice(4500, 6000)))
    torch.manual_seed(0)
    model = WideDeep(
        ModelConfig(embedding_dim=8, hidden_units=(64, 32)), encoder.num_embeddings, 26
    )
    fit(model, train, valid, TRAIN)
    return model, encoder, train, valid


def test_gradual_pruning_shrinks_every_step(trained):
    model, encoder, train, valid = trained
    config = PruneConfig(
        neuron_sparsity=0.75,
        row_sparsity=0.5,
        steps=3,
        fine_tune_epochs=1,
        max_auc_drop=1.0,
    )
    result = prune_gradually(
        copy.deepcopy(model), encoder, train, valid, config, TRAIN, measure_bytes
    )
    assert [s.step for s in result.steps] == [0, 1, 2, 3]
    sizes = [s.bytes for s in result.steps]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0] / 2
    assert result.steps[-1].hidden_units == (16, 8)
    assert result.model.config.hidden_units == (16, 8)
    assert result.chosen_step == 3
    assert result.steps[-1].row_sparsity == pytest.approx(0.5, abs=0.01)
    # the encoder shrank with the tables
    assert result.encoder.num_embeddings == result.model.num_embeddings


def test_a_step_that_breaks_the_budget_is_rolled_back(trained):
    model, encoder, train, valid = trained
    # folding 99.9 % of the rows into oov loses the planted C1 signal
    config = PruneConfig(
        neuron_sparsity=0.9,
        row_sparsity=0.999,
        schedule="one-shot",
        fine_tune_epochs=1,
        max_auc_drop=0.0,
    )
    result = prune_gradually(
        copy.deepcopy(model), encoder, train, valid, config, TRAIN, measure_bytes
    )
    assert result.steps[-1].rolled_back
    assert result.steps[-1].valid_auc < result.steps[0].valid_auc
    assert result.chosen_step == 0
    assert result.model.config.hidden_units == (64, 32)
    assert result.encoder is encoder


def test_threshold_mode_removes_low_norm_neurons(trained):
    model, encoder, train, valid = trained
    config = PruneConfig(
        neuron_threshold=1e9, row_threshold=0.0, fine_tune_epochs=1, max_auc_drop=1.0
    )
    result = prune_gradually(
        copy.deepcopy(model), encoder, train, valid, config, TRAIN, measure_bytes
    )
    # a λ above every score leaves the single best neuron of each layer
    assert result.steps[-1].hidden_units == (1, 1)


def test_config_validation():
    with pytest.raises(ValueError, match="neuron_sparsity: expected a share"):
        PruneConfig(neuron_sparsity=1.0)
    with pytest.raises(ValueError, match="schedule: expected one of"):
        PruneConfig(schedule="linear")
