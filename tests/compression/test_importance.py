import pytest
import torch
from torch import nn

from compression.importance import neuron_importance, weight_importance


def test_weight_importance_l1_and_l2():
    w = torch.tensor([[-2.0, 1.0]])
    assert weight_importance(w, "l1").tolist() == [[2.0, 1.0]]
    assert weight_importance(w, "l2").tolist() == [[4.0, 1.0]]


def test_neuron_importance_is_the_row_norm():
    layer = nn.Linear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]]))
        layer.bias.zero_()
    assert neuron_importance(layer, "l2").tolist() == pytest.approx([5.0, 0.0, 2**0.5])
    assert neuron_importance(layer, "l1").tolist() == pytest.approx([7.0, 0.0, 2.0])


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="norm: expected one of"):
        weight_importance(torch.ones(1), "l3")


def test_row_frequency_counts_lookups_per_field():
    from compression.importance import embedding_row_frequency
    from ctr.config import ModelConfig
    from ctr.wide_deep import WideDeep

    model = WideDeep(
        ModelConfig(embedding_dim=2, hidden_units=(2,)), [3] + [2] * 25, 26
    )
    ids = torch.zeros((4, 26), dtype=torch.long)
    ids[:, 0] = torch.tensor([2, 2, 1, 0])
    counts = embedding_row_frequency(model, ids)
    assert counts[:3].tolist() == [1.0, 1.0, 2.0]  # field C1: ids 0, 1, 2
    assert counts[3].item() == 4.0  # id 0 of C2, in every row
