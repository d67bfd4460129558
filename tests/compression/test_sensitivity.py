import copy
import math

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from compression.sensitivity import (
    LEVELS,
    SensitivityRow,
    allocate,
    field_keep,
    layer_keep,
    layer_names,
    sensitivity,
    sensitivity_table,
)
from compression.sensitivity_plot import DPI, FIGURE_SIZE, plot_sensitivity
from compression.thinning import remap_ids, thin_embedding_rows, thin_mlp
from ctr.config import ModelConfig, TrainConfig
from ctr.metrics import auc
from ctr.train import fit, predict
from ctr.wide_deep import WideDeep
from data.encoder import NUM_RESERVED, EncodedBatch, Encoder
from tests.conftest import planted_batch

HIDDEN = (32, 16)
EMBEDDING_DIM = 8


@pytest.fixture(scope="module")
def trained():
    raw = planted_batch(4000)
    encoder = Encoder.fit(raw.take(slice(0, 3000)))
    train = encoder.transform(raw.take(slice(0, 3000)))
    valid = encoder.transform(raw.take(slice(3000, 4000)))
    torch.manual_seed(0)
    config = ModelConfig(embedding_dim=EMBEDDING_DIM, hidden_units=HIDDEN)
    model = WideDeep(config, encoder.num_embeddings, 26)
    fit(
        model,
        train,
        valid,
        TrainConfig(batch_size=128, epochs=3, learning_rate=3e-3, patience=2),
    )
    return model, valid


@pytest.fixture(scope="module")
def rows(trained):
    model, valid = trained
    return sensitivity(model, valid)


def _row(rows, name, level):
    (found,) = [r for r in rows if r.name == name and r.level == level]
    return found


def test_one_row_per_layer_field_and_level(trained, rows):
    model, _ = trained
    assert layer_names(model) == ["mlp.0", "mlp.2"]
    assert len(rows) == (len(HIDDEN) + 26) * len(LEVELS)
    assert {r.kind for r in rows} == {"layer", "field"}
    assert [r.level for r in rows[: len(LEVELS)]] == list(LEVELS)
    assert {r.name for r in rows if r.kind == "field"} == {
        f"C{i}" for i in range(27)[1:]
    }


def test_drop_is_measured_against_the_unpruned_model(trained, rows):
    model, valid = trained
    unpruned = auc(valid.labels, predict(model, valid))
    for row in rows:
        assert row.valid_auc + row.auc_drop == pytest.approx(unpruned, abs=1e-6)


def test_zero_neurons_are_pruned_first_at_no_cost(trained):
    model, valid = trained
    model = copy.deepcopy(model)
    first = model.linear_layers()[0]
    dead = torch.arange(HIDDEN[0]) % 2 == 0  # half the neurons
    with torch.no_grad():
        # relu(0 · x + 0) = 0: these neurons feed nothing to the next layer
        first.weight[dead] = 0
        first.bias[dead] = 0
    rows = sensitivity(model, valid, levels=(0.1, 0.3, 0.5, 0.9))
    layer_rows = {r.level: r for r in rows if r.name == "mlp.0"}
    for level in (0.1, 0.3, 0.5):
        assert layer_rows[level].auc_drop == pytest.approx(0.0, abs=1e-6)
    # removing live neurons too changes the output
    assert layer_rows[0.9].auc_drop != pytest.approx(0.0, abs=1e-6)

    in_features = EMBEDDING_DIM * 26 + 26
    removed = HIDDEN[0] // 2
    assert layer_rows[0.5].params_removed == removed * (in_features + 1 + HIDDEN[1])


def test_the_planted_field_is_the_most_sensitive(rows):
    # planted_batch draws clicks from the parity of C1; the other fields are noise
    planted = _row(rows, "C1", 0.9).auc_drop
    noise = [r.auc_drop for r in rows if r.kind == "field" and r.level == 0.9]
    noise.remove(planted)
    assert planted > 0.03
    assert planted > max(noise) + 0.03
    assert abs(_row(rows, "C2", 0.9).auc_drop) < 0.02


def test_layer_rows_equal_a_thinned_model(trained, rows):
    model, valid = trained
    for layer, name in enumerate(layer_names(model)):
        for level in (0.2, 0.9):
            keep = [torch.ones(units, dtype=torch.bool) for units in HIDDEN]
            keep[layer] = layer_keep(model, layer, level)
            thinned = thin_mlp(model, keep)
            expected = auc(valid.labels, predict(thinned, valid))
            assert _row(rows, name, level).valid_auc == pytest.approx(
                expected, abs=1e-5
            )


def test_the_oov_shortcut_equals_thinning_the_tables(trained, rows):
    model, valid = trained
    for field, name in ((0, "C1"), (4, "C5")):
        for level in (0.3, 0.9):
            keep = [np.ones(n, dtype=bool) for n in model.num_embeddings]
            keep[field] = field_keep(model, field, level)
            thinned = thin_embedding_rows(model, keep)
            expected = auc(valid.labels, predict(thinned, remap_ids(valid, keep)))
            row = _row(rows, name, level)
            assert row.valid_auc == pytest.approx(expected, abs=1e-5)
            folded = int((~keep[field]).sum())
            assert row.params_removed == folded * (EMBEDDING_DIM + 1)


def test_field_keep_folds_the_lowest_norm_rows_and_keeps_reserved_ids(trained):
    model, _ = trained
    keep = field_keep(model, 0, 0.9)
    vocabulary = model.num_embeddings[0] - NUM_RESERVED
    assert keep[:NUM_RESERVED].all()
    assert int(keep[NUM_RESERVED:].sum()) == math.ceil(vocabulary * 0.1)
    rows = torch.cat([model.embedding.weight, model.wide_sparse.weight], 1).detach()
    norms = rows[: model.num_embeddings[0]].norm(dim=1).numpy()[NUM_RESERVED:]
    kept, folded = norms[keep[NUM_RESERVED:]], norms[~keep[NUM_RESERVED:]]
    assert kept.min() >= folded.max()


def test_the_model_is_left_unchanged(trained):
    model, valid = trained
    before = copy.deepcopy(model.state_dict())
    model.train()
    sensitivity(model, valid, levels=(0.5,), norm="l1")
    assert model.training
    model.eval()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_allocate_picks_the_largest_level_within_budget():
    rows = [
        SensitivityRow("layer", "mlp.0", 0.5, 0.79, 0.001, 10),
        SensitivityRow("layer", "mlp.0", 0.8, 0.78, 0.004, 16),
        SensitivityRow("layer", "mlp.0", 0.9, 0.75, 0.030, 18),
        SensitivityRow("field", "C1", 0.5, 0.70, 0.090, 5),
        SensitivityRow("field", "C1", 0.9, 0.60, 0.190, 9),
        SensitivityRow("field", "C2", 0.5, 0.80, -0.001, 5),
        SensitivityRow("field", "C2", 0.9, 0.79, 0.005, 9),
        SensitivityRow("field", "C3", 0.5, 0.79, math.nan, 5),
    ]
    assert allocate(rows, max_auc_drop=0.005) == {
        "mlp.0": 0.8,
        "C1": 0.0,
        "C2": 0.9,
        "C3": 0.0,
    }
    assert allocate(rows, max_auc_drop=0.0)["C2"] == 0.5
    assert allocate(rows, max_auc_drop=1.0)["C1"] == 0.9


@pytest.mark.parametrize("budget", [-0.01, math.nan, math.inf])
def test_allocate_rejects_a_bad_budget(budget):
    with pytest.raises(ValueError, match="max_auc_drop: expected a finite value"):
        allocate([], budget)


def test_table_has_one_line_per_part_and_one_column_per_level(rows):
    lines = sensitivity_table(rows).splitlines()
    assert len(lines) == 2 + len(HIDDEN) + 26
    cells = [line.strip("|").split("|") for line in lines]
    assert all(len(line) == 2 + len(LEVELS) for line in cells)
    assert [c.strip() for c in cells[0][2:]] == [f"{level:g}" for level in LEVELS]
    c1 = next(line for line in cells if line[1].strip() == "C1")
    assert c1[-1].strip() == f"{_row(rows, 'C1', 0.95).auc_drop:.4f}"


def test_plot_is_a_real_png(rows, tmp_path):
    path = plot_sensitivity(rows, tmp_path / "plots" / "sensitivity.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000
    image = imread(path)
    width, height = FIGURE_SIZE
    assert image.shape == (round(height * DPI), round(width * DPI), 4)
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_plot_rejects_another_format(rows, tmp_path):
    with pytest.raises(ValueError, match=r"path: expected a \.png file"):
        plot_sensitivity(rows, tmp_path / "sensitivity.jpg")


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ((), "at least one level"),
        ((0.0, 0.5), r"shares in \(0, 1\)"),
        ((0.5, 1.0), r"shares in \(0, 1\)"),
        ((0.5, 0.2), "strictly increasing"),
        ((0.2, 0.2), "strictly increasing"),
    ],
)
def test_bad_levels_are_rejected(trained, levels, message):
    model, valid = trained
    with pytest.raises(ValueError, match=message):
        sensitivity(model, valid, levels=levels)


def test_bad_validation_rows_are_rejected(trained):
    model, valid = trained
    clicks = valid.take(valid.labels == 1)
    with pytest.raises(ValueError, match="clicks and non-clicks, got"):
        sensitivity(model, clicks)
    with pytest.raises(ValueError, match="got 0 rows"):
        sensitivity(model, valid.take(slice(0, 0)))
    with pytest.raises(ValueError, match="labels=None"):
        sensitivity(model, EncodedBatch(valid.sparse_ids, valid.dense, None))
    too_large = valid.sparse_ids.copy()
    too_large[0, 2] = model.num_embeddings[2]
    with pytest.raises(ValueError, match="field C3 holds ids outside"):
        sensitivity(model, EncodedBatch(too_large, valid.dense, valid.labels))
    with pytest.raises(ValueError, match="norm: expected one of"):
        sensitivity(model, valid, norm="l3")
    with pytest.raises(TypeError, match="valid: expected an EncodedBatch"):
        sensitivity(model, valid.sparse_ids)


def test_mask_helpers_reject_a_bad_index(trained):
    model, _ = trained
    with pytest.raises(ValueError, match=r"layer: expected an index in \[0, 2\)"):
        layer_keep(model, 2, 0.5)
    with pytest.raises(ValueError, match=r"field: expected an index in \[0, 26\)"):
        field_keep(model, 26, 0.5)
    with pytest.raises(ValueError, match="sparsity: expected a share"):
        field_keep(model, 0, 1.0)


def test_field_rows_carry_the_names_given(trained):
    model, valid = trained
    names = [f"field_{i}" for i in range(26)]
    rows = sensitivity(model, valid, levels=(0.5,), names=names)
    assert [r.name for r in rows if r.kind == "field"] == names
    with pytest.raises(ValueError, match=r"names: expected 26 field names"):
        sensitivity(model, valid, levels=(0.5,), names=names[:3])
