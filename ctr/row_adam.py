"""Adam for embedding tables with sparse gradients, updating only looked-up rows.

The update is that of ``torch.optim.SparseAdam`` ("lazy" Adam: moments and
weights change only on the rows a batch looked up, with the bias correction of
the global step count), written with row gathers and scatters instead of
sparse-dense additions. On a (10⁶, 16) table and a batch of 4096 × 39 ids the
sparse additions dominate the step; ``index_select`` / ``index_copy_`` on the
unique rows cost a small fraction of it. The arithmetic follows SparseAdam's
order, so both give the same weights.
"""

import math

import torch


class RowAdam(torch.optim.Optimizer):
    """Lazy Adam over parameters whose gradients are sparse row sets.

    Args:
        params: tensors of shape ``(num_embeddings, embedding_dim)`` whose
            ``grad`` is a sparse COO tensor (``nn.Embedding(sparse=True)``).
        lr: step size.
        betas: decay rates of the first and second moments, each in [0, 1).
        eps: added to the root of the second moment.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr: expected a positive step size, got {lr}")
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas: expected two values in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"eps: expected a positive value, got {eps}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None) -> None:
        assert closure is None, "RowAdam does not re-evaluate the loss"
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise TypeError(
                        "RowAdam: expected a sparse gradient; build the table "
                        "with nn.Embedding(..., sparse=True) or use Adam"
                    )
                self._update(param, group["lr"], beta1, beta2, group["eps"])

    def _update(
        self, param: torch.Tensor, lr: float, beta1: float, beta2: float, eps: float
    ) -> None:
        grad = param.grad.coalesce()
        rows = grad.indices()[0]  # (num_unique,)
        values = grad.values()  # (num_unique, embedding_dim)
        state = self.state[param]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

        old_avg = exp_avg.index_select(0, rows)
        avg = values.sub(old_avg).mul_(1 - beta1).add_(old_avg)
        exp_avg.index_copy_(0, rows, avg)
        old_sq = exp_avg_sq.index_select(0, rows)
        sq = values.pow(2).sub_(old_sq).mul_(1 - beta2).add_(old_sq)
        exp_avg_sq.index_copy_(0, rows, sq)

        step = state["step"]
        step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        change = avg.div_(sq.sqrt_().add_(eps)).mul_(-step_size)
        param.index_copy_(0, rows, param.index_select(0, rows).add_(change))
