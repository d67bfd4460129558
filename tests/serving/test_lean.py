from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from ctr.config import ModelConfig
from ctr.train import predict
from ctr.wide_deep import WideDeep
from data.encoder import EncodedBatch, Encoder
from serving import lean
from serving.artifact import save_artifact
from serving.lean import LeanScorer
from tests.conftest import planted_batch

# fp32 on both sides, summed in a different order: equal to well inside 1e-5
ATOL = 1e-5


@pytest.fixture(scope="module")
def model_and_encoder():
    raw = planted_batch(500)
    encoder = Encoder.fit(raw)
    torch.manual_seed(0)
    model = WideDeep(
        ModelConfig(embedding_dim=4, hidden_units=(16, 8, 8)),
        encoder.num_embeddings,
        26,
    )
    with torch.no_grad():
        model.wide_sparse.weight.normal_()  # non-trivial outputs
        model.embedding.weight.normal_()
    return model.eval(), encoder, raw


def random_rows(model: WideDeep, rows: int, seed: int = 0) -> EncodedBatch:
    rng = np.random.default_rng(seed)
    sparse_ids = np.stack([rng.integers(0, n, rows) for n in model.num_embeddings], 1)
    dense = rng.standard_normal((rows, model.num_dense)).astype(np.float32)
    return EncodedBatch(sparse_ids, dense, None)


@pytest.mark.parametrize("backend", ["numpy", "torch", "folded", "auto"])
def test_matches_the_torch_model_on_planted_rows(model_and_encoder, backend):
    model, encoder, raw = model_and_encoder
    scorer = LeanScorer.from_model(model, encoder, backend=backend)
    expected = predict(model, encoder.transform(raw))
    got = scorer.predict_raw(raw)
    assert got.dtype == np.float64 and got.shape == (len(raw),)
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert got.std() > 0.01


@pytest.mark.parametrize("backend", ["numpy", "torch", "folded", "auto"])
@pytest.mark.parametrize("rows", [1, 7, 200, 4096, 4100])
def test_matches_the_torch_model_on_random_ids(model_and_encoder, backend, rows):
    model, _, _ = model_and_encoder
    scorer = LeanScorer.from_model(model, backend=backend)
    batch = random_rows(model, rows, seed=rows)
    got = scorer.predict_encoded(batch.sparse_ids, batch.dense)
    np.testing.assert_allclose(got, predict(model, batch), rtol=0, atol=ATOL)


def test_auto_folds_only_tables_that_fit(model_and_encoder, monkeypatch):
    model, _, _ = model_and_encoder
    auto = LeanScorer.from_model(model)
    assert (auto.small_backend, auto.large_backend) == ("numpy", "folded")
    monkeypatch.setattr(lean, "FOLDED_MAX_BYTES", 1)
    auto = LeanScorer.from_model(model)
    assert (auto.small_backend, auto.large_backend) == ("numpy", "torch")
    batch = random_rows(model, lean.TORCH_FROM_ROWS)
    got = auto.predict_encoded(batch.sparse_ids, batch.dense)
    np.testing.assert_allclose(got, predict(model, batch), rtol=0, atol=ATOL)


def test_single_rows_agree_with_the_batch(model_and_encoder):
    model, _, _ = model_and_encoder
    scorer = LeanScorer.from_model(model, backend="numpy")
    batch = random_rows(model, 50)
    one_by_one = [
        scorer.predict_encoded(batch.sparse_ids[i : i + 1], batch.dense[i : i + 1])[0]
        for i in range(len(batch))
    ]
    whole = scorer.predict_encoded(batch.sparse_ids, batch.dense)
    np.testing.assert_allclose(one_by_one, whole, rtol=0, atol=1e-6)


def test_load_reads_an_artifact(model_and_encoder, tmp_path):
    model, encoder, raw = model_and_encoder
    save_artifact(tmp_path / "m", model, encoder)
    scorer = LeanScorer.load(tmp_path / "m", backend="numpy")
    expected = predict(model, encoder.transform(raw))
    np.testing.assert_allclose(scorer.predict_raw(raw), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("backend", ["numpy", "torch", "folded"])
def test_concurrent_threads_give_the_serial_results(model_and_encoder, backend):
    model, _, _ = model_and_encoder
    scorer = LeanScorer.from_model(model, backend=backend)
    parts = [random_rows(model, rows, seed=i) for i, rows in enumerate([1, 3, 64] * 4)]
    serial = [scorer.predict_encoded(p.sparse_ids, p.dense) for p in parts]

    def score_repeatedly(i: int) -> list[np.ndarray]:
        part = parts[i]
        return [scorer.predict_encoded(part.sparse_ids, part.dense) for _ in range(100)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(score_repeatedly, range(len(parts))))
    for results, expected in zip(concurrent, serial, strict=True):
        for got in results:
            np.testing.assert_array_equal(got, expected)


def test_empty_batch_gives_no_probabilities(model_and_encoder):
    model, _, _ = model_and_encoder
    scorer = LeanScorer.from_model(model, backend="numpy")
    batch = random_rows(model, 0)
    assert scorer.predict_encoded(batch.sparse_ids, batch.dense).shape == (0,)


def test_extreme_logits_give_finite_probabilities(model_and_encoder):
    model, _, _ = model_and_encoder
    scorer = LeanScorer.from_model(model, backend="numpy")
    batch = random_rows(model, 2)
    dense = np.full_like(batch.dense, 1e30)
    for rows in (slice(0, 1), slice(0, 2)):
        got = scorer.predict_encoded(batch.sparse_ids[rows], dense[rows])
        assert np.all((got >= 0) & (got <= 1))


@pytest.fixture(scope="module")
def scorer(model_and_encoder):
    return LeanScorer.from_model(model_and_encoder[0], backend="numpy")


def test_rejects_wrong_dtypes(scorer, model_and_encoder):
    batch = random_rows(model_and_encoder[0], 3)
    with pytest.raises(TypeError, match="sparse_ids: expected a numpy int64.*int32"):
        scorer.predict_encoded(batch.sparse_ids.astype(np.int32), batch.dense)
    with pytest.raises(TypeError, match="dense: expected a numpy float32.*float64"):
        scorer.predict_encoded(batch.sparse_ids, batch.dense.astype(np.float64))
    with pytest.raises(TypeError, match="sparse_ids: expected .*got <class 'list'>"):
        scorer.predict_encoded(batch.sparse_ids.tolist(), batch.dense)


def test_rejects_wrong_shapes(scorer, model_and_encoder):
    batch = random_rows(model_and_encoder[0], 3)
    with pytest.raises(ValueError, match=r"sparse_ids: expected shape \(n, 26\)"):
        scorer.predict_encoded(batch.sparse_ids[:, :25], batch.dense)
    with pytest.raises(ValueError, match=r"sparse_ids: .*got \(26,\)"):
        scorer.predict_encoded(batch.sparse_ids[0], batch.dense)
    with pytest.raises(ValueError, match=r"dense: expected shape \(3, 26\).*\(2, 26\)"):
        scorer.predict_encoded(batch.sparse_ids, batch.dense[:2])


@pytest.mark.parametrize("rows", [1, 5])
def test_rejects_ids_outside_their_field(scorer, model_and_encoder, rows):
    model = model_and_encoder[0]
    batch = random_rows(model, rows)
    too_big = batch.sparse_ids.copy()
    too_big[rows - 1, 3] = model.num_embeddings[3]
    with pytest.raises(
        ValueError,
        match=rf"row {rows - 1}, field 3 \(C4\): id {model.num_embeddings[3]} is "
        rf"outside \[0, {model.num_embeddings[3]}\)",
    ):
        scorer.predict_encoded(too_big, batch.dense)
    negative = batch.sparse_ids.copy()
    negative[0, 0] = -1
    with pytest.raises(ValueError, match=r"row 0, field 0 \(C1\): id -1 is outside"):
        scorer.predict_encoded(negative, batch.dense)


def test_predict_raw_needs_an_encoder(scorer):
    with pytest.raises(ValueError, match="predict_raw needs the artifact's encoder"):
        scorer.predict_raw(planted_batch(3))


def test_rejects_an_unknown_backend(model_and_encoder):
    with pytest.raises(ValueError, match="backend: expected one of .*got 'jax'"):
        LeanScorer.from_model(model_and_encoder[0], backend="jax")


@pytest.mark.parametrize("backend", ["numpy", "torch", "folded"])
@pytest.mark.parametrize("rows", [1, 300])
def test_an_empty_dense_input_matches_the_torch_model(backend, rows):
    torch.manual_seed(0)
    model = WideDeep(ModelConfig(embedding_dim=4, hidden_units=(8, 4)), [6, 9, 3], 0)
    with torch.no_grad():
        model.wide_sparse.weight.normal_()
        model.embedding.weight.normal_()
    batch = random_rows(model.eval(), rows)
    assert batch.dense.shape == (rows, 0)
    scorer = LeanScorer.from_model(model, backend=backend)
    got = scorer.predict_encoded(batch.sparse_ids, batch.dense)
    np.testing.assert_allclose(got, predict(model, batch), rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match=r"field 1 \(field #1\): id 9 is outside"):
        scorer.predict_encoded(np.array([[0, 9, 0]]), batch.dense[:1])
