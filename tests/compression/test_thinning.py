import numpy as np
import pytest
import torch

from compression.thinning import remap_ids, thin_embedding_rows, thin_mlp
from ctr.config import ModelConfig
from ctr.train import predict
from ctr.wide_deep import WideDeep, count_params
from data.encoder import OOV_ID, Encoder
from serving.artifact import artifact_bytes, save_artifact
from tests.conftest import planted_batch


def _model_and_rows():
    raw = planted_batch(600)
    encoder = Encoder.fit(raw)
    torch.manual_seed(0)
    model = WideDeep(
        ModelConfig(embedding_dim=8, hidden_units=(32, 16)), encoder.num_embeddings, 26
    ).eval()
    return model, encoder, encoder.transform(raw)


def test_removing_zero_neurons_leaves_outputs_unchanged():
    model, _, rows = _model_and_rows()
    first, second = model.linear_layers()[:2]
    dead = torch.arange(32) % 4 != 0  # 24 of 32 neurons
    with torch.no_grad():
        # a neuron whose incoming weights and bias are zero outputs relu(0) = 0
        first.weight[dead] = 0
        first.bias[dead] = 0
    thinned = thin_mlp(model, [~dead, torch.ones(16, dtype=torch.bool)])
    assert thinned.config.hidden_units == (8, 16)
    assert thinned.linear_layers()[0].weight.shape == (8, 8 * 26 + 26)
    assert thinned.linear_layers()[1].weight.shape == (16, 8)
    np.testing.assert_allclose(predict(thinned, rows), predict(model, rows), atol=1e-6)


def test_thinning_shrinks_params_and_bytes_on_disk(tmp_path):
    model, encoder, _ = _model_and_rows()
    keep = [torch.arange(32) < 4, torch.arange(16) < 2]
    thinned = thin_mlp(model, keep)
    assert count_params(thinned) < count_params(model)
    save_artifact(tmp_path / "big", model, encoder)
    save_artifact(tmp_path / "small", thinned, encoder)
    big = artifact_bytes(tmp_path / "big")["model.safetensors"]
    small = artifact_bytes(tmp_path / "small")["model.safetensors"]
    # weights are stored dense and fp32: the saving is exactly the removed params
    assert big - small == pytest.approx(
        4 * (count_params(model) - count_params(thinned)), abs=512
    )
    assert not any("mask" in k or "orig" in k for k in thinned.state_dict())


def test_row_thinning_keeps_outputs_of_kept_rows_and_remaps_the_rest():
    model, encoder, rows = _model_and_rows()
    keep = [np.ones(n, dtype=bool) for n in model.num_embeddings]
    keep[0][2::2] = False  # drop every other value of C1
    thinned = thin_embedding_rows(model, keep)
    assert thinned.num_embeddings[0] == int(keep[0].sum())
    remapped = remap_ids(rows, keep)
    dropped = ~keep[0][rows.sparse_ids[:, 0]]
    assert (remapped.sparse_ids[dropped, 0] == OOV_ID).all()
    unchanged = ~dropped
    np.testing.assert_allclose(
        predict(thinned, remapped)[unchanged],
        predict(model, rows)[unchanged],
        atol=1e-6,
    )
    # the encoder thinned the same way encodes raw rows to the same ids
    raw = planted_batch(600)
    np.testing.assert_array_equal(
        encoder.keep_rows(keep).transform(raw).sparse_ids, remapped.sparse_ids
    )


def test_bad_masks_are_refused():
    model, _, _ = _model_and_rows()
    with pytest.raises(ValueError, match="expected 2 masks"):
        thin_mlp(model, [torch.ones(32, dtype=torch.bool)])
    with pytest.raises(ValueError, match="at least one True"):
        thin_mlp(
            model, [torch.zeros(32, dtype=torch.bool), torch.ones(16, dtype=torch.bool)]
        )
    keep = [np.ones(n, dtype=bool) for n in model.num_embeddings]
    keep[3][1] = False
    with pytest.raises(ValueError, match="reserved ids kept"):
        thin_embedding_rows(model, keep)


def test_removing_unused_embedding_dims_leaves_outputs_unchanged():
    from compression.importance import embedding_dim_importance
    from compression.thinning import embedding_columns, thin_embedding_dims

    model, _, rows = _model_and_rows()
    keep = torch.arange(8) % 2 == 0
    first = model.linear_layers()[0]
    with torch.no_grad():
        # the first layer ignores the odd dimensions of every field
        first.weight[:, ~embedding_columns(model, keep)] = 0
    scores = embedding_dim_importance(model)
    assert (scores[~keep] == 0).all() and (scores[keep] > 0).all()
    thinned = thin_embedding_dims(model, keep)
    assert thinned.config.embedding_dim == 4
    assert thinned.embedding.weight.shape == (sum(model.num_embeddings), 4)
    assert thinned.linear_layers()[0].weight.shape == (32, 4 * 26 + 26)
    np.testing.assert_allclose(predict(thinned, rows), predict(model, rows), atol=1e-6)
    with pytest.raises(ValueError, match="keep_dims: expected a boolean mask of 8"):
        thin_embedding_dims(model, torch.zeros(8, dtype=torch.bool))
