"""Feature encoder fitted on training rows: vocabularies and a dense transform.

Sparse features map to ids through a per-field vocabulary of the keys seen at
least ``min_count`` times; id 0 is reserved for missing and id 1 for
out-of-vocabulary (oov). Dense features go through a signed log transform,
standardised with training statistics, plus a missing flag per feature.
"""

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from data.batch import RawBatch
from data.schema import (
    DENSE_FEATURES,
    MISSING_KEY,
    NUM_DENSE,
    NUM_SPARSE,
    SPARSE_FEATURES,
)

logger = logging.getLogger(__name__)

MISSING_ID = 0
OOV_ID = 1
NUM_RESERVED = 2
ENCODER_FORMAT = "slimctr-encoder"
ENCODER_VERSION = 1
ENCODER_JSON = "encoder.json"
VOCABULARY_FILE = "vocabulary.safetensors"


@dataclass(frozen=True)
class EncodedBatch:
    """Model-ready arrays.

    Attributes:
        sparse_ids: ``(n, 26)`` int64 ids into each field's vocabulary.
        dense: ``(n, 26)`` float32: 13 transformed values, then 13 missing flags.
        labels: ``(n,)`` float32, or ``None`` for unlabeled rows.
    """

    sparse_ids: np.ndarray
    dense: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.sparse_ids)

    def take(self, index: np.ndarray | slice) -> "EncodedBatch":
        return EncodedBatch(
            self.sparse_ids[index],
            self.dense[index],
            None if self.labels is None else self.labels[index],
        )


def signed_log(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: defined for every integer, negative or huge."""
    return np.sign(values) * np.log1p(np.abs(values))


class Encoder:
    """Maps raw Criteo rows to model inputs; fit on training rows only."""

    def __init__(
        self,
        vocabularies: list[np.ndarray],
        dense_mean: np.ndarray,
        dense_std: np.ndarray,
        min_count: int,
    ) -> None:
        if len(vocabularies) != NUM_SPARSE:
            raise ValueError(
                f"vocabularies: expected {NUM_SPARSE} arrays, got {len(vocabularies)}"
            )
        for name, keys in zip(SPARSE_FEATURES, vocabularies, strict=True):
            if keys.ndim != 1 or (keys.size > 1 and np.any(np.diff(keys) <= 0)):
                raise ValueError(
                    f"vocabulary of {name}: keys must be 1-D, sorted, unique"
                )
        self.vocabularies = [np.asarray(v, dtype=np.int64) for v in vocabularies]
        self.dense_mean = np.asarray(dense_mean, dtype=np.float64)
        self.dense_std = np.asarray(dense_std, dtype=np.float64)
        self.min_count = min_count
        self._lookup_cache: list[tuple[pd.Index, np.ndarray]] | None = None

    @classmethod
    def fit(cls, batch: RawBatch, min_count: int = 1) -> "Encoder":
        """Vocabularies and dense statistics from training rows.

        Args:
            batch: training rows only; never include validation or test rows.
            min_count: a key enters a vocabulary when seen at least this often.
        """
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count: expected an integer >= 1, got {min_count!r}")
        if len(batch) == 0:
            raise ValueError("batch: cannot fit an encoder on zero rows")

        vocabularies = []
        for column in range(NUM_SPARSE):
            keys = batch.sparse[:, column]
            keys, counts = np.unique(keys[keys != MISSING_KEY], return_counts=True)
            vocabularies.append(keys[counts >= min_count])

        logged = signed_log(batch.dense)
        with warnings.catch_warnings():
            # a dense feature missing in every training row is normal (I12 is
            # 77 % missing in Criteo); its statistics default to 0 and 1
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nan_to_num(np.nanmean(logged, axis=0), nan=0.0)
            std = np.nan_to_num(np.nanstd(logged, axis=0), nan=1.0)
        std[std < 1e-6] = 1.0
        return cls(vocabularies, mean, std, min_count)

    def _lookups(self) -> list[tuple[pd.Index, np.ndarray]]:
        """Per field, a hash index over its keys then the missing key, and the
        ids its positions map to (the last entry, for position -1, is oov).
        Built on first use."""
        if self._lookup_cache is None:
            self._lookup_cache = []
            for vocabulary in self.vocabularies:
                index = pd.Index(np.append(vocabulary, MISSING_KEY))
                ids = np.arange(len(vocabulary) + 2, dtype=np.int64) + NUM_RESERVED
                ids[len(vocabulary)] = MISSING_ID
                ids[-1] = OOV_ID
                self._lookup_cache.append((index, ids))
        return self._lookup_cache

    @property
    def num_embeddings(self) -> list[int]:
        """Rows each field's embedding table needs, reserved ids included."""
        return [len(v) + NUM_RESERVED for v in self.vocabularies]

    def transform(self, batch: RawBatch) -> EncodedBatch:
        """Encode raw rows; unseen keys become ``OOV_ID``, never an error."""
        keys = np.ascontiguousarray(batch.sparse.T)  # (num_sparse, n)
        by_field = np.empty(keys.shape, dtype=np.int64)
        for column, (index, table) in enumerate(self._lookups()):
            # a hash lookup: position in the vocabulary, len(vocabulary) for the
            # missing key, -1 for any other unseen key; table maps those to ids
            by_field[column] = table[index.get_indexer(keys[column])]
        sparse_ids = np.ascontiguousarray(by_field.T)

        missing = np.isnan(batch.dense)
        values = (signed_log(batch.dense) - self.dense_mean) / self.dense_std
        values = np.where(missing, 0.0, values)
        dense = np.concatenate([values, missing], axis=1).astype(np.float32)
        return EncodedBatch(sparse_ids, dense, batch.labels)

    def oov_rates(self, encoded: EncodedBatch) -> dict[str, float]:
        """Share of non-missing values per sparse field that fell out of vocabulary."""
        rates = {}
        for column, name in enumerate(SPARSE_FEATURES):
            ids = encoded.sparse_ids[:, column]
            present = int(np.count_nonzero(ids != MISSING_ID))
            oov = int(np.count_nonzero(ids == OOV_ID))
            rates[name] = oov / present if present else 0.0
        return rates

    def keep_rows(self, keep: list[np.ndarray]) -> "Encoder":
        """A new encoder whose vocabularies hold only the kept ids of each field.

        Args:
            keep: per field, a boolean array over that field's ids (reserved
                ids included, which must stay True). Dropped keys become oov.
        """
        vocabularies = []
        for name, vocabulary, mask in zip(
            SPARSE_FEATURES, self.vocabularies, keep, strict=True
        ):
            if mask.shape != (len(vocabulary) + NUM_RESERVED,):
                raise ValueError(f"keep[{name}]: shape {mask.shape} does not match")
            if not mask[:NUM_RESERVED].all():
                raise ValueError(f"keep[{name}]: reserved ids must be kept")
            vocabularies.append(vocabulary[mask[NUM_RESERVED:]])
        return Encoder(vocabularies, self.dense_mean, self.dense_std, self.min_count)

    def save(self, folder: str | Path) -> None:
        """Write ``encoder.json`` and the vocabularies as int32 safetensors."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        settings = {
            "format": ENCODER_FORMAT,
            "format_version": ENCODER_VERSION,
            "min_count": self.min_count,
            "dense_features": list(DENSE_FEATURES),
            "sparse_features": list(SPARSE_FEATURES),
            "dense_transform": "signed_log1p_standardised",
            "dense_mean": self.dense_mean.tolist(),
            "dense_std": self.dense_std.tolist(),
            "reserved_ids": {"missing": MISSING_ID, "oov": OOV_ID},
        }
        (folder / ENCODER_JSON).write_text(json.dumps(settings, indent=1))
        # Keys are 32-bit hashes: stored as their int32 bit pattern, half of int64.
        tensors = {
            name: vocabulary.astype(np.uint32).view(np.int32)
            for name, vocabulary in zip(SPARSE_FEATURES, self.vocabularies, strict=True)
        }
        save_file(tensors, str(folder / VOCABULARY_FILE))

    @classmethod
    def load(cls, folder: str | Path) -> "Encoder":
        """Read an encoder written by :meth:`save`; no pickle is involved."""
        folder = Path(folder)
        settings_path = folder / ENCODER_JSON
        try:
            settings = json.loads(settings_path.read_text())
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{settings_path}: no encoder here") from err
        except json.JSONDecodeError as err:
            raise ValueError(f"{settings_path}: not valid JSON ({err})") from err
        if settings.get("format") != ENCODER_FORMAT:
            raise ValueError(f"{settings_path}: not a slimctr encoder")
        if settings.get("format_version") != ENCODER_VERSION:
            raise ValueError(
                f"{settings_path}: format_version {settings.get('format_version')!r}"
                f" is not supported; this slimctr reads version {ENCODER_VERSION}"
            )
        try:
            tensors = load_file(str(folder / VOCABULARY_FILE))
        except Exception as err:
            raise ValueError(
                f"{folder / VOCABULARY_FILE}: not a readable safetensors file ({err})"
            ) from err
        missing = [name for name in SPARSE_FEATURES if name not in tensors]
        if missing:
            raise ValueError(f"{folder / VOCABULARY_FILE}: missing fields {missing}")
        vocabularies = [
            tensors[name].view(np.uint32).astype(np.int64) for name in SPARSE_FEATURES
        ]
        mean, std, min_count = _dense_settings(settings, settings_path)
        return cls(vocabularies, mean, std, min_count)


def _dense_settings(settings: dict, path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """``dense_mean``, ``dense_std`` and ``min_count``, checked."""
    try:
        mean = np.asarray(settings["dense_mean"], dtype=np.float64)
        std = np.asarray(settings["dense_std"], dtype=np.float64)
        min_count = settings["min_count"]
    except KeyError as err:
        raise ValueError(f"{path}: the key {err} is missing") from err
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: dense statistics are not numbers ({err})") from err
    for name, values in (("dense_mean", mean), ("dense_std", std)):
        if values.shape != (NUM_DENSE,) or not np.isfinite(values).all():
            raise ValueError(f"{path}: {name} must hold {NUM_DENSE} finite numbers")
    if (std <= 0).any():
        raise ValueError(f"{path}: dense_std must be positive")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"{path}: min_count must be an integer >= 1")
    return mean, std, min_count
