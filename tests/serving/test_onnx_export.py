import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="optional extra [onnx] not installed")
pytest.importorskip("onnxruntime", reason="optional extra [onnx] not installed")

# export_onnx uses the TorchScript exporter on purpose (no onnxscript needed)
pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript"),
    pytest.mark.filterwarnings("ignore:The feature will be removed"),
]

from ctr.config import ModelConfig  # noqa: E402
from ctr.train import predict  # noqa: E402
from ctr.wide_deep import WideDeep  # noqa: E402
from data.encoder import Encoder  # noqa: E402
from serving import onnx_export  # noqa: E402
from serving.onnx_export import (  # noqa: E402
    OnnxMismatchError,
    export_onnx,
    ort_session,
    verify_onnx,
)
from tests.conftest import planted_batch  # noqa: E402


def tiny_model(encoder: Encoder, seed: int = 0) -> WideDeep:
    torch.manual_seed(seed)
    model = WideDeep(
        ModelConfig(embedding_dim=4, hidden_units=(16, 8)), encoder.num_embeddings, 26
    )
    with torch.no_grad():
        model.wide_sparse.weight.normal_()  # non-trivial outputs
    return model


@pytest.fixture
def exported(tmp_path):
    encoder = Encoder.fit(planted_batch(500))
    model = tiny_model(encoder)
    path = export_onnx(model, tmp_path / "model.onnx")
    return path, model, encoder


@pytest.mark.parametrize("batch_size", [1, 7, 300])
def test_onnx_matches_predict(exported, batch_size):
    path, model, encoder = exported
    rows = encoder.transform(planted_batch(batch_size, seed=1))
    session = ort_session(path, threads=1)

    (got,) = session.run(None, {"sparse_ids": rows.sparse_ids, "dense": rows.dense})

    expected = predict(model, rows)
    assert got.shape == (batch_size,)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    if batch_size > 1:
        assert got.std() > 0


def test_graph_names_and_dynamic_batch(exported):
    session = ort_session(exported[0], threads=2)
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    (output,) = session.get_outputs()
    assert inputs == {
        "sparse_ids": ("tensor(int64)", ["batch_size", 26]),
        "dense": ("tensor(float)", ["batch_size", 26]),
    }
    assert (output.name, output.shape) == ("probabilities", ["batch_size"])


def test_export_restores_training_mode(tmp_path):
    model = tiny_model(Encoder.fit(planted_batch(200)))
    model.train()
    export_onnx(model, tmp_path / "model.onnx")
    assert model.training


def test_verify_rejects_another_models_file(exported):
    path, _, encoder = exported
    other = tiny_model(encoder, seed=1)
    with pytest.raises(OnnxMismatchError, match="differ from the torch model's"):
        verify_onnx(path, other)


def test_failed_check_leaves_no_file(tmp_path, monkeypatch):
    def mismatch(path, model):
        raise OnnxMismatchError("planted")

    monkeypatch.setattr(onnx_export, "verify_onnx", mismatch)
    model = tiny_model(Encoder.fit(planted_batch(200)))
    with pytest.raises(OnnxMismatchError, match="planted"):
        export_onnx(model, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_missing_extra_says_how_to_install(tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import` raise
    model = tiny_model(Encoder.fit(planted_batch(200)))
    with pytest.raises(ImportError, match=r"pip install -e '\.\[onnx\]'"):
        export_onnx(model, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_bad_arguments_are_named(tmp_path, exported):
    model = exported[1]
    with pytest.raises(ValueError, match=r"opset: expected an integer from 17 to 20"):
        export_onnx(model, tmp_path / "m.onnx", opset=11)
    with pytest.raises(TypeError, match="model: expected a WideDeep, got Linear"):
        export_onnx(torch.nn.Linear(2, 1), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="threads: expected a positive integer"):
        ort_session(exported[0], threads=0)
    with pytest.raises(FileNotFoundError, match="no ONNX file there"):
        ort_session(tmp_path / "absent.onnx")
