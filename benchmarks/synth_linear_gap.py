"""How far a linear model falls short of the oracle on the synthetic data set.

Writes a synthetic file to a temporary folder, splits it 80/10/10 by position,
fits a logistic regression on one-hot sparse values (seen at least twice in
train) plus log-transformed dense features and missing flags, picks the L2
strength on the validation part, and prints the test AUC of that model next to
the oracle's (the true probabilities):

    python benchmarks/synth_linear_gap.py --rows 1000000 --threads 2

With ``--crosses`` it also fits the same model with the planted interactions
added as features (one-hot pairs of values, dense x one-hot products), to show
how much of the gap a model that sees interactions can win back.
"""

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from data.schema import DENSE_FEATURES, LABEL, SPARSE_FEATURES
from data.synth import (
    DENSE_SPARSE_PAIRS,
    INTERACTION_PAIRS,
    read_proba,
    write_synthetic,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to draw")
    parser.add_argument("--seed", type=int, default=0, help="sample seed")
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads")
    parser.add_argument(
        "--C",
        default="0.01,0.03,0.1",
        help="inverse L2 strengths to try, comma-separated; the best on valid wins",
    )
    parser.add_argument("--min-count", type=int, default=2, help="one-hot cutoff")
    parser.add_argument("--max-iter", type=int, default=200, help="lbfgs iterations")
    parser.add_argument(
        "--crosses",
        action="store_true",
        help="also fit with the planted interactions as features",
    )
    args = parser.parse_args()
    if args.rows < 100:
        parser.error(f"--rows: expected at least 100, got {args.rows}")
    if args.threads < 1:
        parser.error(f"--threads: expected at least 1, got {args.threads}")
    if args.min_count < 1:
        parser.error(f"--min-count: expected at least 1, got {args.min_count}")
    try:
        args.C = [float(c) for c in args.C.split(",")]
    except ValueError as err:
        parser.error(f"--C: expected comma-separated numbers, got {args.C!r} ({err})")
    return args


def read_rows(path: Path) -> pd.DataFrame:
    """The TSV as a frame: label int, dense float (nan if missing), sparse str."""
    dtypes = {LABEL: np.int8} | dict.fromkeys(DENSE_FEATURES, np.float64)
    return pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=[LABEL, *DENSE_FEATURES, *SPARSE_FEATURES],
        dtype=dtypes | dict.fromkeys(SPARSE_FEATURES, str),
        keep_default_na=False,
        na_values={name: [""] for name in DENSE_FEATURES},
    )


def one_hot(
    columns: list[pd.Series], train: slice, min_count: int, weights=None
) -> sp.csr_matrix:
    """One column per value seen ``min_count`` times in train, per input column.

    Missing is a value like any other; each input column has one more output
    column for the values too rare in train (or unseen there). ``weights``,
    ``(n, len(columns))``, replaces the ones (for dense x sparse products).
    """
    indices, offset = [], 0
    for column in columns:
        codes, uniques = pd.factorize(column)  # "" (missing) is a value
        counts = np.bincount(codes[train], minlength=len(uniques))
        kept = counts >= min_count
        index = np.where(kept, np.cumsum(kept), 0)  # 0: the rare column
        indices.append(offset + index[codes])
        offset += int(kept.sum()) + 1
    stacked = np.stack(indices, axis=1)  # (n, k)
    n, k = stacked.shape
    values = np.ones(n * k) if weights is None else np.asarray(weights).ravel()
    return sp.csr_matrix(
        (values, stacked.ravel(), np.arange(0, n * k + 1, k)), shape=(n, offset)
    )


def planted_crosses(
    frame: pd.DataFrame, dense: np.ndarray, train: slice, min_count: int
) -> sp.csr_matrix:
    """The planted interactions as features: value pairs and dense x value."""
    pairs = [frame[a] + "_" + frame[b] for a, b in INTERACTION_PAIRS]
    slopes = [frame[s] for _, s in DENSE_SPARSE_PAIRS]
    scales = np.stack(
        [dense[:, DENSE_FEATURES.index(d)] for d, _ in DENSE_SPARSE_PAIRS], axis=1
    )
    # A slope needs more rows than a bias to be estimated: a higher cutoff.
    return sp.hstack(
        [
            one_hot(pairs, train, min_count),
            one_hot(slopes, train, 10 * min_count, weights=scales),
        ],
        format="csr",
    )


def dense_features(frame: pd.DataFrame, train: slice) -> np.ndarray:
    """Signed log1p of each dense feature, standardised on train, and flags."""
    values = frame[list(DENSE_FEATURES)].to_numpy()
    missing = np.isnan(values)
    logged = np.where(missing, 0.0, np.sign(values) * np.log1p(np.abs(values)))
    mean, std = logged[train].mean(axis=0), logged[train].std(axis=0) + 1e-12
    standard = np.where(missing, 0.0, (logged - mean) / std)
    return np.hstack([standard, missing.astype(np.float64)])


def fit_linear(
    features: sp.csr_matrix, labels: np.ndarray, parts: tuple[slice, ...], args
) -> tuple[float, float]:
    """Best C on valid, and that model's test AUC."""
    train, valid, test = parts
    best = (-np.inf, None, None)
    for c in args.C:
        model = LogisticRegression(C=c, max_iter=args.max_iter, tol=1e-6)
        with warnings.catch_warnings():
            # A capped lbfgs run is part of the recipe; its AUC is what counts.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(features[train], labels[train])
        valid_auc = roc_auc_score(
            labels[valid], model.decision_function(features[valid])
        )
        print(f"  C={c:<6g} valid AUC {valid_auc:.4f}", flush=True)
        if valid_auc > best[0]:
            best = (valid_auc, c, model)
    _, c, model = best
    return c, roc_auc_score(labels[test], model.decision_function(features[test]))


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    with threadpool_limits(limits=args.threads), tempfile.TemporaryDirectory() as tmp:
        summary = write_synthetic(Path(tmp) / "synth.txt", args.rows, seed=args.seed)
        generated = time.perf_counter() - start
        print(f"generated {args.rows:,} rows in {generated:.1f} s", flush=True)
        frame = read_rows(summary.path)
        proba = read_proba(summary.proba_path)

        train_end, valid_end = int(0.8 * args.rows), int(0.9 * args.rows)
        parts = slice(0, train_end), slice(train_end, valid_end), slice(valid_end, None)
        dense = dense_features(frame, parts[0])
        sparse_columns = [frame[name] for name in SPARSE_FEATURES]
        features = sp.hstack(
            [one_hot(sparse_columns, parts[0], args.min_count), sp.csr_matrix(dense)],
            format="csr",
        )
        labels = frame[LABEL].to_numpy()
        print(f"features: {features.shape[1]:,} columns", flush=True)
        c, linear_auc = fit_linear(features, labels, parts, args)
        if args.crosses:
            crossed = sp.hstack(
                [features, planted_crosses(frame, dense, parts[0], args.min_count)],
                format="csr",
            )
            print(f"with crosses: {crossed.shape[1]:,} columns", flush=True)
            crossed_c, crossed_auc = fit_linear(crossed, labels, parts, args)

    test = parts[2]
    oracle_auc = roc_auc_score(labels[test], proba[test])
    print(f"rows         {args.rows:,} (seed {args.seed}), split 80/10/10")
    print(f"click rate   {labels.mean():.4f}")
    print(f"oracle AUC   {oracle_auc:.4f} (test, true probabilities)")
    print(f"linear AUC   {linear_auc:.4f} (test, C={c:g})")
    print(f"gap          {oracle_auc - linear_auc:.4f}")
    if args.crosses:
        print(f"+ crosses    {crossed_auc:.4f} (test, C={crossed_c:g})")
        print(f"gap left     {oracle_auc - crossed_auc:.4f}")
    print(f"elapsed      {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
