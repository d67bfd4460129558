from collections import Counter

import numpy as np
import pytest

from data import encoder_fit
from data.batch import RawBatch
from data.encoder import Encoder
from data.encoder_fit import EncoderFit, top_keys
from tests.conftest import planted_batch


def chunks(batch: RawBatch, sizes: list[int]) -> list[RawBatch]:
    edges = np.cumsum([0, *sizes])
    assert edges[-1] == len(batch)
    return [batch.take(slice(a, b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


@pytest.mark.parametrize("min_count", [1, 2, 5])
def test_streamed_fit_equals_encoder_fit(monkeypatch, min_count):
    monkeypatch.setattr(encoder_fit, "MERGE_FLOOR", 8)  # merge runs often
    raw = planted_batch(3000, seed=3)
    raw.sparse[:, 3] = np.random.default_rng(0).integers(0, 2**32, 3000)  # rare
    raw.dense[:, 4] = np.nan  # a dense feature never present
    raw.dense[:, 5] = 7.0  # one without spread
    fit = EncoderFit(min_count=min_count)
    for part in chunks(raw, [1, 0, 999, 7, 1500, 493]):
        fit.update(part)
    streamed, reference = fit.finish(), Encoder.fit(raw, min_count=min_count)

    assert fit.rows == 3000 and streamed.min_count == min_count
    for got, expected in zip(
        streamed.vocabularies, reference.vocabularies, strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(
        streamed.dense_mean, reference.dense_mean, rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(streamed.dense_std, reference.dense_std, rtol=1e-12)
    assert streamed.dense_mean[4] == 0.0 and streamed.dense_std[4] == 1.0
    assert streamed.dense_std[5] == 1.0
    a, b = streamed.transform(raw), reference.transform(raw)
    np.testing.assert_array_equal(a.sparse_ids, b.sparse_ids)
    # equal to rounding: the constant I6 encodes as 0 here, as +-1e-13 there
    np.testing.assert_allclose(a.dense, b.dense, rtol=0, atol=1e-9)


def brute_force_top(keys: np.ndarray, min_count: int, max_vocab: int) -> list[int]:
    counts = Counter(int(k) for k in keys if k != -1)
    kept = [(-c, k) for k, c in counts.items() if c >= min_count]
    return sorted(k for _, k in sorted(kept)[:max_vocab])


@pytest.mark.parametrize("max_vocab", [1, 3, 10, 10_000])
def test_max_vocab_keeps_the_most_frequent_keys(max_vocab):
    raw = planted_batch(2000, seed=1)
    raw.sparse[:, 0] = np.random.default_rng(2).zipf(1.5, 2000) % 40  # many ties
    fit = EncoderFit(min_count=2, max_vocab=max_vocab)
    for part in chunks(raw, [600, 600, 800]):
        fit.update(part)
    encoder = fit.finish()
    for column in range(raw.sparse.shape[1]):
        expected = brute_force_top(raw.sparse[:, column], 2, max_vocab)
        assert encoder.vocabularies[column].tolist() == expected, column


def test_ties_go_to_the_smaller_key():
    keys = np.array([50, 40, 30, 20, 10])
    counts = np.array([2, 3, 3, 1, 3])
    assert top_keys(keys, counts, 2).tolist() == [10, 30]
    assert top_keys(keys, counts, 4).tolist() == [10, 30, 40, 50]
    assert top_keys(keys, counts, None).tolist() == keys.tolist()


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="min_count: expected an integer >= 1, got 0"):
        EncoderFit(min_count=0)
    with pytest.raises(TypeError, match="min_count: expected an int"):
        EncoderFit(min_count=2.0)
    with pytest.raises(ValueError, match="max_vocab: expected an integer >= 1 or"):
        EncoderFit(max_vocab=0)
    with pytest.raises(TypeError, match="max_vocab: expected an int or None"):
        EncoderFit(max_vocab=True)
    fit = EncoderFit()
    with pytest.raises(TypeError, match="batch: expected a RawBatch"):
        fit.update(np.zeros((3, 39)))
    with pytest.raises(ValueError, match="cannot fit an encoder on zero rows"):
        fit.finish()
    narrow = planted_batch(10)
    narrow = RawBatch(
        narrow.labels, narrow.dense[:, :5], narrow.sparse, narrow.ids, narrow.lines
    )
    with pytest.raises(ValueError, match="has 5 dense and 26 sparse columns"):
        fit.update(narrow)
