"""Data-parallel training on torch.distributed, started by ``torchrun``.

``torchrun --nproc_per_node N`` sets ``RANK``, ``WORLD_SIZE`` and the
rendezvous address in each process's environment; :func:`init_from_env` joins
the group (gloo on CPU, nccl when CUDA is present). The dense layers'
gradients are averaged by ``DistributedDataParallel``; the embedding tables
are left out of it, and their sparse gradients are averaged here by gathering
every rank's looked-up rows with plain (dense) all-gathers, because gloo's
sparse all-reduce has been fragile across torch releases (pytorch/pytorch
issues 87497 and 111422). Validation predictions are gathered from every rank,
so the AUC is computed over the whole validation split, not averaged per rank.
"""

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_from_env() -> World:
    """Join the process group ``torchrun`` describes; one process when none.

    Raises:
        ValueError: ``WORLD_SIZE`` or ``RANK`` is not a valid integer.
    """
    size_text = os.environ.get("WORLD_SIZE", "1")
    rank_text = os.environ.get("RANK", "0")
    try:
        size, rank = int(size_text), int(rank_text)
    except ValueError as err:
        raise ValueError(
            f"WORLD_SIZE={size_text!r} / RANK={rank_text!r}: expected integers, as "
            "torchrun sets them"
        ) from err
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={size})")
    if size == 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        logger.info("rank %d of %d joined the %s group", rank, size, backend)
    return World(rank, size)


def shutdown(world: World) -> None:
    """Leave the group once every rank is done with it."""
    if world.distributed and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def gather_rows(values: np.ndarray, world: World) -> np.ndarray:
    """Every rank's ``values`` (1-D, lengths may differ), concatenated in rank order."""
    if not world.distributed:
        return values
    local = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    return torch.cat(gather_padded(local, world)).numpy()


def agree(flag: bool, world: World) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    if not world.distributed:
        return flag
    value = torch.tensor([1 if flag else 0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def data_parallel(model: torch.nn.Module, sparse: list[str], world: World):
    """``model`` wrapped for data-parallel training, the parameters named in
    ``sparse`` (sparse-gradient tables) left to :func:`average_sparse_gradients`.

    Every rank starts from rank 0's weights, tables included.
    """
    if not world.distributed:
        return model
    for name, param in model.named_parameters():
        if name in sparse:
            dist.broadcast(param.data, src=0)
    torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        model, sparse
    )
    return torch.nn.parallel.DistributedDataParallel(model)


def average_sparse_gradients(params: list[torch.Tensor], world: World) -> None:
    """Replace each parameter's sparse gradient by the mean over ranks.

    Every rank ends with the same gradient: the rows each rank looked up,
    concatenated in rank order and coalesced, divided by the number of ranks.
    """
    if not world.distributed:
        return
    for param in params:
        if param.grad is None:
            continue
        grad = param.grad.coalesce()
        rows = grad.indices()[0]
        values = grad.values()
        all_rows = gather_padded(rows, world)
        all_values = gather_padded(values, world)
        index = torch.cat(all_rows).unsqueeze(0)
        merged = torch.sparse_coo_tensor(
            index,
            torch.cat(all_values) / world.size,
            param.shape,
            check_invariants=True,
        )
        param.grad = merged.coalesce()


def gather_padded(local: torch.Tensor, world: World) -> list[torch.Tensor]:
    """Every rank's ``local`` (equal trailing shape, any length), in rank order."""
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world.size)]
    dist.all_gather(sizes, torch.tensor([len(local)]))
    longest = int(max(s.item() for s in sizes))
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: len(local)] = local
    gathered = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(gathered, padded)
    return [g[: int(s.item())] for g, s in zip(gathered, sizes, strict=True)]
