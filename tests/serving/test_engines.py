import json
import logging

import numpy as np
import pytest
import torch

from ctr.config import ModelConfig
from ctr.train import predict
from ctr.wide_deep import WideDeep
from data.encoder import EncodedBatch, Encoder
from serving import engines
from serving.artifact import load_artifact, save_artifact
from serving.engines import (
    BATCH_SIZES,
    ENGINES,
    EngineMismatchError,
    check_agreement,
    compare_engines,
    torch_eager,
    write_outputs,
)
from serving.lean import LeanScorer
from serving.storage import Storage
from tests.conftest import planted_batch

try:
    import onnxruntime  # noqa: F401

    HAVE_ORT = True
except ImportError:
    HAVE_ORT = False

# few calls: these tests check the plumbing, not the speed
CALLS = {1: 40, 64: 6, 4096: 3}
ONNX = ("onnxruntime_baseline", "onnxruntime_compressed")


def tiny_artifact(folder, raw, min_count, hidden_units, storage=None):
    encoder = Encoder.fit(raw, min_count=min_count)
    torch.manual_seed(0)
    model = WideDeep(
        ModelConfig(embedding_dim=4, hidden_units=hidden_units),
        encoder.num_embeddings,
        26,
    )
    with torch.no_grad():
        model.wide_sparse.weight.normal_()  # non-trivial outputs
        model.embedding.weight.normal_()
    return save_artifact(folder, model, encoder, storage=storage)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    raw = planted_batch(500)
    baseline = tiny_artifact(root / "baseline", raw, 1, (32, 16))
    # a smaller vocabulary and int8 storage, as compression leaves them
    compressed = tiny_artifact(
        root / "compressed", raw, 3, (8, 8), Storage("int8", "int8", "float16")
    )
    return compressed, baseline


@pytest.fixture(scope="module")
def result(folders):
    compressed, baseline = folders
    return compare_engines(
        compressed, baseline, threads=1, repeats=2, calls=CALLS, command="pytest"
    )


def test_every_engine_reports_every_batch_size(result):
    assert list(result["engines"]) == list(ENGINES)
    ran = [n for n in ENGINES if not (n in ONNX and not HAVE_ORT)]
    for name in ran:
        entry = result["engines"][name]
        assert "skipped" not in entry, entry.get("skipped")
        assert entry["artifact_bytes"] > 0
        for batch_size in BATCH_SIZES:
            figures = entry[f"batch_{batch_size}"]
            assert 0 < figures["p50_us"] <= figures["p95_us"] <= figures["p99_us"]
            assert figures["rows_per_s"] > 0
    assert result["engines"]["torchscript"]["frozen"] is True


def test_top_level_fields(result, folders):
    assert result["threads"] == 1 and result["repeats"] == 2
    assert result["command"] == "pytest"
    assert result["machine"]["cpu_count"] >= 1
    assert set(result["versions"]) == {"python", "numpy", "torch", "onnxruntime"}
    assert (result["versions"]["onnxruntime"] is None) == (not HAVE_ORT)
    assert result["peak_rss_mb"] > 10
    compressed, baseline = folders
    assert result["engines"]["scorer"]["model"] == str(compressed)
    assert result["engines"]["torch_eager"]["model"] == str(baseline)
    assert (
        result["engines"]["scorer"]["artifact_bytes"]
        < result["engines"]["torch_eager"]["artifact_bytes"]
    )


@pytest.mark.skipif(HAVE_ORT, reason="onnxruntime is installed here")
def test_onnxruntime_engines_are_skipped_with_a_reason(folders, caplog):
    compressed, baseline = folders
    with caplog.at_level(logging.WARNING, logger="serving.engines"):
        got = compare_engines(compressed, baseline, threads=1, repeats=1, calls=CALLS)
    for name in ONNX:
        assert "onnxruntime is not installed" in got["engines"][name]["skipped"]
        assert name in caplog.text
    assert "batch_1" in got["engines"]["scorer"]


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime is not installed")
def test_onnxruntime_engines_agree_and_record_the_onnx_size(result):
    for name in ONNX:
        entry = result["engines"][name]
        assert entry["onnx_bytes"] > 0
        assert entry["max_abs_gap"] <= 1e-5


def test_engines_agree_within_1e_5(result):
    for name in ENGINES:
        entry = result["engines"][name]
        if "skipped" not in entry:
            assert 0 <= entry["max_abs_gap"] <= 1e-5, name


def test_scorer_and_torch_eager_agree_on_the_same_model(folders):
    model = load_artifact(folders[0]).model
    rng = np.random.default_rng(1)
    sparse_ids = np.stack([rng.integers(0, n, 300) for n in model.num_embeddings], 1)
    dense = rng.standard_normal((300, model.num_dense)).astype(np.float32)
    scorer = LeanScorer.from_model(model).predict_encoded

    gaps = check_agreement(
        {"scorer": scorer, "torch_eager": torch_eager(model)},
        scorer,
        sparse_ids,
        dense,
    )
    assert gaps["scorer"] == 0 and gaps["torch_eager"] <= 1e-5
    # and against ctr.train.predict, which shares no code with either
    expected = predict(model, EncodedBatch(sparse_ids, dense, None))
    np.testing.assert_allclose(scorer(sparse_ids, dense), expected, rtol=0, atol=1e-5)


def test_check_agreement_names_the_engine_that_disagrees():
    sparse_ids = np.zeros((4, 26), np.int64)
    dense = np.zeros((4, 26), np.float32)
    reference = lambda s, d: np.full(len(s), 0.5)  # noqa: E731
    broken = lambda s, d: np.full(len(s), 0.5001)  # noqa: E731
    with pytest.raises(EngineMismatchError, match="broken: .* up to 0.0001"):
        check_agreement({"broken": broken}, reference, sparse_ids, dense)
    with pytest.raises(EngineMismatchError, match="nan: .* up to nan"):
        check_agreement(
            {"nan": lambda s, d: np.full(len(s), np.nan)}, reference, sparse_ids, dense
        )


def test_a_model_that_cannot_be_traced_is_skipped(folders, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("no tracing today")

    monkeypatch.setattr(torch.jit, "trace", fail)
    monkeypatch.setattr(engines, "_onnxruntime", lambda *a: {"skipped": "not here"})
    got = compare_engines(folders[0], threads=1, repeats=1, calls=CALLS)
    assert got["engines"]["torchscript"] == {
        "model": str(folders[0]),
        "artifact_bytes": got["engines"]["scorer"]["artifact_bytes"],
        "skipped": "torch.jit.trace failed: RuntimeError: no tracing today",
    }
    assert "batch_4096" in got["engines"]["torch_eager"]


def test_given_rows_are_used_and_checked(folders, monkeypatch):
    monkeypatch.setattr(engines, "_onnxruntime", lambda *a: {"skipped": "not here"})
    model = load_artifact(folders[0]).model
    sparse_ids = np.zeros((10, 26), np.int64)
    dense = np.ones((10, 26), np.float32)
    got = compare_engines(
        folders[0], threads=1, repeats=1, calls=CALLS, rows=(sparse_ids, dense)
    )
    assert got["rows"]["source"].startswith("10 given rows")

    sparse_ids[3, 5] = model.num_embeddings[5]
    with pytest.raises(ValueError, match=r"row 3, field 5: id \d+ is outside"):
        compare_engines(folders[0], calls=CALLS, rows=(sparse_ids, dense))
    with pytest.raises(TypeError, match="dense must be a numpy float32 array"):
        compare_engines(folders[0], calls=CALLS, rows=(sparse_ids, dense.astype(int)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threads": 0}, "threads: expected a positive integer, got 0"),
        ({"repeats": 1.5}, "repeats: expected a positive integer, got 1.5"),
        ({"calls": {1: 10}}, r"calls: expected counts for batch sizes \(1, 64, 4096\)"),
        ({"calls": {1: 10, 64: 0, 4096: 1}}, r"calls\[64\]: expected a positive"),
    ],
)
def test_bad_arguments_are_refused_up_front(folders, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare_engines(folders[0], **kwargs)


def test_write_outputs(result, tmp_path):
    with_nan = {**result, "peak_rss_mb": float("nan")}
    json_path, md_path, png_path = write_outputs(with_nan, tmp_path / "out/bench.json")

    written = json.loads(json_path.read_text())
    assert written["peak_rss_mb"] is None
    assert (
        written["engines"]["scorer"]["batch_1"]
        == result["engines"]["scorer"]["batch_1"]
    )
    table = md_path.read_text()
    for name in ENGINES:
        assert f"| {name} |" in table
    assert "| scorer speed-up over | batch 1 p50 | batch 4096 rows/s |" in table
    assert "| torch_eager | " in table.split("speed-up over")[1]
    png = png_path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
