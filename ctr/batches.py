"""Training rows in shuffled batches, from memory or from a memory-mapped cache.

A row source is either an :class:`~data.encoder.EncodedBatch` held in memory or
any object with ``__len__`` and ``read(start, stop) -> EncodedBatch`` (a split
of the cache written by ``slimctr prepare``).

* In memory, an epoch is one permutation of all rows.
* From a cache, an epoch visits blocks of ``block_rows`` consecutive rows in a
  random order and shuffles rows within a window of ``window_blocks`` blocks,
  so only a window is ever read into memory and the reads stay sequential.

With ``world > 1`` each rank trains on its own rows: in memory, its slice of
every global batch; from a cache, its own blocks (every ``world``-th of the
epoch's block order). Every rank takes the same number of steps.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from data.encoder import EncodedBatch


class Rows(Protocol):
    """Encoded rows that can be read by position."""

    def __len__(self) -> int: ...

    def read(self, start: int, stop: int) -> EncodedBatch: ...


def read_rows(source: "EncodedBatch | Rows", start: int, stop: int) -> EncodedBatch:
    """Rows ``start:stop`` of an in-memory batch or a cache split."""
    if isinstance(source, EncodedBatch):
        return source.take(slice(start, stop))
    return source.read(start, stop)


def labels_of(source: "EncodedBatch | Rows", chunk_rows: int = 1 << 20) -> np.ndarray:
    """All labels of a source, ``(n,)`` float32, read in chunks."""
    if isinstance(source, EncodedBatch):
        return source.labels
    parts = [
        read_rows(source, start, min(start + chunk_rows, len(source))).labels
        for start in range(0, len(source), chunk_rows)
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


@dataclass(frozen=True)
class Batch:
    """One step's rows: model inputs and their positions in the source.

    Attributes:
        sparse_ids: ``(batch_size, num_sparse)`` int64.
        dense: ``(batch_size, num_dense)`` float32.
        labels: ``(batch_size,)`` float32.
        rows: ``(batch_size,)`` int64 row positions in the training source.
    """

    sparse_ids: torch.Tensor
    dense: torch.Tensor
    labels: torch.Tensor
    rows: torch.Tensor


@dataclass(frozen=True)
class Shuffle:
    """How one epoch's rows are ordered and shared among ranks.

    Attributes:
        batch_size: global rows per step, split evenly among ranks.
        block_rows: consecutive rows read together from a cache.
        window_blocks: blocks whose rows are shuffled together.
        rank, world: this process's index and the number of processes.
    """

    batch_size: int
    block_rows: int = 65_536
    window_blocks: int = 8
    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if self.batch_size % self.world:
            raise ValueError(
                f"train.batch_size: {self.batch_size} does not split evenly over "
                f"{self.world} processes; use a multiple of {self.world}"
            )

    @property
    def local_batch(self) -> int:
        return self.batch_size // self.world


def steps_per_epoch(source: "EncodedBatch | Rows", shuffle: Shuffle) -> int:
    """Steps in one epoch, the same on every rank.

    One process takes every row, the last batch possibly short. Several
    processes drop what does not fill a whole step on every rank: in memory a
    short last batch, from a cache the short last block and the rows past a
    whole number of blocks per rank.
    """
    n = len(source)
    if shuffle.world == 1:
        return math.ceil(n / shuffle.batch_size)
    if isinstance(source, EncodedBatch):
        return n // shuffle.batch_size
    blocks_per_rank = n // shuffle.block_rows // shuffle.world
    return blocks_per_rank * shuffle.block_rows // shuffle.local_batch


def epoch_batches(
    source: "EncodedBatch | Rows",
    shuffle: Shuffle,
    generator: torch.Generator,
    skip: int = 0,
) -> Iterator[Batch]:
    """This rank's batches for one epoch, after the first ``skip`` steps.

    ``generator`` is advanced by exactly one epoch's draws whatever ``skip``
    is, so a resumed epoch sees the same order as an uninterrupted one.
    """
    if isinstance(source, EncodedBatch):
        return _memory_batches(source, shuffle, generator, skip)
    return _cache_batches(source, shuffle, generator, skip)


def _to_batch(part: EncodedBatch, rows: np.ndarray) -> Batch:
    return Batch(
        torch.from_numpy(np.ascontiguousarray(part.sparse_ids, dtype=np.int64)),
        torch.from_numpy(np.ascontiguousarray(part.dense, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(part.labels, dtype=np.float32)),
        torch.from_numpy(rows.astype(np.int64, copy=False)),
    )


def _memory_batches(
    source: EncodedBatch, shuffle: Shuffle, generator: torch.Generator, skip: int
) -> Iterator[Batch]:
    order = torch.randperm(len(source), generator=generator).numpy()
    local = shuffle.local_batch
    for step in range(skip, steps_per_epoch(source, shuffle)):
        batch = order[step * shuffle.batch_size : (step + 1) * shuffle.batch_size]
        rows = batch[shuffle.rank * local : (shuffle.rank + 1) * local]
        yield _to_batch(source.take(rows), rows)


def _cache_batches(
    source: Rows, shuffle: Shuffle, generator: torch.Generator, skip: int
) -> Iterator[Batch]:
    # several ranks share only whole blocks, so that each has as many rows
    num_blocks = (
        math.ceil(len(source) / shuffle.block_rows)
        if shuffle.world == 1
        else len(source) // shuffle.block_rows
    )
    block_order = torch.randperm(num_blocks, generator=generator).numpy()
    mine = block_order[shuffle.rank :: shuffle.world]
    # one seed per window, all drawn now so the generator's use is fixed
    num_windows = math.ceil(num_blocks / shuffle.window_blocks)
    window_seeds = torch.randint(
        0, 2**62, (num_windows + 1,), generator=generator
    ).tolist()

    local, steps = shuffle.local_batch, steps_per_epoch(source, shuffle)
    step, carried = 0, None
    for w, first in enumerate(range(0, len(mine), shuffle.window_blocks)):
        rows, part = _read_window(
            source, mine[first : first + shuffle.window_blocks], shuffle.block_rows
        )
        perm = np.random.default_rng(window_seeds[w]).permutation(len(rows))
        rows, part = rows[perm], part.take(perm)
        if carried is not None:
            rows, part = np.concatenate([carried[0], rows]), _concat(carried[1], part)
        whole = len(rows) // local * local
        for start in range(0, whole, local):
            if step >= steps:
                return
            if step >= skip:
                index = slice(start, start + local)
                yield _to_batch(part.take(index), rows[index])
            step += 1
        carried = rows[whole:], part.take(slice(whole, None))
    if step < steps and carried is not None and len(carried[0]) and step >= skip:
        yield _to_batch(carried[1], carried[0])  # one process: the short last batch


def _read_window(
    source: Rows, blocks: np.ndarray, block_rows: int
) -> tuple[np.ndarray, EncodedBatch]:
    parts, rows = [], []
    for block in sorted(blocks.tolist()):
        start = block * block_rows
        stop = min(start + block_rows, len(source))
        parts.append(read_rows(source, start, stop))
        rows.append(np.arange(start, stop, dtype=np.int64))
    part = parts[0] if len(parts) == 1 else _concat(*parts)
    return np.concatenate(rows), part


def _concat(*parts: EncodedBatch) -> EncodedBatch:
    return EncodedBatch(
        np.concatenate([p.sparse_ids for p in parts]),
        np.concatenate([p.dense for p in parts]),
        np.concatenate([p.labels for p in parts]),
    )
