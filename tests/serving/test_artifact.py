import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from ctr.config import ModelConfig
from ctr.train import predict
from ctr.wide_deep import WideDeep
from data.encoder import Encoder
from serving.artifact import ArtifactError, artifact_bytes, load_artifact, save_artifact
from tests.conftest import planted_batch


@pytest.fixture
def saved(tmp_path):
    raw = planted_batch(300)
    encoder = Encoder.fit(raw)
    torch.manual_seed(0)
    model = WideDeep(
        ModelConfig(embedding_dim=4, hidden_units=(8,)), encoder.num_embeddings, 26
    )
    folder = save_artifact(tmp_path / "model", model, encoder, {"note": "test"})
    return folder, model, encoder, raw


def test_round_trip_restores_the_same_predictions(saved):
    folder, model, encoder, raw = saved
    artifact = load_artifact(folder)
    rows = encoder.transform(raw)
    np.testing.assert_array_equal(predict(artifact.model, rows), predict(model, rows))
    assert artifact.metadata == {"note": "test"}
    sizes = artifact_bytes(folder)
    assert set(sizes) == {
        "model.json",
        "model.safetensors",
        "encoder.json",
        "vocabulary.safetensors",
        "total",
    }
    assert sizes["total"] == sum(v for k, v in sizes.items() if k != "total")


class _Payload:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_is_refused_without_running(saved, tmp_path):
    folder, *_ = saved
    marker = tmp_path / "payload_ran"
    (folder / "model.safetensors").write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ArtifactError, match="not a valid safetensors file"):
        load_artifact(folder)
    assert not marker.exists()


def test_a_torch_save_file_is_refused_without_running(saved, tmp_path):
    folder, *_ = saved
    marker = tmp_path / "payload_ran"
    torch.save({"x": _Payload(str(marker))}, folder / "model.safetensors")
    with pytest.raises(ArtifactError, match="never loads pickled weights"):
        load_artifact(folder)
    assert not marker.exists()


def test_wrong_version_and_mismatched_tensors(saved):
    folder, *_ = saved
    description = json.loads((folder / "model.json").read_text())
    description["format_version"] = 99
    (folder / "model.json").write_text(json.dumps(description))
    with pytest.raises(ArtifactError, match="format_version 99 is not supported"):
        load_artifact(folder)
    description["format_version"] = 1
    description["model"]["hidden_units"] = [9]
    (folder / "model.json").write_text(json.dumps(description))
    with pytest.raises(
        ArtifactError, match=r"mlp.0.weight is \[\d+, \d+\], model.json implies \[9,"
    ):
        load_artifact(folder)


def test_a_missing_encoder_file_is_named(saved, tmp_path):
    folder, *_ = saved
    for name in ("encoder.json", "vocabulary.safetensors"):
        copy = tmp_path / name.replace(".", "_")
        shutil.copytree(folder, copy)
        (copy / name).unlink()
        with pytest.raises(ArtifactError, match=f"{name}: not found; an artifact"):
            load_artifact(copy)


def test_artifact_bytes_count_only_the_artifact_files(saved):
    folder, *_ = saved
    before = artifact_bytes(folder)["total"]
    (folder / "compress.json").write_text("{}" * 1000)
    after = artifact_bytes(folder)
    assert after["total"] == before and "compress.json" not in after


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="not a folder"):
        load_artifact(tmp_path / "absent")
    with pytest.raises(ArtifactError, match="is .* a slimctr artifact folder"):
        load_artifact(tmp_path)
