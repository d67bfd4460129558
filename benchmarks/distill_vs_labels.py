"""Does a small student learn more from a wide & deep teacher than from labels?

Writes planted synthetic rows to a temporary folder, splits them 80/10/10 by
position, fits the encoder on train (min_count 3), trains the teacher
(embedding_dim 16, hidden 400-400-400, TrainConfig defaults), then trains one
student from the same initial weights twice: on labels alone (``ctr.train.fit``)
and distilled from the teacher (``compression.distill``). Prints valid and
test AUC of each next to the oracle's (the true probabilities):

    .venv/bin/python benchmarks/distill_vs_labels.py --rows 300000 --threads 2

``--alpha`` and ``--temperature`` take comma-separated lists; every pair is
distilled and the best on validation AUC is the one compared on test. On a
machine whose cores other jobs keep busy, ``--threads 1`` can run many times
faster than 2, as idle-spinning torch threads lose their core.
"""

import argparse
import copy
import itertools
import logging
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from compression.distill import DistillConfig, distill
from ctr.bootstrap import paired_auc_drop
from ctr.config import ModelConfig, TrainConfig
from ctr.metrics import evaluate
from ctr.train import fit, predict
from ctr.wide_deep import WideDeep, count_params
from data.schema import NUM_DENSE
from data.split import Split
from data.synth import read_proba, write_synthetic
from slimctr import pipeline
from slimctr.dataset import load_dataset

TEACHER = ModelConfig(embedding_dim=16, hidden_units=(400, 400, 400))
MIN_COUNT = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows to draw")
    parser.add_argument("--seed", type=int, default=0, help="sample and train seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--student-dim", type=int, default=4, help="embedding_dim")
    parser.add_argument(
        "--student-hidden", default="64,32", help="hidden units, comma-separated"
    )
    parser.add_argument("--alpha", default="0.5", help="label weights to try")
    parser.add_argument("--temperature", default="1.0", help="temperatures to try")
    args = parser.parse_args()
    if args.rows < 1000:
        parser.error(f"--rows: expected at least 1000, got {args.rows}")
    if args.threads < 1:
        parser.error(f"--threads: expected at least 1, got {args.threads}")
    if args.seed < 0:
        parser.error(f"--seed: expected an integer >= 0, got {args.seed}")
    try:
        hidden = tuple(int(u) for u in args.student_hidden.split(","))
        args.student = ModelConfig(embedding_dim=args.student_dim, hidden_units=hidden)
    except ValueError as err:
        parser.error(f"--student-dim / --student-hidden: {err}")
    try:
        alphas = [float(a) for a in args.alpha.split(",")]
        temperatures = [float(t) for t in args.temperature.split(",")]
        args.settings = [
            DistillConfig(alpha=a, temperature=t)
            for a, t in itertools.product(alphas, temperatures)
        ]
    except ValueError as err:
        parser.error(f"--alpha / --temperature: {err}")
    return args


@dataclass
class Run:
    """One trained model and what the table shows about it."""

    name: str
    model: WideDeep
    valid_auc: float
    best_evaluation: int
    evaluations: int
    seconds: float


def train_all(args, encoded) -> tuple[Run, Run, list[Run]]:
    """Teacher, then one student initialisation trained on labels and distilled."""
    train, valid = encoded.train, encoded.valid
    num_embeddings = encoded.encoder.num_embeddings
    train_config = TrainConfig(seed=args.seed)

    def timed(name, train_fn, model):
        clock = time.perf_counter()
        result = train_fn(model)
        run = Run(
            name,
            result.model,
            result.best_valid.auc,
            result.best_evaluation,
            len(result.history),
            time.perf_counter() - clock,
        )
        print(
            f"{name}: valid AUC {run.valid_auc:.4f} in {run.seconds:.0f} s", flush=True
        )
        return run

    torch.manual_seed(args.seed)
    teacher = WideDeep(TEACHER, num_embeddings, 2 * NUM_DENSE)
    teacher_run = timed(
        "teacher", lambda m: fit(m, train, valid, train_config), teacher
    )
    torch.manual_seed(args.seed)
    initial = WideDeep(args.student, num_embeddings, 2 * NUM_DENSE)
    labels_run = timed(
        "student, labels",
        lambda m: fit(m, train, valid, train_config),
        copy.deepcopy(initial),
    )
    distilled = [
        timed(
            f"student, distilled α={setting.alpha:g} T={setting.temperature:g}",
            lambda m, s=setting: distill(m, teacher, train, valid, s, train_config),
            copy.deepcopy(initial),
        )
        for setting in args.settings
    ]
    return teacher_run, labels_run, distilled


def table_row(run: Run, test, mark: str = "") -> str:
    """One line: shape, size, valid AUC, test AUC and logloss, training time."""
    config = run.model.config
    units = "-".join(str(u) for u in config.hidden_units)
    return (
        f"| {run.name}{mark} | {config.embedding_dim} | {units} "
        f"| {count_params(run.model):,} | {run.valid_auc:.4f} | {test.auc:.4f} "
        f"| {test.logloss:.4f} | {run.best_evaluation} / {run.evaluations} "
        f"| {run.seconds:.0f} |"
    )


def report(args, dataset, proba, encoded, runs) -> None:
    """The markdown table, the paired test comparison and the run's settings."""
    teacher, labels, distilled = runs
    chosen = max(distilled, key=lambda run: run.valid_auc)
    y_test = encoded.test.labels
    scores = {id(run): predict(run.model, encoded.test) for run in [teacher, labels]}
    scores |= {id(run): predict(run.model, encoded.test) for run in distilled}

    print(
        "\n| model | embedding_dim | hidden | params | valid AUC | test AUC "
        "| test logloss | best eval / evals | train s |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for run in [teacher, labels, *distilled]:
        mark = " (chosen on valid)" if run is chosen and len(distilled) > 1 else ""
        print(table_row(run, evaluate(y_test, scores[id(run)]), mark))
    oracle_valid = evaluate(encoded.valid.labels, proba[dataset.valid.lines - 1])
    oracle_test = evaluate(y_test, proba[dataset.test.lines - 1])
    print(
        f"| oracle (true probabilities) | — | — | — | {oracle_valid.auc:.4f} "
        f"| {oracle_test.auc:.4f} | {oracle_test.logloss:.4f} | — | — |"
    )

    drop = paired_auc_drop(y_test, scores[id(labels)], scores[id(chosen)])
    print(
        f"\ntest AUC, distilled ({chosen.name}) minus labels-only: "
        f"{-drop.drop:+.4f}; 95% paired bootstrap over test rows "
        f"({drop.resamples} resamples) {-drop.high:+.4f} to {-drop.low:+.4f}; "
        "training-seed noise not included"
    )
    split = dataset.describe()["split"]
    vocabulary_rows = sum(len(v) for v in encoded.encoder.vocabularies)
    print(f"\ncommand: {shlex.join(['python', *sys.argv])}")
    print(
        f"data: {dataset.rows:,} planted synthetic rows (seed {args.seed}), split "
        f"80/10/10 by position: {split['train']:,} / {split['valid']:,} / "
        f"{split['test']:,}; encoder min_count {MIN_COUNT}, {vocabulary_rows:,} "
        "vocabulary rows"
    )
    print(f"training: TrainConfig defaults, seed {args.seed}; threads {args.threads}")


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="slimctr-distill-") as tmp:
        summary = write_synthetic(Path(tmp) / "synth.txt", args.rows, seed=args.seed)
        dataset = load_dataset(summary.path, Split(0.8, 0.1, 0.1))
        proba = read_proba(summary.proba_path)
    encoded = pipeline.fit_encoder(dataset, MIN_COUNT)
    print(f"data ready in {time.perf_counter() - started:.0f} s", flush=True)

    runs = train_all(args, encoded)
    report(args, dataset, proba, encoded, runs)
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
