import copy

import pytest
import torch

from compression.prune import PruneConfig, fine_tune_or_keep, prune_gradually
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
        cutoff_share=0.0,
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
        neuron_threshold=1e9,
        row_threshold=0.0,
        fine_tune_epochs=1,
        cutoff_share=0.0,
        max_auc_drop=1.0,
    )
    result = prune_gradually(
        copy.deepcopy(model), encoder, train, valid, config, TRAIN, measure_bytes
    )
    # a λ above every score leaves the single best neuron of each layer
    assert result.steps[-1].hidden_units == (1, 1)


def test_the_cut_off_step_folds_rare_values_within_its_share(trained):
    model, encoder, train, valid = trained
    # these planted values are all frequent: the first level to fold any is 100
    config = PruneConfig(steps=1, neuron_sparsity=0.5, max_auc_drop=0.3)
    result = prune_gradually(
        copy.deepcopy(model), encoder, train, valid, config, TRAIN, measure_bytes
    )
    start, cut = result.steps[0], result.steps[1]
    assert (start.stage, cut.stage) == ("start", "cut-off")
    assert cut.min_count >= 2 and cut.vocabulary_rows < start.vocabulary_rows
    assert cut.valid_auc >= start.valid_auc - 0.5 * 0.3
    chosen = [t for t in result.cutoff if t.min_count == cut.min_count]
    assert chosen[0].rows == cut.vocabulary_rows
    assert result.cutoff[-1].min_count >= cut.min_count
    cut_model, cut_encoder = result.snapshots[1]
    assert cut_encoder.num_embeddings == cut_model.num_embeddings
    # the schedule's step starts from the cut-off's model
    assert result.steps[2].stage == "prune"
    assert result.steps[2].vocabulary_rows <= cut.vocabulary_rows


def test_no_cut_off_when_its_share_is_zero(trained):
    model, encoder, train, valid = trained
    config = PruneConfig(steps=1, cutoff_share=0.0, max_auc_drop=1.0)
    result = prune_gradually(
        copy.deepcopy(model), encoder, train, valid, config, TRAIN, measure_bytes
    )
    assert [s.stage for s in result.steps] == ["start", "prune"]
    assert result.cutoff == []


def test_fine_tuning_that_lowers_valid_auc_is_undone(trained):
    model, encoder, train, valid = trained
    model = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # a step this large wrecks the weights, so validation AUC falls
    wild = TrainConfig(
        batch_size=128, epochs=1, learning_rate=50.0, embedding_learning_rate=50.0
    )
    fine_tune_or_keep(model, train, valid, wild, progress=False)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_config_validation():
    with pytest.raises(ValueError, match="cutoff_share: expected a share"):
        PruneConfig(cutoff_share=1.5)
    with pytest.raises(ValueError, match="neuron_sparsity: expected a share"):
        PruneConfig(neuron_sparsity=1.0)
    with pytest.raises(ValueError, match="schedule: expected one of"):
        PruneConfig(schedule="linear")
