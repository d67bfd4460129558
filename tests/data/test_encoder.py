import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from data.avazu import AVAZU
from data.batch import RawBatch
from data.encoder import MISSING_ID, OOV_ID, Encoder, signed_log
from data.schema import CRITEO, Schema
from tests.conftest import planted_batch


def test_vocabulary_respects_min_count_and_reserved_ids():
    raw = planted_batch(500)
    raw.sparse[:3, 0] = [123456789, 123456789, 987654321]  # seen twice and once
    encoder = Encoder.fit(raw, min_count=2)
    encoded = encoder.transform(raw)
    assert 123456789 in encoder.vocabularies[0]
    assert 987654321 not in encoder.vocabularies[0]
    assert encoded.sparse_ids[2, 0] == OOV_ID
    assert (encoded.sparse_ids[raw.sparse == -1] == MISSING_ID).all()
    assert encoded.sparse_ids.min() >= 0
    assert (encoded.sparse_ids.max(axis=0) < encoder.num_embeddings).all()


def test_unseen_values_become_oov_without_error():
    train = planted_batch(300, seed=0)
    encoder = Encoder.fit(train)
    fresh = planted_batch(50, seed=1)
    fresh.sparse[:] = 0xFFFFFFF0  # never seen in training
    encoded = encoder.transform(fresh)
    assert (encoded.sparse_ids == OOV_ID).all()
    assert encoder.oov_rates(encoded)["C1"] == 1.0


def test_dense_transform_is_finite_for_negatives_huge_and_missing():
    raw = planted_batch(100)
    raw.dense[0, :3] = [-2.0, 9.223372036854776e18, np.nan]
    encoded = Encoder.fit(raw).transform(raw)
    assert np.isfinite(encoded.dense).all()
    assert encoded.dense[0, 13 + 2] == 1.0  # the missing flag of I3
    assert encoded.dense[0, 2] == 0.0
    assert signed_log(np.array([-1.0]))[0] == pytest.approx(-np.log(2))


def test_fit_uses_only_the_rows_given():
    raw = planted_batch(200)
    encoder = Encoder.fit(raw.take(slice(0, 100)))
    later_only = set(raw.sparse[100:, 5]) - set(raw.sparse[:100, 5]) - {-1}
    assert not later_only & set(encoder.vocabularies[5].tolist())


def test_round_trip_gives_identical_encoding(tmp_path):
    raw = planted_batch(400)
    encoder = Encoder.fit(raw, min_count=2)
    encoder.save(tmp_path)
    loaded = Encoder.load(tmp_path)
    a, b = encoder.transform(raw), loaded.transform(raw)
    np.testing.assert_array_equal(a.sparse_ids, b.sparse_ids)
    np.testing.assert_array_equal(a.dense, b.dense)
    assert loaded.min_count == 2


def test_vocabulary_is_stored_as_32_bit_keys(tmp_path):
    raw = planted_batch(400)
    raw.sparse[0, 0] = 0xFFFFFFFF  # the largest 8-hex-digit hash
    encoder = Encoder.fit(raw)
    encoder.save(tmp_path)
    size = (tmp_path / "vocabulary.safetensors").stat().st_size
    keys = sum(len(v) for v in encoder.vocabularies)
    assert size < keys * 4 + 4096
    assert 0xFFFFFFFF in Encoder.load(tmp_path).vocabularies[0]


def test_keep_rows_folds_dropped_values_into_oov():
    raw = planted_batch(400)
    encoder = Encoder.fit(raw)
    keep = [np.ones(n, dtype=bool) for n in encoder.num_embeddings]
    keep[0][2:] = False  # drop every value of C1
    smaller = encoder.keep_rows(keep)
    assert smaller.num_embeddings[0] == 2
    encoded = smaller.transform(raw)
    present = raw.sparse[:, 0] != -1
    assert (encoded.sparse_ids[present, 0] == OOV_ID).all()


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="min_count: expected an integer >= 1"):
        Encoder.fit(planted_batch(10), min_count=0)
    with pytest.raises(FileNotFoundError, match="no encoder here"):
        Encoder.load(tmp_path)
    (tmp_path / "encoder.json").write_text(
        '{"format": "slimctr-encoder", "format_version": 9}'
    )
    with pytest.raises(ValueError, match="format_version 9 is not supported"):
        Encoder.load(tmp_path)


def test_empty_batch_is_refused():
    empty = RawBatch(
        np.zeros(0, np.float32),
        np.zeros((0, 13)),
        np.zeros((0, 26), np.int64),
        np.zeros(0),
        np.zeros(0, np.int64),
    )
    with pytest.raises(ValueError, match="zero rows"):
        Encoder.fit(empty)


def string_keyed_batch(rows: int, seed: int = 0) -> RawBatch:
    """Rows of a three-field schema without dense features, keyed by 64-bit
    hashes: negative, past 32 bits, and small."""
    rng = np.random.default_rng(seed)
    pool = np.array([-(2**63), -5, 2**32 + 7, 2**62, 3], dtype=np.int64)
    sparse = pool[rng.integers(0, len(pool), size=(rows, 3))]
    sparse[:, 2] = rng.integers(0, 24, rows)  # a field of small keys
    sparse[0, 0] = -1  # missing
    labels = rng.integers(0, 2, rows).astype(np.float32)
    lines = np.arange(1, rows + 1)
    return RawBatch(labels, np.empty((rows, 0)), sparse, lines.astype(str), lines)


THREE = Schema(name="three", label="y", sparse_features=("a", "b", "c"))


def test_64_bit_keys_round_trip_losslessly(tmp_path):
    raw = string_keyed_batch(300)
    encoder = Encoder.fit(raw, schema=THREE)
    assert -(2**63) in encoder.vocabularies[0] and 2**32 + 7 in encoder.vocabularies[1]
    encoder.save(tmp_path)
    stored = load_file(str(tmp_path / "vocabulary.safetensors"))
    assert stored["a"].dtype == np.int64 and stored["c"].dtype == np.int32
    loaded = Encoder.load(tmp_path)
    assert loaded.schema == THREE and loaded.sparse_features == ("a", "b", "c")
    for a, b in zip(encoder.vocabularies, loaded.vocabularies, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        encoder.transform(raw).sparse_ids, loaded.transform(raw).sparse_ids
    )


def test_no_dense_features_give_an_empty_dense_input():
    raw = string_keyed_batch(50)
    encoder = Encoder.fit(raw, schema=THREE)
    encoded = encoder.transform(raw)
    assert encoder.dense_width == 0 and encoded.dense.shape == (50, 0)
    assert encoded.dense.dtype == np.float32


def test_criteo_encoder_json_records_its_schema_and_old_files_still_load(tmp_path):
    raw = planted_batch(200)
    Encoder.fit(raw).save(tmp_path)
    settings = json.loads((tmp_path / "encoder.json").read_text())
    assert settings["schema"]["name"] == "criteo"
    assert settings["sparse_features"][:2] == ["C1", "C2"]
    assert all(
        v.dtype == np.int32
        for v in load_file(str(tmp_path / "vocabulary.safetensors")).values()
    )
    del settings["schema"]  # as written before schemas existed
    (tmp_path / "encoder.json").write_text(json.dumps(settings))
    assert Encoder.load(tmp_path).schema == CRITEO


def test_rows_of_another_schema_are_refused():
    encoder = Encoder.fit(planted_batch(100))
    with pytest.raises(ValueError, match=r"batch: has 0 dense and 3 sparse columns, "):
        encoder.transform(string_keyed_batch(10))
    with pytest.raises(ValueError, match=r"the schema avazu has 0 and 23"):
        Encoder.fit(planted_batch(10), schema=AVAZU)


def test_keep_rows_keeps_the_schema():
    encoder = Encoder.fit(string_keyed_batch(100), schema=THREE)
    keep = [np.ones(n, dtype=bool) for n in encoder.num_embeddings]
    assert encoder.keep_rows(keep).schema == THREE
