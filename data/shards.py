"""The encoded cache that ``slimctr prepare`` writes: per split, numbered
shards of ``.npy`` files read through memory maps, the fitted encoder, and
``manifest.json``, which is written last and describes the rest.

Layout of a cache folder::

    manifest.json                     format, version, shards, sources, split
    encoder.json, vocabulary.safetensors
    train/shard-00000.sparse_ids.npy  (rows, num_sparse) int32
    train/shard-00000.dense.npy       (rows, dense_width) float32
    train/shard-00000.labels.npy      (rows,) float32
    train/shard-00001.* ... valid/... test/...
"""

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from data.encoder import ENCODER_JSON, VOCABULARY_FILE, EncodedBatch, Encoder

logger = logging.getLogger(__name__)

CACHE_FORMAT = "slimctr-cache"
CACHE_VERSION = 2
MANIFEST = "manifest.json"
SPLITS = ("train", "valid", "test")
# The arrays of a shard and their dtypes on disk.
ARRAYS = {"sparse_ids": np.int32, "dense": np.float32, "labels": np.float32}
DEFAULT_SHARD_ROWS = 1 << 20
_SHARD_NAME = re.compile(r"shard-\d{5}")
_PREPARE_AGAIN = "prepare the cache again with slimctr prepare"


class CacheError(ValueError):
    """A cache folder that cannot be read as one; the message names the file
    and the fix."""


def encoder_sha256(folder: str | Path) -> str:
    """SHA-256 over the encoder's files in ``folder``: the same digest an
    artifact records to bind its encoder to its model."""
    digest = hashlib.sha256()
    for name in (ENCODER_JSON, VOCABULARY_FILE):
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()


def shard_path(folder: Path, split: str, shard: str, array: str) -> Path:
    """``folder/split/shard.array.npy``, e.g. ``train/shard-00000.dense.npy``."""
    return folder / split / f"{shard}.{array}.npy"


# --- writing -----------------------------------------------------------------


class _NpyWriter:
    """One ``.npy`` file of a known shape, written a block of rows at a time
    through a plain file (no memory map, so nothing written stays resident)."""

    def __init__(self, path: Path, dtype: type, shape: tuple[int, ...]) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.shape = shape
        self.written = 0
        self._file: BinaryIO = open(path, "wb")
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": shape,
        }
        np.lib.format.write_array_header_1_0(self._file, header)

    def write(self, values: np.ndarray) -> None:
        assert values.shape[1:] == self.shape[1:], (values.shape, self.shape)
        np.ascontiguousarray(values, dtype=self.dtype).tofile(self._file)
        self.written += len(values)

    def close(self) -> None:
        self._file.close()
        assert self.written == self.shape[0], (self.path, self.written, self.shape)


class SplitWriter:
    """Writes the encoded rows of one split, in order, to shards of at most
    ``shard_rows`` rows each under ``folder``.

    Args:
        folder: the split's folder (``CACHE/train``); made if absent.
        rows: how many rows the split will receive in all.
        shard_rows: rows per shard (the last one may hold fewer).
        num_sparse: width of ``sparse_ids``.
        dense_width: width of ``dense`` (values and missing flags; may be 0).
    """

    def __init__(
        self,
        folder: str | Path,
        rows: int,
        shard_rows: int,
        num_sparse: int,
        dense_width: int,
    ) -> None:
        if rows < 0 or shard_rows < 1:
            raise ValueError(
                f"rows, shard_rows: expected >= 0 and >= 1, got {rows}, {shard_rows}"
            )
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        full, rest = divmod(rows, shard_rows)
        sizes = [shard_rows] * full + ([rest] if rest else [])
        self.shards = [
            {"name": f"shard-{i:05d}", "rows": n} for i, n in enumerate(sizes)
        ]
        self._widths = {"sparse_ids": num_sparse, "dense": dense_width, "labels": None}
        self._next = 0
        self._left = 0
        self._files: dict[str, _NpyWriter] = {}

    def _open_next(self) -> None:
        shard = self.shards[self._next]
        for array, dtype in ARRAYS.items():
            width = self._widths[array]
            shape = (shard["rows"],) if width is None else (shard["rows"], width)
            path = self.folder / f"{shard['name']}.{array}.npy"
            self._files[array] = _NpyWriter(path, dtype, shape)
        self._next += 1
        self._left = shard["rows"]

    def _close_current(self) -> None:
        for writer in self._files.values():
            writer.close()
        self._files = {}

    def write(self, encoded: EncodedBatch) -> None:
        """Append ``encoded``'s rows; they must have labels."""
        if encoded.labels is None:
            raise ValueError("encoded: the cache holds labeled rows only")
        arrays = {
            "sparse_ids": encoded.sparse_ids,
            "dense": encoded.dense,
            "labels": encoded.labels,
        }
        done = 0
        while done < len(encoded):
            if self._left == 0:
                if self._files:
                    self._close_current()
                if self._next == len(self.shards):
                    raise ValueError(
                        f"encoded: more rows than the {self.rows} announced for "
                        f"{self.folder}"
                    )
                self._open_next()
            take = min(self._left, len(encoded) - done)
            for array, writer in self._files.items():
                writer.write(arrays[array][done : done + take])
            self._left -= take
            done += take

    @property
    def rows(self) -> int:
        return sum(shard["rows"] for shard in self.shards)

    def close(self) -> list[dict]:
        """Finish the last shard; returns ``[{"name", "rows"}, ...]``."""
        if self._files:
            self._close_current()
        assert self._next == len(self.shards) and self._left == 0, (
            self.folder,
            self._next,
            self._left,
        )
        return self.shards


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Write ``manifest.json`` atomically: a reader sees the old or the new."""
    path = Path(folder) / MANIFEST
    partial = path.with_name(MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=1))
    os.replace(partial, path)
    return path


# --- reading -----------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """One shard of a split: its name, rows and the paths of its arrays."""

    name: str
    rows: int
    paths: dict[str, Path]


class CacheSplit:
    """The rows of one split of a cache, read by range from memory-mapped
    shards; only the rows asked for are copied into memory."""

    def __init__(
        self,
        name: str,
        shards: list[Shard],
        num_sparse: int,
        dense_width: int,
        num_embeddings: list[int] | None = None,
    ) -> None:
        self.name = name
        self.shards = tuple(shards)
        self.num_sparse = num_sparse
        self.dense_width = dense_width
        # ids must stay below each field's table size; None checks only >= 0
        self.num_embeddings = (
            None if num_embeddings is None else np.asarray(num_embeddings)
        )
        self._starts = np.cumsum([0] + [s.rows for s in self.shards])
        self._maps: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        return f"CacheSplit({self.name!r}, rows={len(self)}, shards={len(self.shards)})"

    def read(self, start: int, stop: int) -> EncodedBatch:
        """Rows ``[start, stop)``, across shards if need be.

        Returns an ``EncodedBatch`` of ``(stop - start, num_sparse)`` int64
        ``sparse_ids``, ``(stop - start, dense_width)`` float32 ``dense`` and
        ``(stop - start,)`` float32 ``labels``, copied out of the maps.
        """
        for name, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"{name}: expected an int, got {value!r}")
        if not 0 <= start <= stop <= len(self):
            raise ValueError(
                f"start, stop: expected 0 <= start <= stop <= {len(self)} (rows of "
                f"{self.name}), got {start}, {stop}"
            )
        rows = stop - start
        sparse_ids = np.empty((rows, self.num_sparse), dtype=np.int64)
        dense = np.empty((rows, self.dense_width), dtype=np.float32)
        labels = np.empty(rows, dtype=np.float32)
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        at = start
        for index in range(max(first, 0), len(self.shards)):
            if at >= stop:
                break
            begin = int(self._starts[index])
            end = min(stop, int(self._starts[index + 1]))
            if end <= at:
                continue
            maps = self._open(index)
            local, out = slice(at - begin, end - begin), slice(at - start, end - start)
            sparse_ids[out] = maps["sparse_ids"][local]
            dense[out] = maps["dense"][local]
            labels[out] = maps["labels"][local]
            self._check(index, sparse_ids[out], dense[out], labels[out], at - begin)
            at = end
        return EncodedBatch(sparse_ids, dense, labels)

    def _check(
        self,
        index: int,
        sparse_ids: np.ndarray,
        dense: np.ndarray,
        labels: np.ndarray,
        first_row: int,
    ) -> None:
        """A ``CacheError`` naming the shard file and row of a value that
        ``prepare`` never writes: a label other than 0 or 1, a non-finite
        dense value, an id outside its field's table."""
        paths = self.shards[index].paths
        problems = (
            ("labels", (labels != 0) & (labels != 1), "a label other than 0 or 1"),
            ("dense", ~np.isfinite(dense).all(axis=1), "a dense value not finite"),
            ("sparse_ids", self._bad_ids(sparse_ids), "an id outside its table"),
        )
        for array, bad, what in problems:
            if bad.any():
                row = first_row + int(np.argmax(bad))
                raise CacheError(
                    f"{paths[array]}: row {row} holds {what}; the cache is "
                    f"damaged, {_PREPARE_AGAIN}"
                )

    def _bad_ids(self, sparse_ids: np.ndarray) -> np.ndarray:
        bad = (sparse_ids < 0).any(axis=1)
        if self.num_embeddings is not None:
            bad |= (sparse_ids >= self.num_embeddings).any(axis=1)
        return bad

    def read_all(self) -> EncodedBatch:
        """Every row of the split in memory: for small caches only."""
        return self.read(0, len(self))

    def _open(self, index: int) -> dict[str, np.ndarray]:
        if index not in self._maps:
            paths = self.shards[index].paths
            self._maps[index] = {
                array: np.load(path, mmap_mode="r") for array, path in paths.items()
            }
        return self._maps[index]


@dataclass(frozen=True)
class Cache:
    """An opened cache folder: its manifest, encoder and the three splits."""

    folder: Path
    manifest: dict
    encoder: Encoder
    train: CacheSplit
    valid: CacheSplit
    test: CacheSplit

    def split(self, name: str) -> CacheSplit:
        """``"train"``, ``"valid"`` or ``"test"``."""
        if name not in SPLITS:
            raise ValueError(f"name: got {name!r}; accepted: {', '.join(SPLITS)}")
        return getattr(self, name)


def open_cache(folder: str | Path) -> Cache:
    """Open a cache written by ``slimctr prepare``, checking everything but the
    rows themselves first: the manifest, the encoder's fingerprint, and the
    existence, dtype and shape of every shard. A source file that changed or
    went since is warned about, not refused."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CacheError(
            f"--cache: {folder} is not a folder; write a cache there with "
            f"slimctr prepare --data FILE --out {folder}"
        )
    path = folder / MANIFEST
    manifest = _read_manifest(path)
    encoder = Encoder.load(folder)
    if encoder_sha256(folder) != manifest.get("encoder_sha256"):
        raise CacheError(
            f"{folder / ENCODER_JSON}: the encoder files do not match {path} "
            f"(fingerprint mismatch); copy the cache folder whole, or "
            f"{_PREPARE_AGAIN}"
        )
    num_sparse = len(encoder.vocabularies)
    dense_width = 2 * len(encoder.dense_mean)
    splits = {
        name: CacheSplit(
            name,
            _shards(folder, name, manifest, num_sparse, dense_width),
            num_sparse,
            dense_width,
            encoder.num_embeddings,
        )
        for name in SPLITS
    }
    for source in manifest.get("sources", []):
        _warn_if_stale(source, path)
    return Cache(folder, manifest, encoder, **splits)


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CacheError(
            f"--cache: {path} not found: {path.parent} is not a slimctr cache (or "
            f"its writing did not finish); write one with slimctr prepare --data "
            f"FILE --out {path.parent}"
        ) from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CacheError(f"{path}: not valid JSON ({err}); {_PREPARE_AGAIN}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
        raise CacheError(
            f"{path}: not a slimctr cache manifest (expected format "
            f"{CACHE_FORMAT!r}); point --cache at a folder written by slimctr prepare"
        )
    version = manifest.get("format_version")
    if version != CACHE_VERSION:
        raise CacheError(
            f"{path}: cache format_version {version!r} is not supported; this "
            f"slimctr reads version {CACHE_VERSION}; {_PREPARE_AGAIN}"
        )
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or set(SPLITS) - set(splits):
        raise CacheError(
            f"{path}: 'splits' must describe {', '.join(SPLITS)}; {_PREPARE_AGAIN}"
        )
    return manifest


def _shards(
    folder: Path, split: str, manifest: dict, num_sparse: int, dense_width: int
) -> list[Shard]:
    """The shards a manifest lists for ``split``, each file's header checked."""
    path = folder / MANIFEST
    listed = manifest["splits"][split].get("shards")
    if not isinstance(listed, list):
        raise CacheError(f"{path}: splits.{split}.shards must be a list")
    shards = []
    for entry in listed:
        name = entry.get("name") if isinstance(entry, dict) else None
        rows = entry.get("rows") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
            raise CacheError(
                f"{path}: splits.{split}.shards holds {entry!r}; expected "
                f"{{'name': 'shard-00000', 'rows': N}}; {_PREPARE_AGAIN}"
            )
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise CacheError(f"{path}: {split}/{name}: rows must be an int >= 0")
        widths = {"sparse_ids": (num_sparse,), "dense": (dense_width,), "labels": ()}
        paths = {}
        for array, dtype in ARRAYS.items():
            file = shard_path(folder, split, name, array)
            _check_array(file, np.dtype(dtype), (rows, *widths[array]))
            paths[array] = file
        shards.append(Shard(name, rows, paths))
    return shards


def _check_array(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """A ``CacheError`` unless ``path`` is a ``.npy`` file of that dtype and
    shape; reads the header only."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(handle)
            else:
                header = np.lib.format.read_array_header_2_0(handle)
            data_bytes = os.fstat(handle.fileno()).st_size - handle.tell()
    except FileNotFoundError as err:
        raise CacheError(
            f"{path}: missing; the cache is incomplete; {_PREPARE_AGAIN}"
        ) from err
    except ValueError as err:  # numpy's error for a bad magic or header
        raise CacheError(
            f"{path}: not a readable .npy file ({err}); {_PREPARE_AGAIN}"
        ) from err
    found_shape, fortran_order, found_dtype = header
    if found_dtype != dtype or tuple(found_shape) != shape or fortran_order:
        raise CacheError(
            f"{path}: expected {dtype} of shape {shape}, found {found_dtype} of "
            f"shape {tuple(found_shape)}; {_PREPARE_AGAIN}"
        )
    if data_bytes < dtype.itemsize * int(np.prod(shape)):
        raise CacheError(f"{path}: truncated (fewer bytes than its header says)")


def _warn_if_stale(source: dict, manifest_path: Path) -> None:
    path = Path(source.get("path", ""))
    if not path.is_file():
        logger.warning("%s: the source file %s is gone", manifest_path, path)
        return
    stat = path.stat()
    if stat.st_size != source.get("bytes") or stat.st_mtime != source.get("mtime"):
        logger.warning(
            "%s: the source file %s changed since the cache was written; "
            "run slimctr prepare again to use the new rows",
            manifest_path,
            path,
        )
