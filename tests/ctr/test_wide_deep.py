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
