import pytest
import torch

from compression.selection import keep_by_sparsity, keep_by_threshold, magnitude_mask


def test_keep_by_sparsity_keeps_the_top_share():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3])
    assert keep_by_sparsity(scores, 0.5).tolist() == [False, True, True, False]
    assert keep_by_sparsity(scores, 0.99).sum() == 1  # never empty


def test_keep_by_threshold_and_its_floor():
    scores = torch.tensor([0.1, 0.9, 0.5])
    assert keep_by_threshold(scores, 0.4).tolist() == [False, True, True]
    assert keep_by_threshold(scores, 5.0).tolist() == [False, True, False]


def test_magnitude_mask_reaches_the_target_sparsity():
    weight = torch.randn(40, 50, generator=torch.Generator().manual_seed(0))
    mask = magnitude_mask(weight, sparsity=0.9)
    assert mask.shape == weight.shape
    assert mask.sum() == 200
    assert weight[mask].abs().min() >= weight[~mask].abs().max()


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="sparsity: expected a share in \\[0, 1\\)"):
        keep_by_sparsity(torch.ones(3), 1.0)
    with pytest.raises(ValueError, match="exactly one of sparsity and threshold"):
        magnitude_mask(torch.ones(3))
