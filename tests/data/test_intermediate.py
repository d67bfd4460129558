import numpy as np
import pytest

from data.intermediate import Intermediate

COLUMNS = {
    "labels": (np.float32, None),
    "dense": (np.float64, 3),
    "sparse": (np.int64, 2),
    "empty": (np.float64, 0),
}


def rows(start, stop):
    n = stop - start
    index = np.arange(start, stop)
    return {
        "labels": (index % 2).astype(np.float32),
        "dense": np.repeat(index[:, None] + 0.5, 3, axis=1),
        "sparse": np.stack([index, -index], axis=1),
        "empty": np.empty((n, 0)),
    }


def test_rows_read_back_by_range_and_the_folder_goes(tmp_path):
    folder = tmp_path / "tmp"
    folder.mkdir()
    with Intermediate(folder, COLUMNS, segment_rows=4) as store:
        for start, stop in [(0, 5), (5, 5), (5, 12), (12, 14)]:
            store.append(**rows(start, stop))
        store.close()
        assert store.rows == 14
        assert len(list(folder.glob("*.dense.bin"))) == 4  # 4 + 4 + 4 + 2 rows
        for start, stop in [(0, 14), (3, 9), (11, 12), (4, 8), (4, 4), (14, 14)]:
            got, expected = store.read(start, stop), rows(start, stop)
            for name in COLUMNS:
                np.testing.assert_array_equal(got[name], expected[name])
    assert not folder.exists()


def test_released_rows_are_deleted_segment_by_segment(tmp_path):
    store = Intermediate(tmp_path, COLUMNS, segment_rows=4)
    store.append(**rows(0, 10))
    store.close()
    store.release(7)  # the segment of rows 4..7 is still needed
    assert store.released == 4
    assert sorted(p.name[:6] for p in tmp_path.glob("*.labels.bin")) == [
        "000001",
        "000002",
    ]
    np.testing.assert_array_equal(store.read(4, 10)["sparse"], rows(4, 10)["sparse"])
    with pytest.raises(ValueError, match="expected 4 <= start"):
        store.read(3, 5)
    store.release(10)
    assert store.released == 10 and not list(tmp_path.glob("*.bin"))


def test_misuse_is_refused(tmp_path):
    store = Intermediate(tmp_path, COLUMNS)
    with pytest.raises(RuntimeError, match="read: close the intermediate"):
        store.read(0, 0)
    with pytest.raises(RuntimeError, match="release: close the intermediate"):
        store.release(0)
    with pytest.raises(ValueError, match="segment_rows: expected >= 1, got 0"):
        Intermediate(tmp_path, COLUMNS, segment_rows=0)
    with pytest.raises(ValueError, match=r"expected the columns \['dense'"):
        store.append(labels=np.zeros(2, np.float32))
    bad = {**rows(0, 2), "dense": np.zeros((2, 4))}
    with pytest.raises(ValueError, match=r"dense: expected shape \(2, 3\)"):
        store.append(**bad)
    store.close()
    with pytest.raises(ValueError, match="0 <= start <= stop <= 0"):
        store.read(0, 1)
    with pytest.raises(RuntimeError, match="append: the intermediate is closed"):
        store.append(**rows(0, 1))
    store.remove()
    assert not tmp_path.exists()
