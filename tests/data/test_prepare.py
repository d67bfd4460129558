import gzip
import itertools

import numpy as np
import pytest

from data.bad_lines import BadLinesError
from data.batch import RawBatch
from data.criteo import iter_criteo, read_criteo
from data.encoder import Encoder
from data.intermediate import Intermediate
from data.prepare import PrepareConfig, Reader, prepare_cache
from data.shards import open_cache
from data.split import Split
from data.synth import write_synthetic


def criteo_reader(chunk_rows=97, workers=2, on_bad_lines="error"):
    def batches(path, skipped):
        return iter_criteo(
            path, "auto", on_bad_lines, chunk_rows, skipped, workers=workers
        )

    return Reader(batches)


@pytest.fixture
def two_files(tmp_path):
    """1,000 synthetic rows split over a plain file and a gzipped one."""
    whole = tmp_path / "whole.tsv"
    write_synthetic(whole, 1000, seed=5)
    lines = whole.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "day_0.tsv", tmp_path / "day_1.gz"
    first.write_bytes(b"".join(lines[:600]))
    second.write_bytes(gzip.compress(b"".join(lines[600:])))
    return whole, [first, second]


def test_two_files_one_gzipped_give_the_in_memory_encoding(tmp_path, two_files):
    whole, paths = two_files
    config = PrepareConfig(min_count=2, chunk_rows=130, shard_rows=300)
    manifest = prepare_cache(paths, tmp_path / "cache", criteo_reader(), config)

    raw = read_criteo(whole).batch
    parts = [raw.take(part) for part in Split().bounds(len(raw))]
    encoder = Encoder.fit(parts[0], min_count=2)
    cache = open_cache(tmp_path / "cache")
    for expected, got in zip(
        encoder.vocabularies, cache.encoder.vocabularies, strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    for part, split in zip(parts, (cache.train, cache.valid, cache.test), strict=True):
        expected, got = encoder.transform(part), split.read_all()
        np.testing.assert_array_equal(got.sparse_ids, expected.sparse_ids)
        np.testing.assert_allclose(got.dense, expected.dense, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got.labels, expected.labels)

    assert [s["rows"] for s in manifest["sources"]] == [600, 400]
    assert manifest["sources"][1]["path"].endswith("day_1.gz")
    assert [s["rows"] for s in manifest["splits"]["train"]["shards"]] == [300, 300, 200]
    assert manifest["data"]["split"]["train"] == 800
    assert not list((tmp_path / "cache").glob(".intermediate-*"))


def test_random_split_is_seeded_and_independent_of_chunking(tmp_path, two_files):
    _, paths = two_files
    caches = []
    for name, chunk_rows, seed in [("a", 64, 7), ("b", 333, 7), ("c", 64, 8)]:
        config = PrepareConfig(
            Split(0.7, 0.2, 0.1), split_seed=seed, chunk_rows=chunk_rows
        )
        reader = criteo_reader(chunk_rows=chunk_rows)
        prepare_cache(paths, tmp_path / name, reader, config)
        caches.append(open_cache(tmp_path / name))
    a, b, c = caches
    assert [len(a.train), len(a.valid), len(a.test)] == [
        len(b.train),
        len(b.valid),
        len(b.test),
    ]
    np.testing.assert_array_equal(a.test.read_all().labels, b.test.read_all().labels)
    np.testing.assert_array_equal(
        a.valid.read_all().sparse_ids, b.valid.read_all().sparse_ids
    )
    assert 600 < len(a.train) < 800 and 50 < len(a.test) < 150
    assert len(a.train) + len(a.valid) + len(a.test) == 1000
    assert len(c.train) != len(a.train)  # another seed, another split
    assert a.manifest["split"] == {
        "method": "random",
        "fractions": [0.7, 0.2, 0.1],
        "seed": 7,
    }


def test_max_vocab_caps_every_field(tmp_path, two_files):
    _, paths = two_files
    config = PrepareConfig(min_count=1, max_vocab=5)
    manifest = prepare_cache(paths, tmp_path / "cache", criteo_reader(), config)
    encoder = open_cache(tmp_path / "cache").encoder
    assert max(len(v) for v in encoder.vocabularies) == 5
    assert manifest["encoder"]["max_vocab"] == 5


def test_bad_lines_fail_and_leave_no_cache_behind(tmp_path, two_files):
    _, paths = two_files
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(paths[0].read_bytes() + b"2" + b"\t" * 39 + b"\n")
    out = tmp_path / "cache"
    with pytest.raises(BadLinesError, match=r"bad.tsv:601: column label"):
        prepare_cache([paths[1], bad], out, criteo_reader())
    assert not out.exists()  # a folder the failed run made is removed too
    out.mkdir()
    with pytest.raises(BadLinesError):
        prepare_cache([paths[1], bad], out, criteo_reader())
    assert sorted(p.name for p in out.iterdir()) == []  # one that was there stays

    manifest = prepare_cache([paths[1], bad], out, criteo_reader(on_bad_lines="skip"))
    assert manifest["skipped_lines"] == {"bad_label": 1}
    assert manifest["sources"][1]["skipped_lines"] == {"bad_label": 1}


def test_an_error_mid_stream_removes_the_intermediate(tmp_path, two_files, monkeypatch):
    _, paths = two_files
    out = tmp_path / "cache"
    removed = []
    remove = Intermediate.remove

    def spy(self):
        removed.append(sorted(p.name for p in self.folder.iterdir()))
        remove(self)

    monkeypatch.setattr(Intermediate, "remove", spy)

    def failing(path, skipped):
        yield from itertools.islice(iter_criteo(path, chunk_rows=100), 3)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        prepare_cache(paths, out, Reader(failing))
    assert "000000.dense.bin" in removed[0]  # it held rows when the error came
    assert not out.exists()


def test_preparing_again_replaces_the_old_cache(tmp_path, two_files):
    _, paths = two_files
    out = tmp_path / "cache"
    prepare_cache(paths, out, criteo_reader(), PrepareConfig(shard_rows=100))
    assert len(open_cache(out).train.shards) == 8
    prepare_cache(paths[:1], out, criteo_reader(), PrepareConfig(shard_rows=1000))
    cache = open_cache(out)
    assert len(cache.train.shards) == 1 and len(cache.train) == 480
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "shard-00000.dense.npy",
        "shard-00000.labels.npy",
        "shard-00000.sparse_ids.npy",
    ]


def test_a_failed_prepare_keeps_the_cache_that_was_there(tmp_path, two_files):
    _, paths = two_files
    out = tmp_path / "cache"
    prepare_cache(paths, out, criteo_reader())
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(paths[0].read_bytes() + b"2" + b"\t" * 39 + b"\n")
    with pytest.raises(BadLinesError):
        prepare_cache([paths[1], bad], out, criteo_reader())
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert len(open_cache(out).train) == len(open_cache(out).train.read_all())


def test_inputs_are_checked_first(tmp_path, two_files):
    _, paths = two_files
    out = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="--data: no such file: .*nope.tsv"):
        prepare_cache([paths[0], tmp_path / "nope.tsv"], out, criteo_reader())
    with pytest.raises(ValueError, match="day_0.tsv is given twice"):
        prepare_cache([paths[0], paths[0]], out, criteo_reader())
    with pytest.raises(ValueError, match="expected at least one file"):
        prepare_cache([], out, criteo_reader())
    with pytest.raises(ValueError, match="shard_rows: expected an int >= 1"):
        PrepareConfig(shard_rows=0)
    with pytest.raises(ValueError, match="max_vocab"):
        PrepareConfig(max_vocab=-1)


def test_unlabeled_rows_and_too_few_rows_are_refused(tmp_path):
    unlabeled = tmp_path / "unlabeled.tsv"
    unlabeled.write_text("\t".join(["1"] * 13 + ["a"] * 26) + "\n")
    with pytest.raises(ValueError, match="unlabeled.tsv: has no label column"):
        prepare_cache([unlabeled], tmp_path / "a", criteo_reader())

    def two_rows(path, skipped):
        rows = np.arange(2)
        dense, sparse = np.zeros((2, 13)), np.zeros((2, 26), np.int64)
        yield RawBatch(np.zeros(2, np.float32), dense, sparse, rows, rows)

    with pytest.raises(ValueError, match="split: 2 rows are too few"):
        prepare_cache([unlabeled], tmp_path / "b", Reader(two_rows))
    with pytest.raises(ValueError, match="--split-seed: the random split of 2 rows"):
        prepare_cache(
            [unlabeled], tmp_path / "c", Reader(two_rows), PrepareConfig(split_seed=0)
        )
