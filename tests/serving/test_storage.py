import numpy as np
import pytest
import torch

from ctr.config import ModelConfig
from ctr.train import predict
from ctr.wide_deep import WideDeep
from data.encoder import Encoder
from serving.artifact import artifact_bytes, load_artifact, save_artifact
from serving.storage import Storage, simulate
from tests.conftest import planted_batch


@pytest.fixture
def model_and_rows():
    raw = planted_batch(2000)
    encoder = Encoder.fit(raw)
    torch.manual_seed(0)
    model = WideDeep(
        ModelConfig(embedding_dim=16, hidden_units=(32, 16)), encoder.num_embeddings, 26
    )
    with torch.no_grad():
        model.embedding.weight.normal_(std=0.1)
        model.wide_sparse.weight.normal_(std=0.1)
    return model, encoder, encoder.transform(raw)


@pytest.mark.parametrize(
    ("storage", "tolerance", "max_ratio"),
    [
        (Storage("float16", "float16"), 2e-3, 0.51),
        # here the MLP holds most of the bytes and stays fp32
        (Storage("int8", "float32"), 1e-2, 0.75),
        (Storage("int8", "int8", "float16"), 2e-2, 0.35),
    ],
)
def test_stored_model_is_smaller_and_close(
    model_and_rows, tmp_path, storage, tolerance, max_ratio
):
    model, encoder, rows = model_and_rows
    save_artifact(tmp_path / "fp32", model, encoder)
    save_artifact(tmp_path / "small", model, encoder, storage=storage)
    full = artifact_bytes(tmp_path / "fp32")["model.safetensors"]
    small = artifact_bytes(tmp_path / "small")["model.safetensors"]
    assert small < full * max_ratio
    loaded = load_artifact(tmp_path / "small").model
    reference = predict(model, rows)
    np.testing.assert_allclose(predict(loaded, rows), reference, atol=tolerance)
    # simulating the storage in memory gives exactly what loading gives
    simulated = simulate(WideDeep(model.config, model.num_embeddings, 26), storage)
    simulated.load_state_dict(model.state_dict())
    np.testing.assert_allclose(
        predict(simulate(simulated, storage), rows), predict(loaded, rows), atol=1e-7
    )


def test_unknown_storage_is_refused():
    with pytest.raises(ValueError, match="storage.embedding: expected one of"):
        Storage(embedding="int4")
