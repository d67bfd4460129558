import pytest
import torch
from torch import nn

from ctr.row_adam import RowAdam


def _train(optimiser_class, steps: int = 25) -> torch.Tensor:
    torch.manual_seed(0)
    table = nn.Embedding(500, 8, sparse=True)
    optimiser = optimiser_class(table.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 500, (128, 5), generator=generator)
        optimiser.zero_grad()
        table(ids).sin().sum().backward()
        optimiser.step()
    return table.weight.detach()


def test_same_weights_as_sparse_adam():
    assert torch.equal(_train(RowAdam), _train(torch.optim.SparseAdam))


def test_rows_not_looked_up_keep_their_weights():
    table = nn.Embedding(10, 4, sparse=True)
    before = table.weight.detach().clone()
    optimiser = RowAdam(table.parameters())
    table(torch.tensor([[1, 3]])).sum().backward()
    optimiser.step()
    changed = (table.weight.detach() != before).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [1, 3]


def test_a_dense_gradient_is_refused():
    layer = nn.Linear(3, 1)
    optimiser = RowAdam(layer.parameters())
    layer(torch.ones(1, 3)).sum().backward()
    with pytest.raises(TypeError, match="sparse=True"):
        optimiser.step()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"lr": 0}, "lr"), ({"betas": (0.9, 1.0)}, "betas"), ({"eps": -1}, "eps")],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RowAdam(nn.Embedding(2, 2, sparse=True).parameters(), **kwargs)
