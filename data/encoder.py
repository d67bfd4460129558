"""Feature encoder fitted on training rows: vocabularies and a dense transform.

Sparse features map to ids through a per-field vocabulary of the keys seen at
least ``min_count`` times; id 0 is reserved for missing and id 1 for
out-of-vocabulary (oov). Dense features go through a signed log transform,
standardised with training statistics, plus a missing flag per feature. The
encoder keeps the ``Schema`` of its rows, so an artifact can read raw files.
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
from data.buckets import bucket_keys
from data.schema import CRITEO, MISSING_KEY, Schema

logger = logging.getLogger(__name__)

MISSING_ID = 0
OOV_ID = 1
NUM_RESERVED = 2
ENCODER_FORMAT = "slimctr-encoder"
ENCODER_VERSION = 1
ENCODER_JSON = "encoder.json"
VOCABULARY_FILE = "vocabulary.safetensors"
# Keys below this are stored as their int32 bit pattern (every Criteo key is);
# a field holding a larger key (a 64-bit string hash) is stored as int64.
_KEY_32_BITS = 1 << 32


@dataclass(frozen=True)
class EncodedBatch:
    """Model-ready arrays.

    Attributes:
        sparse_ids: ``(n, num_sparse)`` int64 ids into each field's vocabulary.
        dense: ``(n, 2 * num_dense)`` float32: the transformed values, then
            the missing flags (for Criteo 13 and 13; empty for Avazu).
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
    """Maps raw rows of one schema to model inputs; fit on training rows only."""

    def __init__(
        self,
        vocabularies: list[np.ndarray],
        dense_mean: np.ndarray,
        dense_std: np.ndarray,
        min_count: int,
        schema: Schema = CRITEO,
        dense_buckets: bool = False,
    ) -> None:
        if not isinstance(schema, Schema):
            raise TypeError(f"schema: expected a Schema, got {type(schema)}")
        names = field_names(schema, dense_buckets)
        if len(vocabularies) != len(names):
            raise ValueError(
                f"vocabularies: expected {len(names)} arrays (schema "
                f"{schema.name}{', dense buckets' if dense_buckets else ''}), "
                f"got {len(vocabularies)}"
            )
        for name, keys in zip(names, vocabularies, strict=True):
            # compare neighbours, not np.diff: a diff of 64-bit keys overflows
            if keys.ndim != 1 or np.any(keys[1:] <= keys[:-1]):
                raise ValueError(
                    f"vocabulary of {name}: keys must be 1-D, sorted, unique"
                )
        self.schema = schema
        self.dense_buckets = bool(dense_buckets)
        self.vocabularies = [np.asarray(v, dtype=np.int64) for v in vocabularies]
        self.dense_mean = np.asarray(dense_mean, dtype=np.float64)
        self.dense_std = np.asarray(dense_std, dtype=np.float64)
        expected = (schema.num_dense,)
        if self.dense_mean.shape != expected or self.dense_std.shape != expected:
            raise ValueError(
                f"dense_mean, dense_std: expected {schema.num_dense} values each "
                f"(schema {schema.name}), got {self.dense_mean.shape} and "
                f"{self.dense_std.shape}"
            )
        self.min_count = min_count
        self._lookup_cache: list[tuple[pd.Index, np.ndarray]] | None = None

    @classmethod
    def fit(
        cls,
        batch: RawBatch,
        min_count: int = 1,
        schema: Schema = CRITEO,
        dense_buckets: bool = False,
    ) -> "Encoder":
        """Vocabularies and dense statistics from training rows.

        Args:
            batch: training rows only; never include validation or test rows.
            min_count: a key enters a vocabulary when seen at least this often.
            schema: the schema ``batch`` was read with; its widths must match.
            dense_buckets: also make each dense feature a categorical field of
                log-squared buckets (see :mod:`data.buckets`).
        """
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count: expected an integer >= 1, got {min_count!r}")
        if len(batch) == 0:
            raise ValueError("batch: cannot fit an encoder on zero rows")
        _check_widths(batch, schema)

        vocabularies = []
        all_keys = field_keys(batch, dense_buckets)
        for column in range(all_keys.shape[1]):
            keys = all_keys[:, column]
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
        return cls(vocabularies, mean, std, min_count, schema, dense_buckets)

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

    @property
    def sparse_features(self) -> tuple[str, ...]:
        """The names of the embedded fields, in column order: the sparse
        features, then ``<dense feature>_bucket`` fields with dense buckets."""
        return field_names(self.schema, self.dense_buckets)

    @property
    def dense_width(self) -> int:
        """Width of the encoded dense input: values and missing flags (may be 0)."""
        return 2 * self.schema.num_dense

    def transform(self, batch: RawBatch) -> EncodedBatch:
        """Encode raw rows; unseen keys become ``OOV_ID``, never an error."""
        _check_widths(batch, self.schema)
        keys = np.ascontiguousarray(field_keys(batch, self.dense_buckets).T)
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
        for column, name in enumerate(self.sparse_features):
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
            self.sparse_features, self.vocabularies, keep, strict=True
        ):
            if mask.shape != (len(vocabulary) + NUM_RESERVED,):
                raise ValueError(f"keep[{name}]: shape {mask.shape} does not match")
            if not mask[:NUM_RESERVED].all():
                raise ValueError(f"keep[{name}]: reserved ids must be kept")
            vocabularies.append(vocabulary[mask[NUM_RESERVED:]])
        return Encoder(
            vocabularies,
            self.dense_mean,
            self.dense_std,
            self.min_count,
            self.schema,
            self.dense_buckets,
        )

    def save(self, folder: str | Path) -> None:
        """Write ``encoder.json`` and the vocabularies as safetensors: a field
        whose keys fit in 32 bits (every Criteo field) as their int32 bit
        pattern, half the bytes of int64; any other field as int64."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        settings = {
            "format": ENCODER_FORMAT,
            "format_version": ENCODER_VERSION,
            "min_count": self.min_count,
            "schema": self.schema.to_dict(),
            "dense_buckets": self.dense_buckets,
            "dense_features": list(self.schema.dense_features),
            "sparse_features": list(self.sparse_features),
            "dense_transform": "signed_log1p_standardised",
            "dense_mean": self.dense_mean.tolist(),
            "dense_std": self.dense_std.tolist(),
            "reserved_ids": {"missing": MISSING_ID, "oov": OOV_ID},
        }
        (folder / ENCODER_JSON).write_text(json.dumps(settings, indent=1))
        tensors = {
            name: _stored_keys(vocabulary)
            for name, vocabulary in zip(
                self.sparse_features, self.vocabularies, strict=True
            )
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
        schema = _schema_setting(settings, settings_path)
        dense_buckets = settings.get("dense_buckets", False)
        if not isinstance(dense_buckets, bool):
            raise ValueError(f"{settings_path}: dense_buckets must be true or false")
        names = field_names(schema, dense_buckets)
        missing = [name for name in names if name not in tensors]
        if missing:
            raise ValueError(f"{folder / VOCABULARY_FILE}: missing fields {missing}")
        vocabularies = [_loaded_keys(tensors[name]) for name in names]
        mean, std, min_count = _dense_settings(settings, settings_path, schema)
        return cls(vocabularies, mean, std, min_count, schema, dense_buckets)


def field_names(schema: Schema, dense_buckets: bool) -> tuple[str, ...]:
    """Embedded fields: the sparse features, then one bucket field per dense
    feature when ``dense_buckets``."""
    buckets = tuple(f"{name}_bucket" for name in schema.dense_features)
    return schema.sparse_fields + (buckets if dense_buckets else ())


def field_keys(batch: RawBatch, dense_buckets: bool) -> np.ndarray:
    """``(n, num_fields)`` int64 keys of every embedded field, in column order."""
    if not dense_buckets:
        return batch.sparse
    return np.concatenate([batch.sparse, bucket_keys(batch.dense)], axis=1)


def _check_widths(batch: RawBatch, schema: Schema) -> None:
    """A ``ValueError`` when ``batch`` was not read with ``schema``."""
    if batch.sparse.shape[1] != schema.num_sparse or (
        batch.dense.shape[1] != schema.num_dense
    ):
        raise ValueError(
            f"batch: has {batch.dense.shape[1]} dense and {batch.sparse.shape[1]} "
            f"sparse columns, but the schema {schema.name} has {schema.num_dense} "
            f"and {schema.num_sparse}; read the rows with the schema the encoder "
            "was fitted on (--dataset or --schema)"
        )


def _stored_keys(vocabulary: np.ndarray) -> np.ndarray:
    """The keys as written: int32 bit patterns when all fit in 32 bits."""
    if vocabulary.size == 0 or (
        vocabulary.min() >= 0 and vocabulary.max() < _KEY_32_BITS
    ):
        return vocabulary.astype(np.uint32).view(np.int32)
    return vocabulary.astype(np.int64)


def _loaded_keys(stored: np.ndarray) -> np.ndarray:
    """int64 keys from what :func:`_stored_keys` wrote; the dtype tells which."""
    if stored.dtype == np.int32:
        return stored.view(np.uint32).astype(np.int64)
    return stored.astype(np.int64)


def _schema_setting(settings: dict, path: Path) -> Schema:
    """The schema ``encoder.json`` names; a file without one (written before
    schemas existed) is Criteo's."""
    if "schema" not in settings:
        return CRITEO
    return Schema.from_dict(settings["schema"], f"{path}: schema")


def _dense_settings(
    settings: dict, path: Path, schema: Schema
) -> tuple[np.ndarray, np.ndarray, int]:
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
        if values.shape != (schema.num_dense,) or not np.isfinite(values).all():
            raise ValueError(
                f"{path}: {name} must hold {schema.num_dense} finite numbers"
            )
    if (std <= 0).any():
        raise ValueError(f"{path}: dense_std must be positive")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"{path}: min_count must be an integer >= 1")
    return mean, std, min_count
