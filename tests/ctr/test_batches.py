import numpy as np
import pytest
import torch

from ctr.batches import Shuffle, epoch_batches, steps_per_epoch
from data.encoder import EncodedBatch


class FromCache:
    """A cache split: rows readable only by position, counting the reads."""

    def __init__(self, batch: EncodedBatch) -> None:
        self.batch, self.reads = batch, []

    def __len__(self) -> int:
        return len(self.batch)

    def read(self, start: int, stop: int) -> EncodedBatch:
        self.reads.append((start, stop))
        return self.batch.take(slice(start, stop))


def _rows(n: int) -> EncodedBatch:
    ids = np.arange(n, dtype=np.int64)[:, None].repeat(3, axis=1)
    return EncodedBatch(ids, ids[:, :2].astype(np.float32), (ids[:, 0] % 2) * 1.0)


def _epoch(source, shuffle, seed=0, skip=0):
    generator = torch.Generator().manual_seed(seed)
    return list(epoch_batches(source, shuffle, generator, skip)), generator


def test_in_memory_epoch_is_one_permutation():
    batches, _ = _epoch(_rows(1000), Shuffle(batch_size=64))
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([b.rows for b in batches]), order)
    first = batches[0]
    assert torch.equal(first.sparse_ids[:, 0], first.rows)  # inputs match rows


def test_cache_epoch_visits_every_row_once_reading_only_windows():
    source = FromCache(_rows(10_000))
    shuffle = Shuffle(batch_size=128, block_rows=1000, window_blocks=3)
    batches, _ = _epoch(source, shuffle)
    rows = torch.cat([b.rows for b in batches]).numpy()
    assert np.array_equal(np.sort(rows), np.arange(10_000))
    assert len(batches) == steps_per_epoch(source, shuffle) == 79
    assert max(stop - start for start, stop in source.reads) <= 1000
    assert not np.array_equal(rows, np.arange(10_000))  # shuffled


def test_ranks_take_disjoint_rows_in_the_same_number_of_steps():
    source = _rows(10_500)
    for kind in (lambda b: b, FromCache):
        per_rank = []
        for rank in (0, 1):
            shuffle = Shuffle(
                batch_size=100, block_rows=1000, window_blocks=2, rank=rank, world=2
            )
            batches, _ = _epoch(kind(source), shuffle)
            assert all(len(b.rows) == 50 for b in batches)
            per_rank.append(torch.cat([b.rows for b in batches]).numpy())
        assert len(per_rank[0]) == len(per_rank[1])
        assert not set(per_rank[0]) & set(per_rank[1])


@pytest.mark.parametrize("cached", [False, True])
def test_skipping_steps_gives_the_rest_of_the_same_epoch(cached):
    source = FromCache(_rows(5000)) if cached else _rows(5000)
    shuffle = Shuffle(batch_size=64, block_rows=512, window_blocks=2)
    whole, after_whole = _epoch(source, shuffle)
    rest, after_rest = _epoch(source, shuffle, skip=30)
    assert len(rest) == len(whole) - 30
    assert all(
        torch.equal(a.rows, b.rows) for a, b in zip(whole[30:], rest, strict=True)
    )
    assert torch.equal(after_whole.get_state(), after_rest.get_state())


def test_a_batch_that_does_not_split_over_ranks_is_refused():
    with pytest.raises(ValueError, match="multiple of 3"):
        Shuffle(batch_size=100, world=3)
