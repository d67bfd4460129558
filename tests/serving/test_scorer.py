import numpy as np
import pandas as pd
import pytest

from ctr.train import predict
from data.schema import DENSE_FEATURES, SPARSE_FEATURES
from serving.artifact import save_artifact
from serving.bench import benchmark
from serving.scorer import Scorer
from tests.conftest import planted_batch, tiny_model


@pytest.fixture
def scorer_and_model(tmp_path):
    raw = planted_batch(500)
    model, encoder = tiny_model(raw)
    save_artifact(tmp_path / "m", model, encoder)
    return Scorer.load(tmp_path / "m"), model, encoder, raw


def test_scorer_matches_the_training_model(scorer_and_model):
    scorer, model, encoder, raw = scorer_and_model
    expected = predict(model, encoder.transform(raw))
    got = scorer.predict_raw(raw)
    # same fp32 graph on the same ids: equal to float32 rounding
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got.std() > 0


def test_scorer_on_a_dataframe_of_raw_values(scorer_and_model):
    scorer, model, encoder, raw = scorer_and_model
    frame = pd.DataFrame(
        {name: raw.dense[:20, i] for i, name in enumerate(DENSE_FEATURES)}
        | {
            name: [f"{k:08x}" if k >= 0 else "" for k in raw.sparse[:20, i]]
            for i, name in enumerate(SPARSE_FEATURES)
        }
    )
    np.testing.assert_allclose(
        scorer.predict_frame(frame),
        scorer.predict_raw(raw.take(slice(0, 20))),
        atol=1e-7,
    )


def test_bench_reports_positive_figures(scorer_and_model):
    scorer, _, encoder, raw = scorer_and_model
    result = benchmark(
        scorer.model,
        encoder.transform(raw),
        latency_calls=50,
        throughput_calls=3,
        large_batch=256,
    )
    assert result.p99_us >= result.p50_us > 0
    assert result.rows_per_s > 0


def test_scorer_reads_rows_of_the_artifact_schema(tmp_path):
    import torch

    from ctr.config import ModelConfig
    from ctr.wide_deep import WideDeep
    from data.avazu import AVAZU
    from data.encoder import Encoder
    from data.reader import read_rows

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": [str(18446744073709551615 - i) for i in range(40)],
            "click": rng.integers(0, 2, 40).astype(str),
            "hour": [f"141021{h:02d}" for h in rng.integers(0, 24, 40)],
        }
        | {c: rng.integers(0, 5, 40).astype(str) for c in AVAZU.sparse_features}
    )
    path = tmp_path / "avazu.csv"
    frame.to_csv(path, index=False)
    raw, _ = read_rows(path, AVAZU)
    encoder = Encoder.fit(raw, schema=AVAZU)
    torch.manual_seed(0)
    model = WideDeep(ModelConfig(4, (8,)), encoder.num_embeddings, 0)
    with torch.no_grad():
        model.wide_sparse.weight.normal_()
    save_artifact(tmp_path / "m", model, encoder)

    scorer = Scorer.load(tmp_path / "m")
    assert scorer.encoder.schema == AVAZU and scorer.model.num_dense == 0
    got = scorer.predict_frame(pd.read_csv(path, dtype=str))
    np.testing.assert_allclose(got, predict(model, encoder.transform(raw)), atol=1e-6)
    assert got.std() > 0
