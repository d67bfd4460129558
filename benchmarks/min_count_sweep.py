"""Choose the encoder's ``min_count`` on validation AUC (test is never read).

Trains the baseline config once per candidate on the train split of a labeled
file and prints the validation AUC of each, so the choice in
``configs/baseline.toml`` can be checked or redone on other data.

    .venv/bin/python benchmarks/min_count_sweep.py \
        --data ../shared/data/criteo/dac_union_12k.txt --threads 2
"""

import argparse
import logging
from pathlib import Path

import torch

from ctr.config import load_config
from slimctr import pipeline
from slimctr.dataset import load_dataset

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="labeled file")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/baseline.toml")
    parser.add_argument("--candidates", default="1,2,3,5,10", help="comma-separated")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    dataset = load_dataset(args.data)
    base = load_config(args.config)
    print(f"data {args.data}: split {dataset.describe()['split']}")
    print(f"threads {args.threads}; config {args.config.name}; selection on valid only")
    print("| min_count | seed | vocabulary rows | valid AUC | valid logloss |")
    print("|---:|---:|---:|---:|---:|")
    for min_count in (int(c) for c in args.candidates.split(",")):
        encoded = pipeline.fit_encoder(dataset, min_count)
        for seed in (int(s) for s in args.seeds.split(",")):
            config = base.with_overrides(seed=seed)
            result = pipeline.train_baseline(config, encoded)
            rows = sum(len(v) for v in encoded.encoder.vocabularies)
            print(
                f"| {min_count} | {seed} | {rows:,} | {result.best_valid.auc:.4f} "
                f"| {result.best_valid.logloss:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
