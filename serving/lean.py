"""Lean inference for a wide & deep artifact: plain fp32 arrays, no autograd.

The weights are rearranged once so that a row costs one gather and a few small
matrix products; a single row takes a dedicated numpy path through
preallocated, thread-local buffers, since at batch 1 per-call overhead is the
whole cost. Large batches may run the same arrays through torch ops.
"""

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ctr.wide_deep import WideDeep
from data.batch import RawBatch
from data.encoder import Encoder
from data.schema import SPARSE_FEATURES
from serving.artifact import load_artifact

BACKENDS = ("numpy", "torch", "folded")
CHUNK_ROWS = 4096  # rows per pass; the scratch buffers never grow past this
# How "auto" picks, from timings on 2 cores (numpy 2.4 with OpenBLAS, torch
# 2.13 CPU, the 8-wide 50-50-50 artifact): numpy beat torch at 64 rows (1.25M
# vs 0.8-1.25M rows/s) and torch beat numpy at 4096 (3.3-3.6M vs 2.1M), while
# "folded" beat both from a few hundred rows (100 vs 150 us at 256 rows, 6.6-8.9M
# rows/s at 4096); below about 100 rows torch's per-op overhead loses to numpy.
TORCH_FROM_ROWS = 1024
FOLDED_FROM_ROWS = 128
# "folded" stores 1 + H floats a table row instead of D + 1; above this size
# the memory is not worth the speed and "auto" falls back to numpy and torch.
FOLDED_MAX_BYTES = 256 * 2**20
_INT64, _FLOAT32 = np.dtype(np.int64), np.dtype(np.float32)


@dataclass(frozen=True)
class LeanWeights:
    """The network as plain fp32 arrays, laid out for inference.

    With F sparse fields, D = ``embedding_dim``, H the first hidden width and
    ``num_dense`` dense inputs:

    Attributes:
        table: ``(sum(num_embeddings), D + 1)``, each row its embedding then its
            wide weight, so one gather serves the deep and the wide part.
        offsets: ``(F,)`` int64 first row of each field in ``table``.
        num_embeddings: ``(F,)`` uint64 rows of each field.
        first_weight: ``(F * (D + 1) + num_dense, 1 + H)`` the first layer over
            the gathered rows flattened, then the dense inputs. Output column 0
            is the wide part (a sum of the wide weights, plus the wide dense
            weights); columns 1.. are the hidden units.
        first_bias: ``(1 + H,)`` the wide bias, then the first layer's biases.
        weights: the later layers' weights, transposed: ``(in, out)``.
        biases: the later layers' biases, ``(out,)``.
    """

    table: np.ndarray
    offsets: np.ndarray
    num_embeddings: np.ndarray
    first_weight: np.ndarray
    first_bias: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    @classmethod
    def from_model(cls, model: WideDeep) -> "LeanWeights":
        def array(tensor: torch.Tensor) -> np.ndarray:
            return tensor.detach().to(torch.float32).cpu().numpy()

        num_sparse = len(model.num_embeddings)
        dim = model.config.embedding_dim
        linears = model.linear_layers()
        assert len(linears) >= 2, "ModelConfig requires a hidden layer"
        first = array(linears[0].weight)  # (H, F * D + num_dense)
        hidden = first.shape[0]

        table = np.concatenate(
            [array(model.embedding.weight), array(model.wide_sparse.weight)], axis=1
        )
        first_sparse = np.zeros((num_sparse, dim + 1, 1 + hidden), np.float32)
        deep_part = first[:, : num_sparse * dim].T.reshape(num_sparse, dim, hidden)
        first_sparse[:, :dim, 1:] = deep_part
        first_sparse[:, dim, 0] = 1.0  # the wide weight passes through unchanged
        first_dense = np.concatenate(
            [array(model.wide_dense.weight).T, first[:, num_sparse * dim :].T], axis=1
        )
        first_bias = np.concatenate(
            [array(model.wide_dense.bias), array(linears[0].bias)]
        )
        return cls(
            table=np.ascontiguousarray(table),
            offsets=model.offsets.cpu().numpy().astype(np.int64),
            num_embeddings=np.array(model.num_embeddings, dtype=np.uint64),
            first_weight=np.concatenate(
                [first_sparse.reshape(num_sparse * (dim + 1), 1 + hidden), first_dense]
            ),
            first_bias=np.ascontiguousarray(first_bias),
            weights=tuple(np.ascontiguousarray(array(m.weight).T) for m in linears[1:]),
            biases=tuple(np.ascontiguousarray(array(m.bias)) for m in linears[1:]),
        )

    @property
    def num_sparse(self) -> int:
        return len(self.offsets)

    @property
    def num_dense(self) -> int:
        return len(self.first_weight) - self.num_gathered

    @property
    def num_gathered(self) -> int:
        """Width of one row's gathered table rows, ``F * (D + 1)``."""
        return self.num_sparse * self.table.shape[1]

    @property
    def first_sparse(self) -> np.ndarray:
        return self.first_weight[: self.num_gathered]

    @property
    def first_dense(self) -> np.ndarray:
        return self.first_weight[self.num_gathered :]


class _Scratch(threading.local):
    """Per-thread buffers, so concurrent calls never share mutable state."""

    def __init__(self) -> None:
        self.single = None  # buffers of the batch-1 path
        self.rows = 0  # capacity of the batch buffers below
        self.batch = None


class LeanScorer:
    """Thread-safe click probabilities from precomputed fp32 arrays.

    ``backend`` picks how batches of more than one row run: "numpy", "torch"
    (the same arrays through torch ops under ``inference_mode``), "folded"
    (torch, with the first layer applied to every table row ahead of time, so
    a batch's first layer is one ``embedding_bag`` sum) or "auto": "folded"
    from ``FOLDED_FROM_ROWS`` rows when its table fits in ``FOLDED_MAX_BYTES``,
    else torch from ``TORCH_FROM_ROWS``, and numpy below. A single row always
    takes the numpy path.
    """

    def __init__(
        self,
        weights: LeanWeights,
        encoder: Encoder | None = None,
        backend: str = "auto",
    ) -> None:
        if backend not in (*BACKENDS, "auto"):
            raise ValueError(
                f"backend: expected one of {(*BACKENDS, 'auto')}, got {backend!r}"
            )
        if encoder is not None and encoder.num_embeddings != [
            int(n) for n in weights.num_embeddings
        ]:
            raise ValueError("model and encoder disagree on vocabulary sizes")
        self.weights = weights
        self.encoder = encoder
        self._torch = _torch_weights(weights)
        self._first_with_bias = _with_bias(weights.first_weight, weights.first_bias)
        self._weights_with_bias = [
            _with_bias(m, b)
            for m, b in zip(weights.weights[:-1], weights.biases[:-1], strict=True)
        ]
        self._last_with_bias = _with_bias(weights.weights[-1], weights.biases[-1])[:, 0]
        self._scratch = _Scratch()
        if backend == "auto":
            fits = _folded_bytes(weights) <= FOLDED_MAX_BYTES
            self.small_backend = "numpy"
            self.large_backend = "folded" if fits else "torch"
            self.switch_rows = FOLDED_FROM_ROWS if fits else TORCH_FROM_ROWS
        else:
            self.small_backend = self.large_backend = backend
            self.switch_rows = 2
        if "folded" in (self.small_backend, self.large_backend):
            self._torch["folded"] = torch.from_numpy(_folded_table(weights))

    @classmethod
    def from_model(
        cls, model: WideDeep, encoder: Encoder | None = None, backend: str = "auto"
    ) -> "LeanScorer":
        return cls(LeanWeights.from_model(model), encoder, backend)

    @classmethod
    def load(cls, folder: str | Path, backend: str = "auto") -> "LeanScorer":
        """From an artifact folder written by :func:`serving.artifact.save_artifact`."""
        artifact = load_artifact(folder)
        return cls.from_model(artifact.model, artifact.encoder, backend)

    def predict_raw(self, batch: RawBatch) -> np.ndarray:
        """Probabilities ``(n,)`` float64 for parsed rows, encoded as in training."""
        if self.encoder is None:
            raise ValueError(
                "predict_raw needs the artifact's encoder; build the scorer with "
                "LeanScorer.load(folder) or pass encoder= to from_model"
            )
        encoded = self.encoder.transform(batch)
        return self.predict_encoded(encoded.sparse_ids, encoded.dense)

    def predict_encoded(self, sparse_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """Probabilities for encoded rows.

        Args:
            sparse_ids: ``(n, num_sparse)`` int64 per-field ids.
            dense: ``(n, num_dense)`` float32.

        Returns:
            ``(n,)`` float64 click probabilities.
        """
        self._check(sparse_ids, dense)
        rows = len(sparse_ids)
        if rows == 1:
            return np.array([self._single(sparse_ids[0], dense[0])])
        backend = self.large_backend if rows >= self.switch_rows else self.small_backend
        run = {
            "numpy": self._numpy_logits,
            "torch": self._torch_logits,
            "folded": self._folded_logits,
        }[backend]
        logits = np.empty(rows, dtype=np.float32)
        for start in range(0, rows, CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, rows)
            logits[start:end] = run(sparse_ids[start:end], dense[start:end])
        return _sigmoid(logits)

    def _check(self, sparse_ids: np.ndarray, dense: np.ndarray) -> None:
        w = self.weights
        if not (
            type(sparse_ids) is np.ndarray
            and type(dense) is np.ndarray
            and sparse_ids.dtype is _INT64
            and dense.dtype is _FLOAT32
            and sparse_ids.ndim == 2
            and sparse_ids.shape[1] == w.num_sparse
            and dense.shape == (sparse_ids.shape[0], w.num_dense)
        ):
            self._check_types_and_shapes(sparse_ids, dense)
        self._check_ids(sparse_ids)

    def _check_types_and_shapes(self, sparse_ids: np.ndarray, dense: np.ndarray):
        w = self.weights
        for name, value, dtype in (
            ("sparse_ids", sparse_ids, np.int64),
            ("dense", dense, np.float32),
        ):
            if not isinstance(value, np.ndarray) or value.dtype != dtype:
                got = value.dtype if isinstance(value, np.ndarray) else type(value)
                raise TypeError(
                    f"{name}: expected a numpy {np.dtype(dtype)} array, got {got}; "
                    f"convert with np.asarray(..., dtype=np.{np.dtype(dtype)})"
                )
        if sparse_ids.ndim != 2 or sparse_ids.shape[1] != w.num_sparse:
            raise ValueError(
                f"sparse_ids: expected shape (n, {w.num_sparse}), "
                f"got {sparse_ids.shape}"
            )
        if dense.shape != (len(sparse_ids), w.num_dense):
            raise ValueError(
                f"dense: expected shape ({len(sparse_ids)}, {w.num_dense}) to match "
                f"sparse_ids, got {dense.shape}"
            )

    def _check_ids(self, sparse_ids: np.ndarray) -> None:
        w = self.weights
        # as unsigned, a negative id is huge: one comparison checks both bounds
        inside = sparse_ids.view(np.uint64) < w.num_embeddings
        if np.count_nonzero(inside) != inside.size:
            row, field = np.argwhere(~inside)[0]
            raise ValueError(
                f"sparse_ids: row {row}, field {field} ({self._field_name(field)}): "
                f"id {sparse_ids[row, field]} is outside "
                f"[0, {w.num_embeddings[field]}); encode rows with the artifact's "
                "encoder"
            )

    def _field_name(self, field: int) -> str:
        """The encoder's name of a field; without an encoder, Criteo's for a
        26-field model, else the field's number."""
        if self.encoder is not None:
            return self.encoder.sparse_features[field]
        if self.weights.num_sparse == len(SPARSE_FEATURES):
            return SPARSE_FEATURES[field]
        return f"field #{field}"

    def _single(self, sparse_ids: np.ndarray, dense: np.ndarray) -> float:
        """One row's probability, through this thread's preallocated buffers.

        Every vector ends in a constant 1 and every weight matrix in its bias
        row, so each layer is one product and one in-place ReLU.
        """
        w = self.weights
        buffers = self._scratch.single
        if buffers is None:
            buffers = self._scratch.single = _SingleBuffers(w)

        np.add(sparse_ids, w.offsets, out=buffers.index)
        # mode="clip" skips numpy's buffered bounds check; _check did it already
        np.take(w.table, buffers.index, axis=0, out=buffers.gathered, mode="clip")
        buffers.dense[:] = dense
        np.dot(buffers.inputs, self._first_with_bias, out=buffers.first_out)
        hidden = buffers.hidden  # (H + 1,), the last entry the constant 1
        np.maximum(hidden, 0.0, out=hidden)

        for weight, out, full in zip(
            self._weights_with_bias, buffers.outs, buffers.layers, strict=True
        ):
            np.dot(hidden, weight, out=out)
            np.maximum(full, 0.0, out=full)
            hidden = full
        deep = float(np.dot(hidden, self._last_with_bias))
        return _sigmoid_scalar(deep + float(buffers.first[0]))

    def _numpy_logits(self, sparse_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """Logits ``(rows,)`` float32 for at most ``CHUNK_ROWS`` rows."""
        w = self.weights
        rows = len(sparse_ids)
        buffers = self._batch_buffers(rows)
        index = buffers.index[:rows]
        gathered = buffers.gathered[:rows]
        first = buffers.first[:rows]
        first_dense = buffers.first_dense[:rows]

        np.add(sparse_ids, w.offsets, out=index)
        np.take(w.table, index, axis=0, out=gathered, mode="clip")  # (rows, F, D+1)
        np.dot(gathered.reshape(rows, -1), w.first_sparse, out=first)
        np.dot(dense, w.first_dense, out=first_dense)
        first += first_dense
        first += w.first_bias  # (rows, 1 + H)
        hidden = first[:, 1:]
        np.maximum(hidden, 0.0, out=hidden)

        last = len(w.weights) - 1
        for i, out in enumerate(buffers.layers):
            out = out[:rows]
            np.dot(hidden, w.weights[i], out=out)
            out += w.biases[i]
            if i < last:
                np.maximum(out, 0.0, out=out)
            hidden = out
        return hidden[:, 0] + first[:, 0]

    @torch.inference_mode()
    def _torch_logits(self, sparse_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        t = self._torch
        rows = len(sparse_ids)
        index = torch.from_numpy(sparse_ids) + t["offsets"]  # (rows, F)
        # F.embedding, not table[index]: torch's indexing is several times slower
        gathered = F.embedding(index, t["table"]).reshape(rows, -1)  # (rows, F*(D+1))
        first = torch.addmm(t["first_bias"], gathered, t["first_sparse"])
        first.addmm_(torch.from_numpy(dense), t["first_dense"])  # (rows, 1 + H)
        hidden = first[:, 1:].relu_()
        layers = t["layers"]
        for i, (weight, bias) in enumerate(layers):
            hidden = torch.addmm(bias, hidden, weight)
            if i < len(layers) - 1:
                hidden.relu_()
        return (hidden[:, 0] + first[:, 0]).numpy()

    @torch.inference_mode()
    def _folded_logits(self, sparse_ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        t = self._torch
        index = torch.from_numpy(sparse_ids) + t["offsets"]  # (rows, F)
        first = F.embedding_bag(index, t["folded"], mode="sum")  # (rows, 1 + H)
        first.addmm_(torch.from_numpy(dense), t["first_dense"]).add_(t["first_bias"])
        hidden = first[:, 1:].relu_()
        layers = t["layers"]
        for i, (weight, bias) in enumerate(layers):
            hidden = torch.addmm(bias, hidden, weight)
            if i < len(layers) - 1:
                hidden.relu_()
        return (hidden[:, 0] + first[:, 0]).numpy()

    def _batch_buffers(self, rows: int) -> "_BatchBuffers":
        scratch = self._scratch
        if scratch.rows < rows:
            capacity = min(CHUNK_ROWS, max(rows, 2 * scratch.rows))
            scratch.batch = _BatchBuffers(self.weights, capacity)
            scratch.rows = capacity
        return scratch.batch


class _SingleBuffers:
    """One row's vectors, each with a trailing constant 1 for the bias row."""

    def __init__(self, w: LeanWeights) -> None:
        width = w.first_weight.shape[0]
        self.index = np.empty(w.num_sparse, dtype=np.int64)
        self.inputs = np.ones(width + 1, dtype=np.float32)
        self.gathered = self.inputs[: w.num_gathered].reshape(w.num_sparse, -1)
        self.dense = self.inputs[w.num_gathered : width]
        # first: the wide part, the first hidden units, then the constant 1
        self.first = np.ones(w.first_bias.shape[0] + 1, dtype=np.float32)
        self.first_out = self.first[:-1]
        self.hidden = self.first[1:]
        self.layers = [np.ones(len(b) + 1, dtype=np.float32) for b in w.biases[:-1]]
        self.outs = [layer[:-1] for layer in self.layers]


class _BatchBuffers:
    def __init__(self, w: LeanWeights, rows: int) -> None:
        hidden = w.first_bias.shape[0]
        self.index = np.empty((rows, w.num_sparse), dtype=np.int64)
        self.gathered = np.empty(
            (rows, w.num_sparse, w.table.shape[1]), dtype=np.float32
        )
        self.first = np.empty((rows, hidden), dtype=np.float32)
        self.first_dense = np.empty((rows, hidden), dtype=np.float32)
        self.layers = [np.empty((rows, b.shape[0]), dtype=np.float32) for b in w.biases]


def _torch_weights(w: LeanWeights) -> dict:
    """Tensors sharing the arrays' memory, for the torch backend."""
    return {
        "table": torch.from_numpy(w.table),
        "offsets": torch.from_numpy(w.offsets),
        "first_sparse": torch.from_numpy(w.first_sparse),
        "first_dense": torch.from_numpy(w.first_dense),
        "first_bias": torch.from_numpy(w.first_bias),
        "layers": [
            (torch.from_numpy(m), torch.from_numpy(b))
            for m, b in zip(w.weights, w.biases, strict=True)
        ],
    }


def _folded_bytes(w: LeanWeights) -> int:
    return len(w.table) * w.first_weight.shape[1] * 4


def _folded_table(w: LeanWeights) -> np.ndarray:
    """``(sum(num_embeddings), 1 + H)``: each table row through its field's
    slice of the first layer, the wide weight in column 0."""
    blocks = w.first_sparse.reshape(w.num_sparse, w.table.shape[1], -1)
    folded = np.empty((len(w.table), blocks.shape[2]), dtype=np.float32)
    ends = [*w.offsets[1:], len(w.table)]
    for block, start, end in zip(blocks, w.offsets, ends, strict=True):
        np.dot(w.table[start:end], block, out=folded[start:end])
    return folded


def _with_bias(weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``(in + 1, out)``: the weight, then the bias as a last row."""
    return np.ascontiguousarray(np.vstack([weight, bias[None, :]]))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """float64 probabilities; exp never overflows since its argument is <= 0."""
    z = logits.astype(np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_scalar(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
