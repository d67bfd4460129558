import os
import pickle

import pytest
import torch

from ctr.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)


def test_round_trip_keeps_tensors_and_plain_values(tmp_path):
    state = {"weights": torch.arange(6.0).reshape(2, 3), "step": 7, "history": [1.5]}
    path = save_checkpoint(tmp_path / CHECKPOINT_FILE, state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], state["weights"])
    assert loaded["step"] == 7 and loaded["history"] == [1.5]
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / CHECKPOINT_FILE, {"step": 1})

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot be saved")

    with pytest.raises(RuntimeError, match="cannot be saved"):
        save_checkpoint(path, {"step": 2, "bad": Unsaveable()})
    assert load_checkpoint(path)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]


def test_a_pickled_object_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / CHECKPOINT_FILE
    with open(path, "wb") as f:
        torch.save({"format": "slimctr-checkpoint", "x": Payload()}, f)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_files_of_other_kinds_are_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a slimctr checkpoint"):
        load_checkpoint(plain)
    text = tmp_path / "text.pt"
    text.write_bytes(pickle.dumps([1, 2])[:5])
    with pytest.raises(CheckpointError, match="delete it and start again"):
        load_checkpoint(text)
    with pytest.raises(FileNotFoundError, match="run without --resume"):
        load_checkpoint(tmp_path / "absent.pt")


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / f".{CHECKPOINT_FILE}.abc.tmp").write_bytes(b"half")
    (tmp_path / "keep.txt").write_text("x")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_damage_inside_a_tensor_is_found(tmp_path):
    path = save_checkpoint(tmp_path / CHECKPOINT_FILE, {"w": torch.zeros(50_000)})
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\x07" * 64  # inside the zeros, still loadable
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_a_pickle_inside_a_well_formed_checkpoint_is_refused(tmp_path):
    import hashlib
    import io

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    inner = io.BytesIO()
    torch.save({"x": Payload()}, inner)
    data = inner.getvalue()
    path = tmp_path / CHECKPOINT_FILE
    torch.save(
        {
            "format": "slimctr-checkpoint",
            "format_version": 2,
            "sha256": hashlib.sha256(data).hexdigest(),
            "state": torch.frombuffer(bytearray(data), dtype=torch.uint8),
        },
        path,
    )
    with pytest.raises(CheckpointError, match="more than tensors and plain values"):
        load_checkpoint(path)
    assert not marker.exists()
