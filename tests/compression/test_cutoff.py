import math

import numpy as np
import pytest
import torch

from compression.cutoff import choose_cutoff, frequency_keep
from compression.importance import embedding_row_frequency
from compression.thinning import remap_ids, thin_embedding_rows
from ctr.config import ModelConfig, TrainConfig
from ctr.metrics import evaluate
from ctr.train import fit, predict
from ctr.wide_deep import WideDeep
from data.encoder import NUM_RESERVED, OOV_ID, Encoder
from tests.conftest import planted_batch


@pytest.fixture(scope="module")
def trained():
    raw = planted_batch(5000)
    encoder = Encoder.fit(raw.take(slice(0, 4000)))
    train = encoder.transform(raw.take(slice(0, 4000)))
    valid = encoder.transform(raw.take(slice(4000, 5000)))
    torch.manual_seed(0)
    model = WideDeep(ModelConfig(8, (32,)), encoder.num_embeddings, 26)
    fit(model, train, valid, TrainConfig(batch_size=128, epochs=2))
    frequency = embedding_row_frequency(model, torch.from_numpy(train.sparse_ids))
    return model, train, valid, frequency


def test_frequency_keep_keeps_frequent_and_reserved_rows(trained):
    model, train, _, frequency = trained
    keep = frequency_keep(model, frequency, 5)
    for field, mask in enumerate(keep):
        counts = np.bincount(
            train.sparse_ids[:, field], minlength=model.num_embeddings[field]
        )
        assert mask[:NUM_RESERVED].all()
        np.testing.assert_array_equal(mask[NUM_RESERVED:], counts[NUM_RESERVED:] >= 5)


def test_any_floor_takes_the_highest_level_that_removes_rows(trained):
    model, _, valid, frequency = trained
    chosen, trials = choose_cutoff(model, frequency, valid, -math.inf, (2, 5, 10**9))
    # the last level folds every value, leaving the reserved rows only
    assert chosen == 10**9
    assert trials[-1].rows == 0
    assert [t.rows for t in trials] == sorted((t.rows for t in trials), reverse=True)


def test_a_floor_above_the_start_keeps_every_row(trained):
    model, _, valid, frequency = trained
    median = int(frequency[frequency > 0].median())
    chosen, trials = choose_cutoff(model, frequency, valid, 2.0, (median, 10**9))
    assert chosen == 0
    assert len(trials) == 1 and trials[0].valid_auc < 2.0


def test_the_chosen_level_holds_the_floor_and_the_next_breaks_it(trained):
    model, _, valid, frequency = trained
    start = evaluate(valid.labels, predict(model, valid)).auc
    floor = start - 0.01
    levels = tuple(range(2, int(frequency.max()) + 2, 5))
    chosen, trials = choose_cutoff(model, frequency, valid, floor, levels)
    assert chosen > 0
    kept = [t for t in trials if t.min_count == chosen]
    assert kept and kept[0].valid_auc >= floor
    assert trials[-1].min_count == chosen or trials[-1].valid_auc < floor
    # the trial's AUC is the folded model's, measured again here
    keep = frequency_keep(model, frequency, chosen)
    folded = thin_embedding_rows(model, keep)
    remapped = remap_ids(valid, keep)
    auc = evaluate(valid.labels, predict(folded, remapped)).auc
    assert auc == pytest.approx(kept[0].valid_auc, abs=1e-9)
    # rows that were not kept read the oov row
    dropped = ~keep[0][valid.sparse_ids[:, 0]]
    assert (remapped.sparse_ids[dropped, 0] == OOV_ID).all()


def test_levels_must_ascend(trained):
    model, _, valid, frequency = trained
    with pytest.raises(ValueError, match="levels: expected ascending"):
        choose_cutoff(model, frequency, valid, 0.5, (10, 5))
