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
