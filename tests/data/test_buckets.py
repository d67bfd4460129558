import numpy as np

from data.buckets import bucket_keys
from data.encoder import Encoder
from data.encoder_fit import EncoderFit
from data.schema import MISSING_KEY
from tests.conftest import planted_batch


def test_small_values_keep_their_own_bucket_and_large_ones_share_log_buckets():
    values = np.array([[np.nan, -2, 0, 1, 2, 3, 10, 100, 1e6]])
    keys = bucket_keys(values)[0]
    assert keys[0] == MISSING_KEY
    shifted = keys[1:] - keys[2]  # relative to the bucket of 0
    # -2, 0, 1, 2 as themselves; 3 + floor(ln(x)^2) above 2, so 3 and 1 differ
    assert shifted.tolist() == [-2, 0, 1, 2, 4, 8, 24, 193]
    assert (keys[1:] >= 0).all()


def test_bucket_fields_follow_the_sparse_ones_and_survive_save_and_load(tmp_path):
    raw = planted_batch(2000)
    encoder = Encoder.fit(raw, min_count=2, dense_buckets=True)
    assert len(encoder.num_embeddings) == 26 + 13
    assert encoder.sparse_features[26:] == tuple(f"I{i}_bucket" for i in range(1, 14))
    encoded = encoder.transform(raw)
    assert encoded.sparse_ids.shape == (2000, 39)
    assert encoded.dense.shape == (2000, 26)  # dense values stay as inputs too
    # a missing dense value is the missing id of its bucket field
    assert (encoded.sparse_ids[:, 26][np.isnan(raw.dense[:, 0])] == 0).all()

    encoder.save(tmp_path)
    loaded = Encoder.load(tmp_path)
    assert loaded.dense_buckets
    assert np.array_equal(loaded.transform(raw).sparse_ids, encoded.sparse_ids)


def test_the_streamed_fit_counts_bucket_fields_like_the_whole_fit():
    raw = planted_batch(3000)
    fit = EncoderFit(min_count=2, dense_buckets=True)
    for start in range(0, 3000, 700):
        fit.update(raw.take(slice(start, start + 700)))
    streamed = fit.finish()
    whole = Encoder.fit(raw, min_count=2, dense_buckets=True)
    assert streamed.dense_buckets
    for a, b in zip(streamed.vocabularies, whole.vocabularies, strict=True):
        assert np.array_equal(a, b)
