"""ONNX export of a wide & deep model, checked against the torch model it came from.

The exported graph takes ``sparse_ids`` and ``dense`` and returns click
probabilities, so ONNX Runtime can serve it without torch. Needs the optional
extra: ``pip install -e '.[onnx]'``.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ctr.wide_deep import WideDeep
from serving.bench import random_rows

logger = logging.getLogger(__name__)

# 17 is the oldest opset this module is tested with; 20 is the newest the
# TorchScript exporter (dynamo=False) writes.
MIN_OPSET = 17
MAX_OPSET = 20
INPUT_NAMES = ("sparse_ids", "dense")
OUTPUT_NAME = "probabilities"
INSTALL_HINT = "pip install -e '.[onnx]'"


class OnnxMismatchError(RuntimeError):
    """ONNX Runtime's probabilities differ from the torch model's."""


class _Probabilities(nn.Module):
    """Puts the sigmoid inside the graph, so the file serves probabilities."""

    def __init__(self, model: WideDeep) -> None:
        super().__init__()
        self.model = model

    def forward(self, sparse_ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(sparse_ids, dense))  # (batch_size,)


def _require(module: str):
    """Import ``module`` from the [onnx] extra, or say how to install it."""
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is not installed; ONNX export and serving need the optional "
            f"extra: {INSTALL_HINT}"
        ) from err


def sample_inputs(
    model: WideDeep, rows: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random in-vocabulary inputs for ``model``.

    Returns:
        ``sparse_ids`` ``(rows, num_sparse)`` int64, each column below its
        field's ``num_embeddings``, and ``dense`` ``(rows, num_dense)`` float32
        (13 standard-normal values, then 13 missing flags, for Criteo).
    """
    return random_rows(model.num_embeddings, model.num_dense, rows, seed)


def ort_session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session on ``path`` using ``threads`` intra-op threads."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no ONNX file there; write one with export_onnx"
        )
    ort = _require("onnxruntime")

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # the graph is one chain; no branches to overlap
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def verify_onnx(
    path: str | Path, model: WideDeep, rows: int = 8, atol: float = 1e-4
) -> float:
    """Largest gap between ONNX Runtime's and ``model``'s probabilities.

    Runs both on ``rows`` random in-vocabulary rows and raises
    :class:`OnnxMismatchError` when the gap exceeds ``atol``.
    """
    sparse_ids, dense = sample_inputs(model, rows)
    session = ort_session(path, threads=1)
    (got,) = session.run([OUTPUT_NAME], {"sparse_ids": sparse_ids, "dense": dense})

    was_training = model.training
    model.eval()
    with torch.inference_mode():
        logits = model(torch.from_numpy(sparse_ids), torch.from_numpy(dense))
    model.train(was_training)
    expected = torch.sigmoid(logits).numpy()

    if got.shape != expected.shape:
        raise OnnxMismatchError(
            f"{path}: ONNX Runtime returned shape {got.shape}, expected "
            f"{expected.shape} (one probability per row)"
        )
    gap = float(np.abs(got.astype(np.float64) - expected).max())
    if not gap <= atol:  # also catches nan
        raise OnnxMismatchError(
            f"{path}: ONNX Runtime's probabilities differ from the torch model's by "
            f"up to {gap:.3g} on {rows} rows, above the tolerance {atol:g}"
        )
    return gap


def export_onnx(model: WideDeep, path: str | Path, opset: int = 17) -> Path:
    """Write ``model`` as an ONNX graph of probabilities and check it.

    The graph's inputs are ``sparse_ids`` ``(batch_size, num_sparse)`` int64 and
    ``dense`` ``(batch_size, num_dense)`` float32, with a dynamic batch axis; its
    output ``probabilities`` is ``(batch_size,)`` float32. The file is passed
    through ``onnx.checker`` and compared with the torch model on a few random
    rows (:func:`verify_onnx`) before it takes ``path``'s name, so a failed
    export leaves nothing behind.
    """
    if not isinstance(model, WideDeep):
        raise TypeError(f"model: expected a WideDeep, got {type(model).__name__}")
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(
            f"opset: expected an integer from {MIN_OPSET} to {MAX_OPSET}, got {opset!r}"
        )
    onnx = _require("onnx")
    _require("onnxruntime")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")

    was_training = model.training
    model.eval()
    example = tuple(torch.from_numpy(a) for a in sample_inputs(model, 2))
    try:
        torch.onnx.export(
            _Probabilities(model),
            example,
            str(partial),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={
                name: {0: "batch_size"} for name in (*INPUT_NAMES, OUTPUT_NAME)
            },
            opset_version=opset,
            # TODO: the TorchScript exporter is deprecated since torch 2.9; move to
            # dynamo=True (onnxscript joins the [onnx] extra) before it is removed.
            dynamo=False,
        )
        onnx.checker.check_model(str(partial), full_check=True)
        gap = verify_onnx(partial, model)
        partial.replace(path)
    finally:
        model.train(was_training)
        partial.unlink(missing_ok=True)
    logger.info("wrote %s (opset %d, max gap to torch %.2g)", path, opset, gap)
    return path
