"""Scorer: loads an artifact and turns raw rows into click probabilities.

It applies exactly the encoder saved with the model, so a row is transformed
as it was in training; values never seen in training fall back to oov.
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctr.wide_deep import WideDeep
from data import criteo, tabular
from data.batch import RawBatch
from data.encoder import EncodedBatch, Encoder
from data.schema import CRITEO
from serving.artifact import load_artifact

logger = logging.getLogger(__name__)


class Scorer:
    """Thread-safe inference over one model; holds no per-call state."""

    def __init__(self, model: WideDeep, encoder: Encoder) -> None:
        if model.num_embeddings != encoder.num_embeddings:
            raise ValueError("model and encoder disagree on vocabulary sizes")
        self.model = model.eval()
        self.encoder = encoder
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @classmethod
    def load(cls, folder: str | Path) -> "Scorer":
        """From an artifact folder written by :func:`serving.artifact.save_artifact`."""
        artifact = load_artifact(folder)
        return cls(artifact.model, artifact.encoder)

    @torch.inference_mode()
    def predict_encoded(
        self, batch: EncodedBatch, batch_size: int = 8192
    ) -> np.ndarray:
        """Probabilities ``(n,)`` float64 for already encoded rows."""
        sparse_ids = torch.from_numpy(batch.sparse_ids)
        dense = torch.from_numpy(batch.dense)
        out = np.empty(len(batch), dtype=np.float64)
        for start in range(0, len(batch), batch_size):
            end = start + batch_size
            logits = self.model(sparse_ids[start:end], dense[start:end])
            out[start:end] = torch.sigmoid(logits).numpy()
        return out

    def encode(self, batch: RawBatch) -> EncodedBatch:
        return self.encoder.transform(batch)

    def predict_raw(self, batch: RawBatch) -> np.ndarray:
        """Probabilities for parsed rows (see :mod:`data.criteo`)."""
        return self.predict_encoded(self.encoder.transform(batch))

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Probabilities for a DataFrame holding the feature columns of the
        encoder's schema (I1..I13 and C1..C26 for Criteo)."""
        schema = self.encoder.schema
        if schema == CRITEO:
            return self.predict_raw(criteo.parse_frame(frame))
        return self.predict_raw(tabular.parse_frame(frame, schema))
