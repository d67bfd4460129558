import json
import logging

import numpy as np
import pytest

from data.encoder import Encoder
from data.shards import (
    CACHE_FORMAT,
    CACHE_VERSION,
    SPLITS,
    CacheError,
    SplitWriter,
    encoder_sha256,
    open_cache,
    shard_path,
    write_manifest,
)
from tests.conftest import planted_batch

ROWS = {"train": 23, "valid": 7, "test": 5}
SHARD_ROWS = 4


def write_cache(folder, source=None):
    """A cache of planted rows whose splits span several 4-row shards; returns
    the encoded rows of each split."""
    raw = planted_batch(sum(ROWS.values()), seed=4)
    encoder = Encoder.fit(raw, min_count=1)
    encoder.save(folder)
    encoded, splits, start = {}, {}, 0
    for name, rows in ROWS.items():
        encoded[name] = encoder.transform(raw.take(slice(start, start + rows)))
        start += rows
        writer = SplitWriter(folder / name, rows, SHARD_ROWS, 26, 26)
        for low, high in [(0, 1), (1, 6), (6, rows)]:  # uneven writes
            writer.write(encoded[name].take(slice(low, high)))
        splits[name] = {"rows": rows, "shards": writer.close()}
    manifest = {
        "format": CACHE_FORMAT,
        "format_version": CACHE_VERSION,
        "encoder_sha256": encoder_sha256(folder),
        "sources": [] if source is None else [source],
        "splits": splits,
        "data": {"rows": sum(ROWS.values())},
    }
    write_manifest(folder, manifest)
    return encoded


def test_round_trip_across_shards(tmp_path):
    encoded = write_cache(tmp_path)
    cache = open_cache(tmp_path)
    assert [len(cache.split(name)) for name in SPLITS] == list(ROWS.values())
    assert [s.rows for s in cache.train.shards] == [4, 4, 4, 4, 4, 3]
    for name in SPLITS:
        got, expected = cache.split(name).read_all(), encoded[name]
        assert got.sparse_ids.dtype == np.int64 and got.dense.dtype == np.float32
        np.testing.assert_array_equal(got.sparse_ids, expected.sparse_ids)
        np.testing.assert_array_equal(got.dense, expected.dense)
        np.testing.assert_array_equal(got.labels, expected.labels)


@pytest.mark.parametrize(
    "start, stop", [(0, 4), (3, 5), (2, 19), (4, 8), (22, 23), (9, 9), (0, 23)]
)
def test_read_a_range_spanning_shards(tmp_path, start, stop):
    expected = write_cache(tmp_path)["train"].take(slice(start, stop))
    got = open_cache(tmp_path).train.read(start, stop)
    assert len(got) == stop - start
    np.testing.assert_array_equal(got.sparse_ids, expected.sparse_ids)
    np.testing.assert_array_equal(got.dense, expected.dense)
    np.testing.assert_array_equal(got.labels, expected.labels)


def test_read_checks_the_range(tmp_path):
    write_cache(tmp_path)
    train = open_cache(tmp_path).train
    with pytest.raises(ValueError, match=r"0 <= start <= stop <= 23 .*got 5, 24"):
        train.read(5, 24)
    with pytest.raises(ValueError, match="got 6, 5"):
        train.read(6, 5)
    with pytest.raises(TypeError, match="start: expected an int"):
        train.read(1.0, 5)


def test_a_folder_that_is_not_a_cache(tmp_path):
    with pytest.raises(CacheError, match=r"is not a folder; write a cache there"):
        open_cache(tmp_path / "nothing")
    with pytest.raises(CacheError, match=r"manifest.json not found: .* not a slimctr"):
        open_cache(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="manifest.json: not valid JSON"):
        open_cache(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CacheError, match="not a slimctr cache manifest"):
        open_cache(tmp_path)


def edit_manifest(folder, **changes):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_an_old_version_is_refused_with_the_fix(tmp_path):
    write_cache(tmp_path)
    edit_manifest(tmp_path, format_version=1)
    with pytest.raises(
        CacheError,
        match=r"manifest.json: cache format_version 1 is not supported; this "
        r"slimctr reads version 2; prepare the cache again with slimctr prepare",
    ):
        open_cache(tmp_path)


def test_a_missing_shard_names_the_file(tmp_path):
    write_cache(tmp_path)
    missing = shard_path(tmp_path, "valid", "shard-00001", "labels")
    missing.unlink()
    with pytest.raises(
        CacheError,
        match=rf"{missing}: missing; the cache is incomplete; prepare the cache",
    ):
        open_cache(tmp_path)


def test_a_shard_of_the_wrong_dtype_or_shape_names_the_file(tmp_path):
    write_cache(tmp_path)
    path = shard_path(tmp_path, "train", "shard-00002", "sparse_ids")
    np.save(path, np.zeros((4, 26), dtype=np.int64))
    with pytest.raises(CacheError, match=rf"{path}: expected int32 of shape \(4, 26\)"):
        open_cache(tmp_path)
    np.save(path, np.zeros((3, 26), dtype=np.int32))
    with pytest.raises(CacheError, match=r"found int32 of shape \(3, 26\)"):
        open_cache(tmp_path)
    path.write_bytes(b"not numpy")
    with pytest.raises(CacheError, match=rf"{path}: not a readable .npy file"):
        open_cache(tmp_path)


def test_a_bad_shard_entry_or_encoder_is_refused(tmp_path):
    write_cache(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    good = manifest["splits"]
    bad = {**good, "test": {"shards": [{"name": "../../etc/passwd", "rows": 1}]}}
    edit_manifest(tmp_path, splits=bad)
    with pytest.raises(CacheError, match=r"splits.test.shards holds .*expected"):
        open_cache(tmp_path)
    edit_manifest(tmp_path, splits=good, encoder_sha256="0" * 64)
    with pytest.raises(CacheError, match=r"\(fingerprint mismatch\); copy the cache"):
        open_cache(tmp_path)


def test_a_changed_source_is_warned_about(tmp_path, caplog):
    source = tmp_path / "rows.tsv"
    source.write_text("x")
    stat = source.stat()
    entry = {"path": str(source), "bytes": stat.st_size, "mtime": stat.st_mtime}
    write_cache(tmp_path / "cache", source=entry)
    with caplog.at_level(logging.WARNING):
        open_cache(tmp_path / "cache")
    assert not caplog.records
    source.write_text("changed")
    with caplog.at_level(logging.WARNING):
        open_cache(tmp_path / "cache")
    assert "changed since the cache was written" in caplog.text
    source.unlink()
    with caplog.at_level(logging.WARNING):
        open_cache(tmp_path / "cache")
    assert "is gone" in caplog.text


def test_writer_refuses_rows_past_those_announced(tmp_path):
    encoded = Encoder.fit(planted_batch(10)).transform(planted_batch(10))
    writer = SplitWriter(tmp_path / "train", 6, 4, 26, 26)
    writer.write(encoded.take(slice(0, 6)))
    with pytest.raises(ValueError, match="more rows than the 6 announced"):
        writer.write(encoded.take(slice(0, 1)))


@pytest.mark.parametrize(
    "array, value, what",
    [
        ("labels", 7.0, "a label other than 0 or 1"),
        ("dense", np.nan, "a dense value not finite"),
        ("sparse_ids", -7, "an id outside its table"),
        ("sparse_ids", 10**6, "an id outside its table"),
    ],
)
def test_damaged_rows_are_refused_naming_file_and_row(tmp_path, array, value, what):
    write_cache(tmp_path)
    path = tmp_path / "train" / f"shard-00001.{array}.npy"
    values = np.load(path)
    values.flat[values[0].size * 2] = value  # row 2 of the second shard
    np.save(path, values)
    train = open_cache(tmp_path).train
    train.read(0, 4)  # the first shard is intact
    with pytest.raises(
        CacheError, match=rf"shard-00001.{array}.npy: row 2 holds {what}"
    ):
        train.read(0, 10)
