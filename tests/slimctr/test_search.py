import copy

import pytest
import torch

from compression.prune import PruneConfig, prune_gradually
from ctr.config import ModelConfig, TrainConfig
from ctr.train import fit
from ctr.wide_deep import WideDeep
from data.encoder import Encoder
from slimctr.pipeline import measure_bytes
from slimctr.search import (
    STORAGES,
    choose,
    measure_candidates,
    pareto_front,
    pruning_sources,
)
from tests.conftest import planted_batch

TRAIN = TrainConfig(
    batch_size=128,
    epochs=2,
    patience=2,
    learning_rate=3e-3,
    embedding_learning_rate=1e-2,
)


@pytest.fixture(scope="module")
def candidates():
    raw = planted_batch(6000, seed=3)
    train_raw, valid_raw, test_raw = (
        raw.take(slice(0, 4000)),
        raw.take(slice(4000, 5000)),
        raw.take(slice(5000, 6000)),
    )
    encoder = Encoder.fit(train_raw)
    torch.manual_seed(0)
    model = WideDeep(
        ModelConfig(embedding_dim=8, hidden_units=(64, 32)), encoder.num_embeddings, 26
    )
    fit(model, encoder.transform(train_raw), encoder.transform(valid_raw), TRAIN)
    config = PruneConfig(
        neuron_sparsity=0.9,
        row_sparsity=0.8,
        steps=3,
        fine_tune_epochs=1,
        max_auc_drop=1.0,
    )
    pruned = prune_gradually(
        copy.deepcopy(model),
        encoder,
        encoder.transform(train_raw),
        encoder.transform(valid_raw),
        config,
        TRAIN,
        measure_bytes,
    )
    return pruned, measure_candidates(
        pruning_sources(pruned), valid_raw, test_raw, measure_bytes, latency_calls=20
    )


@pytest.mark.parametrize("budget", [0.0, 0.002, 0.01, 1.0])
def test_the_choice_meets_its_budget_on_validation(candidates, budget):
    pruned, measured = candidates
    floor = pruned.steps[0].valid_auc - budget
    chosen = choose(measured, floor, "bytes")
    assert chosen.figures["valid_auc"] >= floor or chosen.name == "step0-float32"
    within = [c for c in measured if c.figures["valid_auc"] >= floor]
    if within:
        assert chosen.figures["bytes"] == min(c.figures["bytes"] for c in within)
    # a looser budget never gives a larger model
    looser = choose(measured, floor - 0.01, "bytes")
    assert looser.figures["bytes"] <= chosen.figures["bytes"]


def test_every_step_in_every_storage_is_measured(candidates):
    pruned, measured = candidates
    assert len(measured) == len(pruned.snapshots) * len(STORAGES)
    sizes = {c.name: c.figures["bytes"] for c in measured}
    # for one step, each storage is smaller than the one before it
    for step in range(len(pruned.snapshots)):
        row = [sizes[f"step{step}-{name}"] for name in STORAGES]
        assert row == sorted(row, reverse=True)


def test_latency_objective_picks_the_fastest_within_budget(candidates):
    pruned, measured = candidates
    chosen = choose(measured, -1.0, "latency")
    assert chosen.figures["p50_us"] == min(c.figures["p50_us"] for c in measured)
    with pytest.raises(ValueError, match="objective: expected one of"):
        choose(measured, 0.5, "accuracy")


def test_pareto_front_keeps_only_undominated_points():
    points = [
        {"bytes": 100, "valid_auc": 0.70},
        {"bytes": 200, "valid_auc": 0.69},  # dominated: bigger and worse
        {"bytes": 300, "valid_auc": 0.75},
        {"bytes": 50, "valid_auc": 0.60},
    ]
    front = pareto_front(points)
    assert [(p["bytes"], p["valid_auc"]) for p in front] == [
        (50, 0.60),
        (100, 0.70),
        (300, 0.75),
    ]


def test_a_logloss_ceiling_keeps_out_miscalibrated_candidates(candidates):
    pruned, measured = candidates
    free = choose(measured, -1.0, "bytes")
    # a ceiling just below the free choice's logloss rules it out
    ceiling = free.figures["valid_logloss"] - 1e-9
    guarded = choose(measured, -1.0, "bytes", logloss_ceiling=ceiling)
    assert guarded.figures["valid_logloss"] <= ceiling or guarded.name == (
        "step0-float32"
    )
    assert guarded.name != free.name
    outside = [c for c in measured if not c.figures["within_budget"]]
    assert all(c.figures["valid_logloss"] > ceiling for c in outside)
