"""Streaming preparation of an encoded cache (``slimctr prepare``): labeled
files read in order as one stream and parsed once into a binary intermediate,
the encoder fitted on its training rows, then every row encoded into the
cache's shards (see ``data.shards``), in memory bounded by a chunk of rows and
the vocabulary.
"""

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.bad_lines import SkipCounter
from data.batch import RawBatch
from data.encoder import VOCABULARY_FILE, EncodedBatch, Encoder
from data.encoder_fit import EncoderFit
from data.intermediate import Intermediate
from data.prefetch import prefetch
from data.schema import CRITEO, MISSING_KEY, Schema
from data.shards import (
    CACHE_FORMAT,
    CACHE_VERSION,
    DEFAULT_SHARD_ROWS,
    MANIFEST,
    SPLITS,
    SplitWriter,
    encoder_sha256,
    write_manifest,
)
from data.split import Split

logger = logging.getLogger(__name__)

INTERMEDIATE_PREFIX = ".intermediate-"
# the new cache is built in a hidden folder and moved in once whole, so a
# failed run leaves the cache that was there before untouched
STAGE_PREFIX = ".new-cache-"
# Rows per chunk: memory stays bounded, and every array of a chunk (the
# largest is (rows, num_sparse) int64, 17 MB) stays under glibc's 32 MB mmap
# threshold, so its memory is reused chunk after chunk instead of being mapped
# and faulted in afresh; on a 2-core VM that halved the time of a 1M-row
# prepare against 200k-row chunks.
CHUNK_ROWS = 1 << 16
_INT32_MAX = np.iinfo(np.int32).max
_UINT32_MAX = np.iinfo(np.uint32).max

# A progress-bar factory: ``bars(desc, total)`` gives a context manager whose
# value has ``update(rows)``; tqdm fits. ``total`` is None when unknown.
Bars = Callable[[str, int | None], AbstractContextManager]


@dataclass(frozen=True)
class PrepareConfig:
    """How a cache is prepared.

    Attributes:
        split: train/valid/test fractions.
        split_seed: ``None`` splits by position over the rows of all files in
            order (earliest train, latest test); an int assigns each row to a
            split by a random draw from this seed (reproducible, independent of
            ``chunk_rows``), so the sizes follow the fractions only roughly.
        min_count: a key enters a vocabulary when seen this often in train.
        max_vocab: at most this many keys per field, the most frequent
            (``None``: no cap).
        dense_buckets: also give each dense feature a categorical field of
            log-squared buckets (see :mod:`data.buckets`).
        chunk_rows: rows parsed, counted and encoded at a time; bounds memory.
        shard_rows: rows per shard file of the cache.
    """

    split: Split = field(default_factory=Split)
    split_seed: int | None = None
    min_count: int = 1
    max_vocab: int | None = None
    dense_buckets: bool = False
    chunk_rows: int = CHUNK_ROWS
    shard_rows: int = DEFAULT_SHARD_ROWS

    def __post_init__(self) -> None:
        if not isinstance(self.split, Split):
            raise TypeError(f"split: expected a Split, got {type(self.split)}")
        if self.split_seed is not None and (
            isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int)
        ):
            raise TypeError(
                f"split_seed: expected an int or None, got {self.split_seed!r}"
            )
        for name in ("chunk_rows", "shard_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
        EncoderFit(self.min_count, self.max_vocab)  # checks both


@dataclass(frozen=True)
class Reader:
    """How the files are read: the rows' schema, and ``batches(path,
    skipped)`` giving a file's labeled ``RawBatch`` chunks in order while
    counting dropped lines in ``skipped``."""

    batches: Callable[[Path, SkipCounter], Iterable[RawBatch]]
    schema: Schema = CRITEO


def prepare_cache(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    reader: Reader,
    config: PrepareConfig | None = None,
    bars: Bars | None = None,
) -> dict:
    """Read ``paths`` in order as one stream and write the cache ``out``.

    The intermediate lives in a hidden folder inside ``out`` and is removed at
    the end, also on error; a failed run leaves no ``manifest.json``, so no
    half-written cache is ever opened. Returns the manifest.
    """
    paths = _check_paths(paths)
    if not isinstance(reader, Reader):
        raise TypeError(f"reader: expected a Reader, got {type(reader)}")
    if config is not None and not isinstance(config, PrepareConfig):
        raise TypeError(f"config: expected a PrepareConfig, got {type(config)}")
    config = config or PrepareConfig()
    bars = bars or _no_bars
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)

    started = time.perf_counter()
    stage = Path(tempfile.mkdtemp(dir=out, prefix=STAGE_PREFIX))
    try:
        folder = tempfile.mkdtemp(dir=out, prefix=INTERMEDIATE_PREFIX)
        storage = _Storage(reader.schema, config.split_seed is not None)
        with Intermediate(folder, storage.columns()) as store:
            sources = _read(paths, reader, storage, store, config, bars)
            assignment = _Assignment.of(store, config)
            encoder = _fit(storage, store, assignment, config, bars)
            encoder.save(stage)
            (stage / VOCABULARY_FILE).chmod(0o644)  # safetensors writes 0600
            splits = _encode(storage, store, assignment, encoder, stage, config, bars)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:  # leave no folder behind that was not there before
            shutil.rmtree(out, ignore_errors=True)
        raise
    _clear(out)
    for entry in stage.iterdir():
        os.replace(entry, out / entry.name)
    stage.rmdir()

    manifest = _manifest(out, encoder, sources, assignment, splits, config)
    write_manifest(out, manifest)
    seconds = time.perf_counter() - started
    rows = manifest["data"]["rows"]
    logger.info(
        "prepared %d rows in %.1f s (%.0f rows/s) into %s",
        rows,
        seconds,
        rows / max(seconds, 1e-9),
        out,
    )
    return manifest


# --- the passes --------------------------------------------------------------


def _read(
    paths: list[Path],
    reader: Reader,
    storage: "_Storage",
    store: Intermediate,
    config: PrepareConfig,
    bars: Bars,
) -> list[dict]:
    """Pass 1: parse every file once, appending its rows to ``store``;
    returns what the manifest says of each file."""
    draw = None
    if config.split_seed is not None:
        rng = np.random.default_rng(config.split_seed)

        def draw(rows: int) -> np.ndarray:
            return _random_codes(rng, rows, config.split)

    with bars("read", None) as bar:
        sources = [
            _read_file(path, reader, storage, store, draw, bar) for path in paths
        ]
    store.close()
    logger.info("read %d rows from %d file(s)", store.rows, len(paths))
    return sources


def _read_file(
    path: Path,
    reader: Reader,
    storage: "_Storage",
    store: Intermediate,
    draw: Callable[[int], np.ndarray] | None,
    bar,
) -> dict:
    """Append the rows of one file (with split codes from ``draw``, for a
    random split); returns what the manifest says of the file."""
    stat = path.stat()
    skipped = SkipCounter()
    rows = 0
    with closing(prefetch(reader.batches(path, skipped))) as batches:
        for batch in batches:
            if batch.labels is None:
                raise ValueError(
                    f"{path}: has no label column ({reader.schema.label!r} for "
                    f"the schema {reader.schema.name}); prepare needs labeled rows"
                )
            codes = None if draw is None else draw(len(batch))
            store.append(**storage.stored(batch, codes))
            rows += len(batch)
            bar.update(len(batch))
    if skipped.total:
        logger.warning("%s: %s", path, skipped.summary())
    return {
        "path": str(path.resolve()),
        "bytes": stat.st_size,
        "mtime": stat.st_mtime,
        "rows": rows,
        "skipped_lines": dict(skipped.counts),
    }


def _fit(
    storage: "_Storage",
    store: Intermediate,
    assignment: "_Assignment",
    config: PrepareConfig,
    bars: Bars,
) -> Encoder:
    """The encoder of the training rows, streamed from ``store``."""
    fit = EncoderFit(
        config.min_count, config.max_vocab, storage.schema, config.dense_buckets
    )
    with bars("fit", assignment.rows[0]) as bar:
        for start, stop in _ranges(assignment.fit_stop, config.chunk_rows):
            batch = storage.batch(store, start, stop)
            batch = _take(batch, assignment.selectors(store, start, stop)[0])
            fit.update(batch)
            bar.update(len(batch))
    encoder = fit.finish()
    if max(encoder.num_embeddings, default=0) > _INT32_MAX:
        raise ValueError(
            f"a vocabulary has {max(encoder.num_embeddings):,} rows, past the int32 "
            "ids of a cache; lower it with --max-vocab or --min-count"
        )
    return encoder


def _encode(
    storage: "_Storage",
    store: Intermediate,
    assignment: "_Assignment",
    encoder: Encoder,
    out: Path,
    config: PrepareConfig,
    bars: Bars,
) -> dict[str, list[dict]]:
    """Pass 2: encode every row of ``store`` into its split's shards."""
    writers = [
        SplitWriter(
            out / name,
            rows,
            config.shard_rows,
            len(encoder.vocabularies),
            2 * len(encoder.dense_mean),
        )
        for name, rows in zip(SPLITS, assignment.rows, strict=True)
    ]

    def encoded() -> Iterator[tuple[EncodedBatch, list]]:
        for start, stop in _ranges(store.rows, config.chunk_rows):
            batch = encoder.transform(storage.batch(store, start, stop))
            selectors = assignment.selectors(store, start, stop)
            # nothing refers to these rows' maps any more: deleting them now
            # lets the shards written next reuse their page cache
            store.release(stop)
            yield batch, selectors

    # encoding the next chunk (mostly under the GIL) overlaps writing this one
    # (in the kernel, without it)
    with bars("encode", store.rows) as bar, closing(prefetch(encoded())) as chunks:
        for batch, selectors in chunks:
            for writer, selector in zip(writers, selectors, strict=True):
                part = _take(batch, selector)
                if len(part):
                    writer.write(part)
            bar.update(len(batch))
    return {name: writer.close() for name, writer in zip(SPLITS, writers, strict=True)}


# --- the split ---------------------------------------------------------------


@dataclass(frozen=True)
class _Assignment:
    """Which split each row of the intermediate is in.

    ``rows`` counts train, valid and test; ``bounds`` are their slices for a
    split by position, ``None`` for a random one (read from the intermediate's
    ``split`` column); ``fit_stop`` ends the rows the fit must read.
    """

    rows: tuple[int, int, int]
    bounds: tuple[slice, slice, slice] | None
    fit_stop: int
    config: PrepareConfig

    @classmethod
    def of(cls, store: Intermediate, config: PrepareConfig) -> "_Assignment":
        if store.rows == 0:
            raise ValueError("--data: the files hold no rows")
        if config.split_seed is None:
            bounds = config.split.bounds(store.rows)
            rows = tuple(b.stop - b.start for b in bounds)
            return cls(rows, bounds, bounds[0].stop, config)
        counts = np.zeros(len(SPLITS), dtype=np.int64)
        for start, stop in _ranges(store.rows, config.chunk_rows):
            codes = store.read(start, stop)["split"]
            counts += np.bincount(codes, minlength=len(SPLITS))
        for name, count in zip(SPLITS, counts, strict=True):
            if count == 0:
                raise ValueError(
                    f"--split-seed: the random split of {store.rows} rows left "
                    f"{name} empty; give more rows or drop --split-seed"
                )
        return cls(tuple(int(c) for c in counts), None, store.rows, config)

    def selectors(
        self, store: Intermediate, start: int, stop: int
    ) -> list[slice | np.ndarray]:
        """Per split, which rows of ``[start, stop)`` are in it: a slice, or a
        boolean mask; ``slice(None)`` when all are."""
        if self.bounds is None:
            codes = np.asarray(store.read(start, stop)["split"])
            return [codes == code for code in range(len(SPLITS))]
        selectors = []
        for part in self.bounds:
            low = min(max(part.start, start), stop) - start
            high = min(max(part.stop, start), stop) - start
            whole = low == 0 and high == stop - start
            selectors.append(slice(None) if whole else slice(low, high))
        return selectors


def _random_codes(rng: np.random.Generator, rows: int, split: Split) -> np.ndarray:
    """``(rows,)`` uint8 split codes (0 train, 1 valid, 2 test), one uniform
    draw per row: consecutive calls give the codes of one long call."""
    draws = rng.random(rows)
    cuts = np.array([split.train, split.train + split.valid])
    return np.searchsorted(cuts, draws, side="right").astype(np.uint8)


# --- helpers -----------------------------------------------------------------


def _ranges(stop: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, stop, step):
        yield start, min(start + step, stop)


def _take(batch, selector: slice | np.ndarray):
    """``batch.take(selector)``, without a copy when it selects every row."""
    if isinstance(selector, slice) and selector == slice(None):
        return batch
    return batch.take(selector)


@dataclass(frozen=True)
class _Storage:
    """How rows are kept in the intermediate, compactly: labels as uint8;
    32-bit keys (Criteo's hex hashes) as uint32 with a bit per field marking
    the missing ones, other keys as int64; dense values as float64, exact;
    and, for a random split, each row's split code."""

    schema: Schema
    random_split: bool

    @property
    def keys32(self) -> bool:
        return self.schema.sparse_kind == "hex32"

    def columns(self) -> dict[str, tuple]:
        num_sparse = self.schema.num_sparse
        columns = {
            "labels": (np.uint8, None),
            "dense": (np.float64, self.schema.num_dense),
            "sparse": (np.uint32 if self.keys32 else np.int64, num_sparse),
        }
        if self.keys32:
            columns["missing"] = (np.uint8, -(-num_sparse // 8))
        if self.random_split:
            columns["split"] = (np.uint8, None)
        return columns

    def stored(self, batch: RawBatch, codes: np.ndarray | None) -> dict:
        arrays = {"labels": batch.labels.astype(np.uint8), "dense": batch.dense}
        if self.keys32:
            missing = batch.sparse == MISSING_KEY
            if batch.sparse.size and batch.sparse.max() > _UINT32_MAX:
                raise ValueError(
                    f"a sparse key of {batch.sparse.max()} is past 32 bits, but "
                    f"the schema {self.schema.name} has sparse_kind hex32"
                )
            arrays["sparse"] = batch.sparse.astype(np.uint32)
            arrays["missing"] = np.packbits(missing, axis=1)
        else:
            arrays["sparse"] = batch.sparse
        if self.random_split:
            arrays["split"] = codes
        return arrays

    def batch(self, store: Intermediate, start: int, stop: int) -> RawBatch:
        """Rows ``[start, stop)`` of ``store`` as a batch; ids and lines are
        the 1-based positions in the stream of all files."""
        part = store.read(start, stop)
        sparse = part["sparse"].astype(np.int64)
        if self.keys32:
            count = self.schema.num_sparse
            missing = np.unpackbits(part["missing"], axis=1, count=count)
            sparse[missing.view(bool)] = MISSING_KEY
        positions = np.arange(start + 1, stop + 1, dtype=np.int64)
        return RawBatch(
            labels=part["labels"].astype(np.float32),
            dense=part["dense"],
            sparse=sparse,
            ids=positions,
            lines=positions,
        )


def _check_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, str | os.PathLike) or not isinstance(paths, Sequence):
        raise TypeError(f"paths: expected a list of paths, got {type(paths)}")
    if not paths:
        raise ValueError("--data: expected at least one file")
    checked: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"--data: no such file: {path}")
        if not path.is_file():
            raise ValueError(f"--data: {path} is not a regular file")
        if any(path.samefile(seen) for seen in checked):
            raise ValueError(
                f"--data: {path} is given twice; name each file once, or its rows "
                "would be counted twice"
            )
        checked.append(path)
    return checked


def _clear(out: Path) -> None:
    """Remove the old cache from ``out`` to make room for the new one: the
    manifest goes first, so a failure from here on never leaves a cache that
    looks whole."""
    (out / MANIFEST).unlink(missing_ok=True)
    for name in SPLITS:
        shutil.rmtree(out / name, ignore_errors=True)
        (out / f"{name}.safetensors").unlink(missing_ok=True)  # a version 1 cache


def _remove_leftovers(out: Path) -> None:
    """Delete what an earlier prepare that was killed left in ``out``."""
    for prefix in (INTERMEDIATE_PREFIX, STAGE_PREFIX):
        for stale in out.glob(prefix + "*"):
            logger.warning(
                "removing %s, left by an earlier prepare that was killed", stale
            )
            shutil.rmtree(stale, ignore_errors=True)


def _manifest(
    out: Path,
    encoder: Encoder,
    sources: list[dict],
    assignment: _Assignment,
    splits: dict[str, list[dict]],
    config: PrepareConfig,
) -> dict:
    skipped = SkipCounter()
    for source in sources:
        for reason, count in source["skipped_lines"].items():
            skipped.add(reason, count)
    split = config.split
    method = "by position (file order)"
    if config.split_seed is not None:
        method = f"random (seed {config.split_seed})"
    paths = [source["path"] for source in sources]
    counts = dict(zip(SPLITS, assignment.rows, strict=True))
    return {
        "format": CACHE_FORMAT,
        "format_version": CACHE_VERSION,
        "encoder_sha256": encoder_sha256(out),
        "encoder": {
            "min_count": encoder.min_count,
            "max_vocab": config.max_vocab,
            "dense_buckets": config.dense_buckets,
            "num_sparse": len(encoder.vocabularies),
            "dense_width": 2 * len(encoder.dense_mean),
            "vocabulary_rows": int(sum(len(v) for v in encoder.vocabularies)),
        },
        "sources": sources,
        "split": {
            "method": "position" if config.split_seed is None else "random",
            "fractions": [split.train, split.valid, split.test],
            "seed": config.split_seed,
        },
        "splits": {
            name: {"rows": counts[name], "shards": shards}
            for name, shards in splits.items()
        },
        "skipped_lines": dict(skipped.counts),
        # what the data of a model trained on this cache is described as
        "data": {
            "path": paths[0] if len(paths) == 1 else ", ".join(paths),
            "paths": paths,
            "rows": sum(assignment.rows),
            "split": {
                "method": method,
                "fractions": [split.train, split.valid, split.test],
                **counts,
            },
            "skipped_lines": dict(skipped.counts),
        },
    }


class _NoBar:
    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, rows: int) -> None:
        pass


def _no_bars(desc: str, total: int | None) -> _NoBar:
    return _NoBar()
