"""Synthetic click logs in the raw Criteo DAC layout: the embedded default data set.

Every row is synthetic, drawn from a fixed planted model, and its true click
probability goes to a side file, ``<out>.proba``. The planted logit adds up:

* a bias per sparse value; values follow Zipf-like popularities, with
  cardinalities (the real ones capped at 100k) and missing rates shaped after
  the real data, and rarer values get smaller biases;
* factorization-style interactions ``<u_f, u_g>`` for 12 pairs of sparse
  fields, with embeddings centred under the popularities so that no pair leaks
  into a main effect;
* a non-monotone effect of each heavy-tailed dense feature (a slope plus a bump
  in log space) and an effect of its being missing;
* dense x sparse interactions: six sparse fields set per-value slopes on six
  dense features.

``seed`` draws the sample; the planted model never changes, so files with
different seeds are independent samples of one distribution. At 1M rows (seed
0, split 80/10/10 by position) the click rate is 0.253 and the oracle test AUC
0.803; a logistic regression on one-hot values, log dense features and missing
flags reaches 0.769 (gap 0.034), and 0.785 with the planted crosses added as
features: ``python benchmarks/synth_linear_gap.py --rows 1000000 --crosses``.
"""

import logging
import numbers
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np

from data.schema import DENSE_FEATURES, NUM_DENSE, NUM_SPARSE, SPARSE_FEATURES

logger = logging.getLogger(__name__)

# The planted model is drawn once from this seed; a row sample's ``seed`` is
# separate, so every sample comes from the same distribution.
WORLD_SEED = 20240917

# Rows are drawn in blocks of this size, each block from its own seeded stream,
# which makes the output independent of how the writer chunks it.
BLOCK_ROWS = 1 << 13

# (num_embeddings, head, zipf_exponent, zipf_offset) per sparse feature: a
# point mass ``head`` on the top value, the rest with popularity
# proportional to ``(rank + offset) ** -exponent``. Fitted to the distinct
# counts and top-1/10/100 shares of a 12.5k-row real sample; cardinalities are
# the real ones capped at 100k.
SPARSE_SPECS: tuple[tuple[int, float, float, float], ...] = (
    (1460, 0.0, 1.96, 0.95),  # C1
    (583, 0.08, 2.58, 30.5),  # C2
    (100_000, 0.0, 0.88, 0.21),  # C3
    (100_000, 0.0, 1.02, 0.85),  # C4
    (305, 0.0, 2.62, 1.01),  # C5
    (24, 0.0, 145.0, 163.0),  # C6
    (12_517, 0.013, 1.37, 94.0),  # C7
    (633, 0.0, 2.30, 1.02),  # C8
    (3, 0.5, 1.72, 0.35),  # C9
    (93_145, 0.275, 1.37, 80.0),  # C10
    (5683, 0.028, 1.75, 129.0),  # C11
    (100_000, 0.0, 0.91, 0.33),  # C12
    (3194, 0.03, 1.71, 100.0),  # C13
    (27, 0.0, 19.6, 41.5),  # C14
    (14_992, 0.018, 1.82, 112.0),  # C15
    (100_000, 0.0, 0.96, 0.85),  # C16
    (10, 0.37, 0.30, 1.0),  # C17
    (5652, 0.044, 2.0, 57.4),  # C18
    (2173, 0.57, 1.37, 6.7),  # C19
    (3, 0.0, 0.16, 1.66),  # C20
    (100_000, 0.0, 0.93, 0.52),  # C21
    (18, 0.5, 117.0, 580.0),  # C22
    (15, 0.0, 138.0, 206.0),  # C23
    (100_000, 0.0, 1.18, 1.69),  # C24
    (105, 0.118, 15.1, 57.5),  # C25
    (100_000, 0.053, 1.17, 5.0),  # C26
)

# (zero_rate, log_median, log_sd, cap, activity_loading) per dense feature:
# zero with ``zero_rate``, else ``ceil(exp(normal))`` capped at ``cap``; a
# per-row activity factor correlates the counts. I2 is also -1 (10%) or -2.
DENSE_SPECS: tuple[tuple[float, float, float, int, float], ...] = (
    (0.47, 0.8, 1.1, 5_000, 0.6),  # I1
    (0.18, 2.6, 2.2, 200_000, 0.3),  # I2
    (0.01, 1.7, 1.7, 65_535, 0.5),  # I3
    (0.07, 1.4, 1.1, 1_000, 0.6),  # I4
    (0.02, 7.8, 2.5, 5_000_000, 0.3),  # I5
    (0.06, 3.6, 1.7, 200_000, 0.5),  # I6
    (0.25, 1.3, 1.6, 20_000, 0.6),  # I7
    (0.12, 2.1, 1.1, 5_000, 0.2),  # I8
    (0.03, 3.6, 1.7, 50_000, 0.5),  # I9
    (0.50, -0.6, 0.5, 10, 0.6),  # I10
    (0.27, 0.3, 1.05, 1_000, 0.6),  # I11
    (0.74, -0.4, 1.3, 1_000, 0.4),  # I12
    (0.06, 1.5, 1.3, 5_000, 0.6),  # I13
)
I2_NEGATIVE_RATES = (0.101, 0.0008)  # P(I2 = -1), P(I2 = -2)

# Features that go missing together, with the rate at which they do: the real
# data drops these groups as a whole.
MISSING_GROUPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("I1", "I10"), 0.45),
    (("I3",), 0.20),
    (("I4", "I13"), 0.20),
    (("I5",), 0.045),
    (("I6",), 0.22),
    (("I7", "I9", "I11"), 0.045),
    (("I8",), 0.0005),
    (("I12",), 0.77),
    (("C3", "C4", "C12", "C16", "C21", "C24"), 0.04),
    (("C6",), 0.12),
    (("C19", "C20", "C25", "C26"), 0.44),
    (("C22",), 0.80),
)

# Sparse field pairs with a factorization-style interaction, and the dense x
# sparse pairs whose sparse value sets a slope on the dense feature.
INTERACTION_PAIRS: tuple[tuple[str, str], ...] = (
    ("C1", "C2"),
    ("C2", "C14"),
    ("C5", "C8"),
    ("C6", "C17"),
    ("C7", "C13"),
    ("C11", "C15"),
    ("C14", "C23"),
    ("C18", "C19"),
    ("C9", "C25"),
    ("C4", "C10"),
    ("C20", "C22"),
    ("C13", "C24"),
)
DENSE_SPARSE_PAIRS: tuple[tuple[str, str], ...] = (
    ("I1", "C2"),
    ("I5", "C14"),
    ("I7", "C8"),
    ("I11", "C5"),
    ("I6", "C23"),
    ("I13", "C17"),
)

# Scales of the planted logit terms, tuned so that the click rate is near 0.25,
# the oracle AUC near 0.80, and the interactions leave a linear model short.
INTERCEPT = -1.86
BIAS_SCALE = 0.36
PAIR_SCALE = 0.14  # sd of each pair's term
DENSE_SCALE = 0.22
DENSE_SPARSE_SCALE = 0.15  # sd of each slope, per sd of its dense feature
EMBEDDING_DIM = 4
BIAS_DECAY_RANK = 100.0  # rank at which a bias sd has shrunk by 1/sqrt(2)
LOGIT_CLIP = 9.0  # keeps probabilities in [1.2e-4, 1 - 1.2e-4]

AUC_BINS = 1 << 20
PROBA_SUFFIX = ".proba"


@dataclass(frozen=True)
class SynthSummary:
    """What ``write_synthetic`` wrote: files, size and the planted difficulty.

    Attributes:
        path: the data file (raw DAC TSV, no header, 40 fields a line).
        proba_path: the true click probability of each row, one a line.
        rows: number of rows written.
        seed: the sample seed.
        click_rate: share of rows with label 1.
        oracle_auc: AUC of the true probabilities against the drawn labels
            (from a 2**20-bin histogram; off by less than 1e-5).
    """

    path: Path
    proba_path: Path
    rows: int
    seed: int
    click_rate: float
    oracle_auc: float


@dataclass(frozen=True)
class _World:
    """The planted model: vocabularies, popularities and logit terms."""

    zipf: np.ndarray  # (4, 26): num_embeddings, head, exponent, offset
    hex_words: np.ndarray  # (sum of num_embeddings,) 8 ascii hex digits as uint64
    offsets: np.ndarray  # (26,) start of each field in the concatenated tables
    bias: np.ndarray  # (sum of num_embeddings + 26,): values, then missing
    pair_fields: np.ndarray  # (p,) the sparse fields in INTERACTION_PAIRS
    pair_ends: np.ndarray  # (2, 12): each pair's two positions in pair_fields
    pair_offsets: np.ndarray  # (p,) start of each of those fields in pair_table
    pair_table: np.ndarray  # (sum of their num_embeddings + 1, dim) embeddings
    pair_weights: np.ndarray  # (12,) scales each pair's term to unit variance
    slopes: dict[int, np.ndarray]  # field -> (num_embeddings + 1,)
    dense_loc: np.ndarray  # (13,) centre of log1p(value)
    dense_scale: np.ndarray  # (13,) spread of log1p(value)
    dense_shape: np.ndarray  # (4, 13): slope, bump height, bump centre, missing


@dataclass(frozen=True)
class _Block:
    """One block of drawn rows, before formatting.

    Attributes:
        labels: ``(n,)`` uint8 in {0, 1}.
        dense: ``(n, 13)`` int64 values.
        dense_missing: ``(n, 13)`` bool.
        sparse: ``(n, 26)`` int64 popularity ranks, -1 where missing.
        proba: ``(n,)`` float64 true click probabilities.
    """

    labels: np.ndarray
    dense: np.ndarray
    dense_missing: np.ndarray
    sparse: np.ndarray
    proba: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def proba_path_for(path: Path) -> Path:
    """The side file of true probabilities for data file ``path``."""
    path = Path(path)
    return path.with_name(path.name + PROBA_SUFFIX)


def write_synthetic(
    path: str | Path,
    rows: int,
    seed: int = 0,
    chunk_rows: int = 100_000,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write ``rows`` synthetic DAC rows to ``path`` and their probabilities.

    The same ``(rows, seed)`` gives byte-identical files whatever ``chunk_rows``
    is, and fewer rows give a prefix of the same lines. Both files are written
    under temporary names and renamed at the end, so a failed or interrupted
    run leaves neither a partial file nor a temporary one behind.

    Args:
        path: the data file to write; its folder is created if missing. The
            probabilities go to ``proba_path_for(path)``.
        rows: number of rows, at least 1.
        seed: non-negative integer selecting the sample.
        chunk_rows: rows written at a time, and between ``progress`` calls;
            memory grows with it (about 300 bytes a row).
        progress: called after each chunk with the number of rows that chunk
            wrote, so a ``tqdm`` bar's ``update`` fits.
    """
    rows = _check_count("rows", rows)
    seed = _check_seed(seed)
    chunk_rows = _check_count("chunk_rows", chunk_rows)
    path = Path(path)
    proba_path = proba_path_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    tmp_path = path.with_name(path.name + ".tmp")
    tmp_proba = proba_path.with_name(proba_path.name + ".tmp")
    try:
        with open(tmp_path, "wb") as data_file, open(tmp_proba, "wb") as proba_file:
            counts = _write_rows(
                _BlockSource(_world(), seed),
                rows,
                chunk_rows,
                (data_file, proba_file),
                progress,
            )
        os.replace(tmp_path, path)
        os.replace(tmp_proba, proba_path)
    finally:
        tmp_path.unlink(missing_ok=True)
        tmp_proba.unlink(missing_ok=True)

    summary = SynthSummary(
        path=path,
        proba_path=proba_path,
        rows=rows,
        seed=seed,
        click_rate=float(counts[1::2].sum() / rows),
        oracle_auc=_binned_auc(counts[1::2], counts[0::2]),
    )
    logger.info(
        "wrote %d synthetic rows to %s (seed %d, click rate %.4f, oracle AUC %.4f)",
        rows,
        path,
        seed,
        summary.click_rate,
        summary.oracle_auc,
    )
    return summary


def read_proba(path: str | Path) -> np.ndarray:
    """The true probabilities of a side file, ``(n,)`` float64.

    ``path`` is the ``.proba`` file itself, not the data file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"path: no probability file at {path}; write_synthetic writes it "
            f"next to the data file as <data>{PROBA_SUFFIX}"
        )
    try:
        proba = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except ValueError as err:
        raise ValueError(f"{path}: expected one probability per line ({err})") from err
    bad = np.flatnonzero(~((proba >= 0.0) & (proba <= 1.0)))
    if len(bad):
        raise ValueError(
            f"{path}, line {bad[0] + 1}: expected a probability in [0, 1], "
            f"got {proba[bad[0]]}"
        )
    return proba


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value}")
    return int(value)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed: expected a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed}")
    return int(seed)


def _write_rows(
    source: "_BlockSource",
    rows: int,
    chunk_rows: int,
    files: tuple[BinaryIO, BinaryIO],
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """Write the rows and probabilities; return label counts per probability bin.

    The counts are ``(2 * AUC_BINS,)``, the rows of bin ``b`` with label ``y``
    at ``2 * b + y``.
    """
    data_file, proba_file = files
    counts = np.zeros(2 * AUC_BINS, dtype=np.int64)
    keys: list[np.ndarray] = []
    pending = 0
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        for piece in source.rows(start, stop):
            data_file.write(_format_rows(source.world, piece))
            proba_file.write(_format_proba(piece.proba))
            keys.append(2 * _auc_bin(piece.proba) + piece.labels)
        pending += stop - start
        # Counting costs a pass over all bins, so gather rows for it first.
        if stop == rows or pending >= AUC_BINS:
            counts += np.bincount(np.concatenate(keys), minlength=2 * AUC_BINS)
            keys.clear()
            pending = 0
        if progress is not None:
            progress(stop - start)
    return counts


@lru_cache(maxsize=1)
def _world() -> _World:
    """Draw the planted model from ``WORLD_SEED`` (cached: it never changes)."""
    # One stream per part, so retuning one part leaves the others as they were.
    bias_rng, pair_rng, slope_rng, shape_rng, moment_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(WORLD_SEED).spawn(5)
    )
    zipf = np.array(SPARSE_SPECS, dtype=np.float64).T  # (4, 26)
    sizes = zipf[0].astype(np.int64)
    popularity = [_popularity(*spec) for spec in SPARSE_SPECS]
    dense_loc, dense_scale = _dense_moments(moment_rng)
    return _World(
        zipf=zipf,
        hex_words=_hex_words(sizes),
        offsets=np.concatenate([[0], np.cumsum(sizes)[:-1]]),
        bias=_draw_biases(bias_rng, sizes),
        **_draw_pairs(pair_rng, popularity),
        slopes={
            field: _centred(slope_rng, popularity[field], 1)[:, 0]
            for field in [SPARSE_FEATURES.index(n) for _, n in DENSE_SPARSE_PAIRS]
        },
        dense_loc=dense_loc,
        dense_scale=dense_scale,
        dense_shape=np.stack(
            [
                shape_rng.normal(0.0, 0.5, NUM_DENSE),  # slope
                shape_rng.choice([-1.0, 1.0], NUM_DENSE)
                * shape_rng.uniform(0.4, 1.2, NUM_DENSE),  # bump height
                shape_rng.uniform(-1.0, 1.0, NUM_DENSE),  # bump centre
                shape_rng.normal(0.0, 0.5, NUM_DENSE),  # effect of missing
            ]
        ),
    )


def _draw_pairs(
    rng: np.random.Generator, popularity: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """The ``pair_*`` fields of ``_World``: embeddings of the interacting fields.

    Each pair's weight makes its term ``<u, v>`` unit-variance: with centred
    vectors, ``E[<u, v>^2] = trace(M_u M_v)`` for the popularity-weighted second
    moments ``M``.
    """
    fields = sorted({SPARSE_FEATURES.index(n) for p in INTERACTION_PAIRS for n in p})
    tables = [_centred(rng, popularity[f], EMBEDDING_DIM) for f in fields]
    ends = np.array(
        [[fields.index(SPARSE_FEATURES.index(n)) for n in p] for p in INTERACTION_PAIRS]
    ).T  # (2, 12)
    moments = [
        _weighted_sum(popularity[f], table[:-1, :, None] * table[:-1, None, :])
        for f, table in zip(fields, tables, strict=True)
    ]
    weights = [(moments[i] * moments[j].T).sum() ** -0.5 for i, j in ends.T]
    return {
        "pair_fields": np.array(fields),
        "pair_ends": ends,
        "pair_offsets": np.cumsum([0] + [len(t) for t in tables[:-1]]),
        "pair_table": np.concatenate(tables),
        "pair_weights": np.array(weights),
    }


def _draw_biases(rng: np.random.Generator, sizes: np.ndarray) -> np.ndarray:
    """Per-value biases, ``(sum(sizes) + 26,)``: every field's values, then missing.

    Rarer values get smaller biases: the tail of an ID-like field is mostly
    noise to any model, and signal no model can learn would only widen the gap.
    """
    field_scale = BIAS_SCALE * rng.lognormal(0.0, 0.3, NUM_SPARSE)
    biases = []
    for size, scale in zip(sizes, field_scale, strict=True):
        decay = (1.0 + np.arange(size) / BIAS_DECAY_RANK) ** -0.5
        biases.append(rng.normal(0.0, scale, size) * decay)
    return np.concatenate(biases + [rng.normal(0.0, field_scale)])


def _centred(rng: np.random.Generator, popularity: np.ndarray, dim: int) -> np.ndarray:
    """Random vectors with popularity-weighted mean 0 and mean square 1.

    ``(len(popularity) + 1, dim)``; the last row, zero, is for a missing value.
    With mean zero, a term built on them adds nothing on average given any one
    feature, so it is pure interaction, invisible to a model without crosses.
    """
    table = rng.normal(0.0, 1.0, (len(popularity), dim))
    table -= _weighted_sum(popularity, table)
    table /= np.sqrt(_weighted_sum(popularity, (table**2).sum(axis=1)))
    return np.vstack([table, np.zeros(dim)])


def _weighted_sum(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``sum_k weights[k] * values[k]`` without BLAS, whose summation order (and
    so the last bits) can change with the thread count, and with it the bytes."""
    return (weights.reshape(-1, *[1] * (values.ndim - 1)) * values).sum(axis=0)


def _popularity(size: float, head: float, exponent: float, offset: float) -> np.ndarray:
    """Exact probabilities of the ranks ``_sample_ranks`` draws, ``(size,)``."""
    edges = _zipf_cdf(np.arange(int(size) + 1, dtype=np.float64), exponent, offset)
    proba = (1.0 - head) * np.diff(edges) / (edges[-1] - edges[0])
    proba[0] += head
    return proba


def _zipf_cdf(x: np.ndarray, exponent: float, offset: float) -> np.ndarray:
    # (1 + x / offset) ** (1 - exponent) is monotone in x and, unlike
    # (x + offset) ** (1 - exponent), stays finite for large exponents.
    return (1.0 + x / offset) ** (1.0 - exponent)


def _sample_ranks(zipf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Popularity ranks from uniforms by the inverse CDF, ``(n, 26)`` int64."""
    size, head, exponent, offset = zipf
    end = _zipf_cdf(size, exponent, offset)
    v = np.clip((u - head) / (1.0 - head), 0.0, 1.0)
    x = offset * ((1.0 + v * (end - 1.0)) ** (1.0 / (1.0 - exponent)) - 1.0)
    ranks = np.minimum(np.floor(x), size - 1).astype(np.int64)
    return np.where(u < head, 0, ranks)


def _hex_words(sizes: np.ndarray) -> np.ndarray:
    """8 lowercase hex digits per value, packed in one uint64, ``(sum(sizes),)``.

    A value's 32-bit key is a bijective mix of its rank and a per-field salt, so
    keys are distinct within a field and look like hashes.
    """
    ranks = np.concatenate([np.arange(s, dtype=np.uint64) for s in sizes])
    salts = np.repeat(np.arange(1, NUM_SPARSE + 1, dtype=np.uint64) * 0x9E3779B9, sizes)
    keys = _mix32((ranks + salts) & np.uint64(0xFFFFFFFF))
    shifts = np.arange(28, -1, -4, dtype=np.uint64)  # most significant digit first
    nibbles = (keys[:, None] >> shifts) & np.uint64(0xF)
    ascii_digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    return np.ascontiguousarray(ascii_digits).view(np.uint64).ravel()


def _mix32(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, a bijection on uint32 (held in uint64)."""
    mask = np.uint64(0xFFFFFFFF)
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x85EBCA6B)) & mask
    x = x ^ (x >> np.uint64(13))
    x = (x * np.uint64(0xC2B2AE35)) & mask
    return x ^ (x >> np.uint64(16))


def _dense_moments(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of ``log1p(max(value, 0))`` per dense feature, ``(13,)`` each."""
    dense, _ = _draw_dense(rng, 200_000)
    t = np.log1p(np.maximum(dense, 0))
    return t.mean(axis=0), t.std(axis=0)


def _draw_dense(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense values ``(n, 13)`` int64 and their missing mask ``(n, 13)``."""
    zero_rate, log_median, log_sd, cap, loading = np.array(DENSE_SPECS).T
    activity = rng.standard_normal((n, 1))
    noise = rng.standard_normal((n, NUM_DENSE))
    z = loading * activity + np.sqrt(1.0 - loading**2) * noise
    dense = np.minimum(np.ceil(np.exp(log_median + log_sd * z)), cap)
    dense[rng.random((n, NUM_DENSE)) < zero_rate] = 0

    i2 = DENSE_FEATURES.index("I2")
    u = rng.random(n)
    minus_one, minus_two = I2_NEGATIVE_RATES
    dense[u < minus_one + minus_two, i2] = -1
    dense[u < minus_two, i2] = -2

    missing = _draw_missing(rng, n, DENSE_FEATURES)
    return dense.astype(np.int64), missing


def _draw_missing(
    rng: np.random.Generator, n: int, names: tuple[str, ...]
) -> np.ndarray:
    """Missing mask ``(n, len(names))``: each group goes missing as a whole."""
    missing = np.zeros((n, len(names)), dtype=bool)
    for group, rate in MISSING_GROUPS:
        columns = [names.index(name) for name in group if name in names]
        if columns:
            missing[:, columns] = (rng.random(n) < rate)[:, None]
    return missing


def _draw_block(world: _World, seed: int, index: int) -> _Block:
    """Block ``index`` of the sample ``seed``: ``BLOCK_ROWS`` rows."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    n = BLOCK_ROWS
    sparse = _sample_ranks(world.zipf, rng.random((n, NUM_SPARSE)))
    sparse[_draw_missing(rng, n, SPARSE_FEATURES)] = -1
    dense, dense_missing = _draw_dense(rng, n)

    logit = _logit(world, sparse, dense, dense_missing)
    proba = 1.0 / (1.0 + np.exp(-np.clip(logit, -LOGIT_CLIP, LOGIT_CLIP)))
    labels = (rng.random(n) < proba).astype(np.uint8)
    return _Block(labels, dense, dense_missing, sparse, proba)


def _logit(
    world: _World, sparse: np.ndarray, dense: np.ndarray, dense_missing: np.ndarray
) -> np.ndarray:
    """The planted logit, ``(n,)``, as the sum of its terms."""
    return INTERCEPT + sum(_logit_terms(world, sparse, dense, dense_missing).values())


def _logit_terms(
    world: _World, sparse: np.ndarray, dense: np.ndarray, dense_missing: np.ndarray
) -> dict[str, np.ndarray]:
    """Each planted term of the logit, ``(n,)`` each, for measuring their sizes."""
    sizes = world.zipf[0].astype(np.int64)
    missing = sparse < 0
    # A missing value takes its field's extra slot after the real values.
    local = np.where(missing, sizes, sparse)  # (n, 26)
    flat = np.where(
        missing, len(world.hex_words) + np.arange(NUM_SPARSE), world.offsets + sparse
    )  # (n, 26)

    vectors = world.pair_table[world.pair_offsets + local[:, world.pair_fields]]
    left, right = world.pair_ends
    pairs = np.einsum(
        "npd,npd,p->n", vectors[:, left], vectors[:, right], world.pair_weights
    )  # (n,)

    t = np.log1p(np.maximum(dense, 0))
    z = np.where(dense_missing, 0.0, (t - world.dense_loc) / world.dense_scale)
    slope, height, centre, if_missing = world.dense_shape
    shape = slope * z + height * (np.exp(-0.5 * ((z - centre) / 0.5) ** 2) - 0.3)
    shape = np.where(dense_missing, if_missing, shape)

    crossed = np.zeros(len(sparse))
    for dense_name, sparse_name in DENSE_SPARSE_PAIRS:
        j, f = DENSE_FEATURES.index(dense_name), SPARSE_FEATURES.index(sparse_name)
        crossed += z[:, j] * world.slopes[f][local[:, f]]

    return {
        "bias": world.bias[flat].sum(axis=1),
        "pairs": PAIR_SCALE * pairs,
        "dense": DENSE_SCALE * shape.sum(axis=1),
        "dense_sparse": DENSE_SPARSE_SCALE * crossed,
    }


class _BlockSource:
    """Rows of one sample, drawn block by block and served by row range."""

    def __init__(self, world: _World, seed: int) -> None:
        self.world = world
        self.seed = seed
        self._index = -1
        self._block: _Block | None = None

    def rows(self, start: int, stop: int) -> Iterator[_Block]:
        """Rows ``start .. stop - 1`` as consecutive pieces of blocks."""
        for index in range(start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS + 1):
            if index != self._index:
                # Ranges come in order, so only the last block is ever reused.
                self._block = _draw_block(self.world, self.seed, index)
                self._index = index
            base = index * BLOCK_ROWS
            lo, hi = max(start, base) - base, min(stop, base + BLOCK_ROWS) - base
            yield _Block(*(getattr(self._block, f)[lo:hi] for f in _BLOCK_FIELDS))


_BLOCK_FIELDS = ("labels", "dense", "dense_missing", "sparse", "proba")


def _word(data: bytes) -> np.uint64:
    """Eight bytes as one uint64, so that viewing it as bytes gives them back."""
    return np.frombuffer(data.ljust(8, b"\0"), dtype=np.uint64)[0]


@lru_cache(maxsize=1)
def _digit_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables for writing integers below 10**8 as 8 ascii bytes.

    Returns the zero-padded 4-digit groups ``(10000,)`` as uint32, their digit
    counts ``(10000,)``, and the keep masks of the last ``w`` of 8 bytes,
    ``(9,)`` as uint64 (``w = 0`` keeps nothing).
    """
    groups = np.array([f"{i:04d}" for i in range(10_000)], dtype="S4")
    lengths = np.array([len(str(i)) for i in range(10_000)], dtype=np.int64)
    masks = np.array([_word(bytes(8 - w) + b"\1" * w) for w in range(9)])
    return groups.view(np.uint32), lengths, masks


def _format_rows(world: _World, block: _Block) -> np.ndarray:
    """The block as DAC TSV lines, ``(bytes,)`` uint8.

    Every field gets a 16-byte slot, its value right-aligned in the first 8
    bytes and its separator first in the other 8, and a keep mask over the
    bytes in use. Filling slots as uint64 words and dropping the unused bytes
    with one boolean index makes all lines at once.
    """
    n = len(block)
    groups, lengths, masks = _digit_tables()
    lines = np.empty((n, 1 + NUM_DENSE + NUM_SPARSE, 2), dtype=np.uint64)
    keep = np.empty_like(lines)

    integers = np.concatenate([block.labels[:, None], block.dense], axis=1)
    present = np.concatenate([np.ones((n, 1), bool), ~block.dense_missing], axis=1)
    high, low = np.divmod(np.abs(integers), 10_000)  # (n, 14) each, high < 10**4
    words = np.stack([groups[high], groups[low]], axis=2)  # (n, 14, 2) uint32
    lines[:, : 1 + NUM_DENSE, 0] = words.view(np.uint64)[..., 0]
    width = np.where(high > 0, 4 + lengths[high], lengths[low])  # (n, 14)
    # Only I2 goes negative, and rarely: put the signs in one by one.
    rows, columns = np.nonzero(integers < 0)
    lines.view(np.uint8).reshape(n, -1, 16)[rows, columns, 7 - width[rows, columns]] = (
        ord("-")
    )
    width[rows, columns] += 1
    keep[:, : 1 + NUM_DENSE, 0] = masks[np.where(present, width, 0)]

    missing = block.sparse < 0  # (n, 26)
    index = np.where(missing, 0, world.offsets + block.sparse)
    lines[:, 1 + NUM_DENSE :, 0] = world.hex_words[index]
    keep[:, 1 + NUM_DENSE :, 0] = np.where(missing, masks[0], masks[8])

    lines[:, :, 1] = _word(b"\t")
    lines[:, -1, 1] = _word(b"\n")
    keep[:, :, 1] = _word(b"\1")
    return lines.view(np.uint8).reshape(n, -1)[keep.view(bool).reshape(n, -1)]


def _format_proba(proba: np.ndarray) -> np.ndarray:
    """Probabilities as ``%.8g`` text lines, ``(bytes,)`` uint8.

    Probabilities lie in [1e-4, 1) (see ``LOGIT_CLIP``), where ``%.8g`` is
    ``0.`` then ``-exponent - 1`` zeros then up to 8 digits without trailing
    zeros.
    """
    n = len(proba)
    exponent = np.floor(np.log10(proba)).astype(np.int64)
    mantissa = np.rint(proba * 10.0 ** (7 - exponent)).astype(np.int64)
    # log10 can land one off near powers of ten; rounding can carry to 10**8.
    exponent += (mantissa >= 10**8).astype(np.int64) - (mantissa < 10**7)
    mantissa = np.rint(proba * 10.0 ** (7 - exponent)).astype(np.int64)
    assert ((exponent >= -4) & (exponent <= -1)).all(), exponent

    digits = (mantissa[:, None] // 10 ** np.arange(7, -1, -1)) % 10  # (n, 8)
    trailing = np.cumprod(digits[:, ::-1] == 0, axis=1).sum(axis=1)
    keep_digits = np.arange(8) < (8 - trailing)[:, None]
    zeros = np.full((n, 3), ord("0"))
    keep_zeros = np.arange(3) < (-exponent - 1)[:, None]
    lines = np.concatenate(
        [
            np.tile(np.array([ord("0"), ord(".")]), (n, 1)),
            zeros,
            digits + ord("0"),
            np.full((n, 1), ord("\n")),
        ],
        axis=1,
    ).astype(np.uint8)
    keep = np.concatenate(
        [np.ones((n, 2), bool), keep_zeros, keep_digits, np.ones((n, 1), bool)], axis=1
    )
    return lines[keep]


def _auc_bin(proba: np.ndarray) -> np.ndarray:
    return np.minimum((proba * AUC_BINS).astype(np.int64), AUC_BINS - 1)


def _binned_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """AUC from per-bin label counts; pairs within a bin count one half."""
    total_pos, total_neg = positives.sum(), negatives.sum()
    if total_pos == 0 or total_neg == 0:
        warnings.warn(
            "oracle AUC is undefined: the drawn labels hold only one class",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan")
    below = np.cumsum(negatives) - negatives
    wins = (positives * below).sum() + 0.5 * (positives * negatives).sum()
    return float(wins / (total_pos * total_neg))
