"""Logistic regression on one-hot features: the linear yardstick for a file.

Reads a labeled Criteo-layout file, splits it by position like ``slimctr run``,
one-hot encodes the sparse features with the project's encoder (fitted on the
train split), adds the transformed dense features and missing flags, picks the
L2 strength ``C`` on validation AUC and prints the test AUC:

    .venv/bin/python benchmarks/linear_baseline.py \
        --data ../shared/data/criteo/dac_union_12k.txt --threads 2
"""

import argparse
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from data.encoder import EncodedBatch
from slimctr import pipeline
from slimctr.dataset import load_dataset


def features(part: EncodedBatch, offsets: np.ndarray, width: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(part)), part.sparse_ids.shape[1])
    columns = (part.sparse_ids + offsets).ravel()
    one_hot = sp.csr_matrix(
        (np.ones(len(columns)), (rows, columns)), shape=(len(part), width)
    )
    return sp.hstack([one_hot, sp.csr_matrix(part.dense)], format="csr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="labeled file")
    parser.add_argument("--min-count", type=int, default=3, help="one-hot cut-off")
    parser.add_argument("--grid", default="0.01,0.03,0.1,0.3,1", help="values of C")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    encoded = pipeline.fit_encoder(dataset, args.min_count)
    sizes = np.array(encoded.encoder.num_embeddings)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    width = int(sizes.sum())
    train, valid, test = (
        features(part, offsets, width)
        for part in (encoded.train, encoded.valid, encoded.test)
    )
    print(
        f"data {args.data}: {dataset.describe()['split']}, min_count {args.min_count}"
    )

    best = None
    with threadpool_limits(args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in (float(v) for v in args.grid.split(",")):
            model = LogisticRegression(C=c, max_iter=1000)
            model.fit(train, encoded.train.labels)
            auc = roc_auc_score(encoded.valid.labels, model.predict_proba(valid)[:, 1])
            print(f"C={c:g}: valid AUC {auc:.4f}")
            if best is None or auc > best[0]:
                best = (auc, c, model)
    auc, c, model = best
    test_auc = roc_auc_score(encoded.test.labels, model.predict_proba(test)[:, 1])
    print(f"chosen on valid: C={c:g} (valid AUC {auc:.4f}); test AUC {test_auc:.4f}")


if __name__ == "__main__":
    main()
