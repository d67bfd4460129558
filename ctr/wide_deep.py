"""Wide & deep CTR network: a linear term over every feature plus an MLP.

Following Cheng et al. (2016), "Wide & Deep Learning for Recommender Systems".
All sparse fields share one embedding table addressed through per-field
offsets, so a batch costs one gather instead of 26.
"""

import warnings

import torch
from torch import nn

from ctr.config import ModelConfig


class WideDeep(nn.Module):
    """Returns click logits; apply ``torch.sigmoid`` for probabilities.

    Args:
        config: embedding width, hidden units and dropout.
        num_embeddings: rows of each sparse field's table, reserved ids included.
        num_dense: width of the dense input (transformed values and flags);
            0 for a dataset without dense features (Avazu), where the dense
            input is an empty ``(batch_size, 0)`` tensor.
    """

    def __init__(
        self, config: ModelConfig, num_embeddings: list[int], num_dense: int
    ) -> None:
        super().__init__()
        if not num_embeddings or min(num_embeddings) < 1:
            raise ValueError(
                f"num_embeddings: expected positive table sizes, got {num_embeddings}"
            )
        if isinstance(num_dense, bool) or not isinstance(num_dense, int):
            raise TypeError(f"num_dense: expected an int, got {num_dense!r}")
        if num_dense < 0:
            raise ValueError(f"num_dense: expected an int >= 0, got {num_dense}")
        self.config = config
        self.num_embeddings = list(num_embeddings)
        self.num_dense = num_dense
        offsets = torch.tensor([0, *num_embeddings[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)

        total = sum(num_embeddings)
        self.embedding = nn.Embedding(total, config.embedding_dim, sparse=True)
        self.wide_sparse = nn.Embedding(total, 1, sparse=True)
        nn.init.normal_(self.embedding.weight, std=0.01)
        nn.init.zeros_(self.wide_sparse.weight)
        with warnings.catch_warnings():
            # an empty dense input has no weights to initialise; torch warns
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            self.wide_dense = nn.Linear(num_dense, 1)

        layers: list[nn.Module] = []
        width = len(num_embeddings) * config.embedding_dim + num_dense
        for units in config.hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = units
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, sparse_ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Logits for a batch.

        Args:
            sparse_ids: ``(batch_size, num_sparse)`` int64 per-field ids.
            dense: ``(batch_size, num_dense)`` float32.

        Returns:
            ``(batch_size,)`` logits.
        """
        index = sparse_ids + self.offsets  # (batch_size, num_sparse)
        embedded = self.embedding(index)  # (batch_size, num_sparse, embedding_dim)
        deep_input = torch.cat([embedded.flatten(1), dense], dim=1)
        deep = self.mlp(deep_input).squeeze(1)  # (batch_size,)
        wide = self.wide_sparse(index).sum(dim=(1, 2)) + self.wide_dense(dense).squeeze(
            1
        )
        return wide + deep  # (batch_size,)

    def linear_layers(self) -> list[nn.Linear]:
        """The deep part's ``Linear`` layers in order, output layer last."""
        return [m for m in self.mlp if isinstance(m, nn.Linear)]

    def embedding_parameters(self) -> list[nn.Parameter]:
        return [self.embedding.weight, self.wide_sparse.weight]

    def dense_parameters(self) -> list[nn.Parameter]:
        sparse = {id(p) for p in self.embedding_parameters()}
        return [p for p in self.parameters() if id(p) not in sparse]


def count_params(model: nn.Module) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in model.parameters())
