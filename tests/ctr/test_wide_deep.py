import pytest
import torch

from ctr.config import ModelConfig
from ctr.wide_deep import WideDeep, count_params


def test_forward_returns_one_logit_per_row():
    model = WideDeep(ModelConfig(embedding_dim=4, hidden_units=(8, 6)), [5] * 26, 26)
    ids = torch.randint(0, 5, (7, 26))
    logits = model(ids, torch.randn(7, 26))
    assert logits.shape == (7,)


def test_offsets_keep_fields_apart():
    model = WideDeep(
        ModelConfig(embedding_dim=2, hidden_units=(3,)), [3, 4] + [2] * 24, 26
    )
    assert model.offsets[:3].tolist() == [0, 3, 7]
    assert model.embedding.num_embeddings == 3 + 4 + 2 * 24


def test_param_count():
    model = WideDeep(ModelConfig(embedding_dim=2, hidden_units=(3,)), [2] * 26, 26)
    tables = 52 * 2 + 52
    mlp = (26 * 2 + 26) * 3 + 3 + 3 + 1
    wide = 26 + 1
    assert count_params(model) == tables + mlp + wide


def test_an_empty_dense_input_works_without_a_warning(recwarn):
    model = WideDeep(ModelConfig(embedding_dim=4, hidden_units=(8,)), [5] * 3, 0)
    logits = model(torch.randint(0, 5, (7, 3)), torch.empty(7, 0))
    assert logits.shape == (7,) and model.wide_dense.weight.shape == (1, 0)
    assert not [w for w in recwarn if "zero-element" in str(w.message)]


def test_num_dense_is_checked():
    config = ModelConfig(embedding_dim=4, hidden_units=(8,))
    with pytest.raises(ValueError, match=r"num_dense: expected an int >= 0, got -1"):
        WideDeep(config, [5] * 3, -1)
    with pytest.raises(TypeError, match=r"num_dense: expected an int"):
        WideDeep(config, [5] * 3, 2.0)
