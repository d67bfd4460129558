"""The ``slimctr`` command line: one subcommand per stage, and ``run`` for all.

Only this module prints, draws progress bars and configures logging.
"""

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from compression.importance import NORMS
from compression.prune import ROW_CRITERIA, SCHEDULES, PruneConfig
from compression.sensitivity import allocate, sensitivity
from compression.sensitivity_plot import plot_sensitivity
from ctr.checkpoint import CHECKPOINT_FILE
from ctr.config import Config, config_to_dict, load_config
from ctr.distributed import World, init_from_env, shutdown
from ctr.metrics import evaluate
from ctr.train import Checkpointing, TrainingError
from ctr.wide_deep import count_params
from data.bad_lines import ON_BAD_LINES, SkipCounter
from data.criteo import FORMATS, iter_criteo
from data.encoder import MISSING_ID, OOV_ID, EncodedBatch
from data.prepare import CHUNK_ROWS, PrepareConfig, Reader, prepare_cache
from data.reader import DATASETS, iter_rows, preset, read_rows
from data.schema import CRITEO, Schema
from data.schema_file import load_schema
from data.shards import open_cache
from data.split import Split
from data.synth import proba_path_for, read_proba, write_synthetic
from serving.artifact import artifact_bytes, load_artifact, save_artifact
from serving.bench import benchmark, random_rows
from serving.engines import compare_engines, write_outputs
from serving.engines import markdown as engines_markdown
from serving.lean import LeanScorer
from serving.scorer import Scorer
from slimctr import __version__, launch, pipeline
from slimctr.dataset import load_dataset
from slimctr.jsonio import dumps, write_json
from slimctr.report import (
    SENSITIVITY_PLOT,
    candidates_table,
    steps_table,
    summary_table,
    write_report,
)
from slimctr.search import OBJECTIVES, STORAGES

logger = logging.getLogger("slimctr")

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "baseline.toml"
DEFAULT_SYNTH_ROWS = 200_000
MAX_THREADS = 1024
# rows per chunk and parser threads of prepare: two threads parse while the
# main one writes; for chunk rows see data.prepare.CHUNK_ROWS
PREPARE_CHUNK_ROWS = CHUNK_ROWS
PREPARE_WORKERS = 2
# rows parsed at a time when scoring: small enough for bounded memory with a
# chunk read ahead, large enough that per-chunk overhead stays small
SCORE_CHUNK_ROWS = 100_000
# the file that marks each kind of folder slimctr writes
FOLDER_MARKERS = {
    "artifact": "model.json",
    "cache": "manifest.json",
    "run": "report.json",
}


# ---------------------------------------------------------------- arguments


def _positive_int(text: str, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"expected at most {high:,}, got {value:,}")
    return value


def _threads(text: str) -> int:
    return _positive_int(text, high=MAX_THREADS)


def _calls(text: str) -> int:
    return _positive_int(text, high=1_000_000)


def check_out_folder(out: Path, kind: str, inputs: tuple[Path | None, ...]) -> None:
    """Refuse an ``--out`` that is a file, an input, or a folder of another kind."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    for source in inputs:
        if source is not None and source.exists() and _same(out, source):
            raise ValueError(f"--out: {out} is also an input; choose another folder")
    for other, marker in FOLDER_MARKERS.items():
        if other != kind and (out / marker).exists():
            raise ValueError(
                f"--out: {out} holds a slimctr {other} ({marker}); choose an empty "
                f"folder or an existing {kind} folder to overwrite"
            )


def check_out_file(out: Path, option: str, inputs: tuple[Path | None, ...]) -> None:
    """Refuse an output file that is not a regular file, an input, or inside one."""
    if out.exists() and not out.is_file():
        raise ValueError(f"{option}: {out} exists and is not a regular file")
    for source in inputs:
        if source is None or not source.exists():
            continue
        if _same(out, source) or (source.is_dir() and _same(out.parent, source)):
            raise ValueError(
                f"{option}: {out} would overwrite the input {source}; "
                "choose another path"
            )


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _split(text: str) -> Split:
    try:
        return Split.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=_threads,
        default=None,
        help="torch intra-op threads (default: torch's choice, usually all cores)",
    )


def _add_reading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="input layout; auto detects it from the header or first line",
    )
    parser.add_argument(
        "--on-bad-lines",
        choices=ON_BAD_LINES,
        default="error",
        help="error: stop and list every bad line; skip: drop and count them",
    )


def _add_schema(parser: argparse.ArgumentParser, from_model: bool = False) -> None:
    """``--dataset`` and ``--schema``, one or neither: how input rows are laid
    out. With ``from_model``, neither means the artifact's own schema."""
    default = "the model's own, from its encoder.json" if from_model else "criteo"
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--dataset",
        choices=tuple(DATASETS),
        help=f"a preset layout of the input (default: {default})",
    )
    group.add_argument(
        "--schema",
        type=Path,
        help="a TOML file naming the input's label, dense and sparse columns "
        "(see configs/schema_example.toml)",
    )


def _schema(args: argparse.Namespace, trained: Schema | None = None) -> Schema:
    """The schema the input is read with: ``--schema`` or ``--dataset``, else
    the model's (``trained``), else Criteo. A schema given for a trained model
    must name the features it was trained on."""
    if args.schema is not None:
        schema = load_schema(args.schema)
    elif args.dataset is not None:
        schema = preset(args.dataset)
    else:
        return trained or CRITEO
    option = "--schema" if args.schema is not None else "--dataset"
    if trained is not None and (schema.sparse_fields, schema.dense_features) != (
        trained.sparse_fields,
        trained.dense_features,
    ):
        raise ValueError(
            f"{option}: the schema {schema.name} has other features than the "
            f"schema {trained.name} the model was trained on; drop {option} to "
            "read the input with the model's own schema"
        )
    return schema


def _add_training(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="TOML file with [encoder], [model], [train] "
        f"(default: {DEFAULT_CONFIG.name})",
    )
    parser.add_argument("--epochs", type=_positive_int, help="override train.epochs")
    parser.add_argument("--seed", type=int, help="override train.seed")


def _add_pruning(parser: argparse.ArgumentParser) -> None:
    defaults = PruneConfig()
    parser.add_argument(
        "--max-auc-drop",
        type=_non_negative,
        default=defaults.max_auc_drop,
        help="largest validation AUC loss accepted against the uncompressed model "
        f"(default {defaults.max_auc_drop})",
    )
    parser.add_argument(
        "--neuron-sparsity",
        type=_share,
        default=defaults.neuron_sparsity,
        help="final share of hidden neurons removed "
        f"(default {defaults.neuron_sparsity})",
    )
    parser.add_argument(
        "--row-sparsity",
        type=_share,
        default=defaults.row_sparsity,
        help="final share of vocabulary rows folded into oov "
        f"(default {defaults.row_sparsity})",
    )
    parser.add_argument(
        "--steps",
        type=_positive_int,
        default=defaults.steps,
        help=f"prune -> fine-tune rounds (default {defaults.steps})",
    )
    parser.add_argument(
        "--dim-sparsity",
        type=_share,
        default=defaults.dim_sparsity,
        help="final share of embedding dimensions removed "
        f"(default {defaults.dim_sparsity})",
    )
    parser.add_argument(
        "--row-criterion",
        choices=ROW_CRITERIA,
        default=defaults.row_criterion,
        help="rank vocabulary rows by weight norm or by training frequency "
        f"(default {defaults.row_criterion})",
    )
    parser.add_argument(
        "--neuron-threshold",
        type=_non_negative,
        help="λ mode: remove neurons whose importance is at most this, in one step",
    )
    parser.add_argument(
        "--row-threshold",
        type=_non_negative,
        help="λ mode: fold vocabulary rows whose importance is at most this",
    )
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=defaults.schedule,
        help="sparsity schedule: agp (cubic ramp) or one-shot",
    )
    parser.add_argument(
        "--norm",
        choices=NORMS,
        default=defaults.norm,
        help="importance norm for neurons and rows",
    )
    parser.add_argument(
        "--fine-tune-epochs",
        type=_positive_int,
        default=defaults.fine_tune_epochs,
        help="epochs of fine-tuning after each step "
        f"(default {defaults.fine_tune_epochs})",
    )


def _add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="bytes",
        help="what the chosen model minimises within --max-auc-drop: bytes on "
        "disk or batch-1 latency (default bytes)",
    )
    parser.add_argument(
        "--storage",
        choices=("auto", *STORAGES),
        default="auto",
        help="how the compressed artifact stores its weights; auto keeps the "
        "smallest that stays within --max-auc-drop on validation (default auto)",
    )


def _prune_config(args: argparse.Namespace) -> PruneConfig:
    return PruneConfig(
        neuron_sparsity=args.neuron_sparsity,
        row_sparsity=args.row_sparsity,
        dim_sparsity=args.dim_sparsity,
        steps=args.steps,
        schedule=args.schedule,
        norm=args.norm,
        row_criterion=args.row_criterion,
        neuron_threshold=args.neuron_threshold,
        row_threshold=args.row_threshold,
        fine_tune_epochs=args.fine_tune_epochs,
        max_auc_drop=args.max_auc_drop,
    )


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config).with_overrides(epochs=args.epochs, seed=args.seed)


def _print_json(payload: dict) -> None:
    print(dumps(payload))


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet


# ---------------------------------------------------------------- commands


def _check_synth_out(out: Path) -> None:
    if out.suffix == ".gz":
        raise ValueError(
            f"--out: {out} ends in .gz, but synth writes plain TSV; drop .gz and "
            "compress the file afterwards if you need to"
        )
    for path in (out, proba_path_for(out)):
        if path.is_dir():
            raise IsADirectoryError(f"--out: {path} is a folder; name a file")


def cmd_synth(args: argparse.Namespace) -> int:
    _check_synth_out(args.out)
    with tqdm(
        total=args.rows, unit="row", unit_scale=True, desc="synth", disable=args.quiet
    ) as bar:
        summary = write_synthetic(
            args.out, args.rows, seed=args.seed, progress=bar.update
        )
    print(
        f"wrote {summary.rows:,} synthetic rows to {summary.path} and true "
        f"probabilities to {summary.proba_path}\n"
        f"click rate {summary.click_rate:.4f}, oracle AUC {summary.oracle_auc:.4f}"
    )
    return 0


def _prepare_reader(args: argparse.Namespace, schema: Schema) -> Reader:
    """Criteo files go through the byte-level reader with parser threads."""

    def batches(path: Path, skipped: SkipCounter):
        if schema == CRITEO:
            return iter_criteo(
                path,
                args.format,
                args.on_bad_lines,
                chunk_rows=PREPARE_CHUNK_ROWS,
                skipped=skipped,
                workers=args.workers,
            )
        return iter_rows(
            path, schema, args.format, args.on_bad_lines, PREPARE_CHUNK_ROWS, skipped
        )

    return Reader(batches, schema)


def _row_bars(args: argparse.Namespace):
    """A tqdm bar of rows per pass, on stderr when it is a terminal."""

    def bars(desc: str, total: int | None) -> tqdm:
        disable = True if args.quiet else None  # None: off when not a terminal
        return tqdm(
            total=total, desc=desc, unit="row", unit_scale=True, disable=disable
        )

    return bars


def cmd_prepare(args: argparse.Namespace) -> int:
    check_out_folder(args.out, "cache", tuple(args.data))
    schema = _schema(args)
    config = load_config(args.config)
    settings = PrepareConfig(
        split=args.split,
        split_seed=args.split_seed,
        min_count=args.min_count or config.min_count,
        max_vocab=args.max_vocab or config.max_vocab,
        dense_buckets=config.dense_buckets,
        chunk_rows=PREPARE_CHUNK_ROWS,
    )
    started = time.perf_counter()
    manifest = prepare_cache(
        args.data, args.out, _prepare_reader(args, schema), settings, _row_bars(args)
    )
    seconds = time.perf_counter() - started
    data = manifest["data"]
    rows, split = data["rows"], data["split"]
    skipped = SkipCounter(dict(manifest["skipped_lines"]))
    print(
        f"prepared {rows:,} rows from {len(args.data)} file(s) into {args.out} in "
        f"{seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s); split "
        f"{split['method']}: train {split['train']:,}, valid {split['valid']:,}, "
        f"test {split['test']:,}; min_count {settings.min_count}, max_vocab "
        f"{settings.max_vocab or 'none'}, vocabulary rows "
        f"{manifest['encoder']['vocabulary_rows']:,}; {skipped.summary()}"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.nproc > 1 and not launch.under_torchrun():
        return launch.relaunch(args.argv, args.nproc)
    world = init_from_env()
    try:
        return _train(args, world)
    finally:
        shutdown(world)


def _training_cache(folder: Path, config: Config) -> tuple[pipeline.Encoded, dict]:
    """The cache's splits: read whole when one shuffle window holds them, else
    memory-mapped and read a window at a time."""
    cache = open_cache(folder)
    encoder = cache.encoder
    for name, used in (
        ("min_count", encoder.min_count),
        ("dense_buckets", encoder.dense_buckets),
    ):
        if used != getattr(config, name):
            logger.warning(
                "the cache was encoded with %s %s; the config's %s is ignored",
                name,
                used,
                getattr(config, name),
            )
    window = config.train.block_rows * config.train.shuffle_window
    splits = [
        split.read_all() if len(split) <= window else split
        for split in (cache.train, cache.valid, cache.test)
    ]
    return pipeline.Encoded(encoder, *splits), cache.manifest["data"]


def _train(args: argparse.Namespace, world: World) -> int:
    config = _config(args)
    check_out_folder(args.out, "artifact", (args.cache, args.data))
    if args.cache is not None and args.split is not None:
        raise ValueError(
            "--split: a cache is already split; give --split to slimctr prepare"
        )
    if args.cache is not None and (args.dataset or args.schema):
        raise ValueError(
            "--dataset/--schema: a cache was read with its schema already; "
            "use them with --data"
        )
    if args.cache is not None:
        encoded, data_info = _training_cache(args.cache, config)
    else:
        split = args.split or Split()
        dataset = load_dataset(
            args.data, split, args.format, args.on_bad_lines, _schema(args)
        )
        encoded = pipeline.fit_encoder(dataset, config.min_count, config.dense_buckets)
        data_info = dataset.describe()

    checkpoint = Path(args.out) / CHECKPOINT_FILE
    if checkpoint.exists() and not args.resume and world.is_main:
        logger.warning(
            "%s exists; starting afresh (use --resume to continue)", checkpoint
        )
    checkpointing = Checkpointing(checkpoint, resume=args.resume)
    started = time.perf_counter()
    result = pipeline.train_baseline(
        config,
        encoded,
        progress=_progress(args),
        world=world,
        checkpointing=checkpointing,
    )
    elapsed = time.perf_counter() - started
    if not world.is_main:
        return 0
    metadata = {
        "config": config_to_dict(config),
        "data": data_info,
        "best_valid": result.best_valid.as_dict(),
    }
    save_artifact(args.out, result.model, encoded.encoder, metadata)
    summary = {
        "samples_per_s": result.samples_per_s,
        "epochs": result.epochs_run,
        "batch_size": config.train.batch_size,
        "best_valid_auc": result.best_valid.auc,
        "best_valid": result.best_valid.as_dict(),
        "seconds": elapsed,
        "threads": torch.get_num_threads(),
        "processes": world.size,
        "resumed": args.resume,
        "history": result.history,
    }
    write_json(Path(args.out) / "train.json", summary)
    checkpoint.unlink(missing_ok=True)  # the artifact now holds the result
    print(
        f"trained in {elapsed:.1f} s ({result.epochs_run} epochs, "
        f"{result.samples_per_s:,.0f} rows/s over {world.size} process(es)); best "
        f"valid AUC {result.best_valid.auc:.4f}, logloss "
        f"{result.best_valid.logloss:.4f}; artifact in {args.out}"
    )
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    check_out_folder(args.out, "artifact", (args.model, args.data))
    artifact = load_artifact(args.model)
    trained_on = artifact.metadata.get("data", {}).get("path")
    if trained_on and not _same(Path(trained_on), args.data):
        logger.warning(
            "--data %s is not the file this model was trained on (%s): the splits "
            "differ, so validation rows may have been training rows",
            args.data,
            trained_on,
        )
    config = Config(
        min_count=artifact.encoder.min_count,
        train=load_config(args.config).train,
    ).with_overrides(seed=args.seed)
    split = args.split or Split(
        *artifact.metadata.get("data", {})
        .get("split", {})
        .get("fractions", (0.8, 0.1, 0.1))
    )
    schema = _schema(args, artifact.encoder.schema)
    dataset = load_dataset(args.data, split, args.format, args.on_bad_lines, schema)
    encoded = pipeline.encode(dataset, artifact.encoder)
    result = pipeline.compress(
        artifact.model, encoded, _prune_config(args), config, progress=_progress(args)
    )
    steps = [s.as_dict() for s in result.steps]
    chosen, candidates = pipeline.search(
        result, dataset, args.max_auc_drop, args.storage, args.objective
    )
    summary = {
        "config": vars(_prune_config(args)),
        "objective": args.objective,
        "max_auc_drop": args.max_auc_drop,
        "steps": steps,
        "chosen_step": result.chosen_step,
        "candidates": [c.figures for c in candidates],
        "chosen": chosen.figures,
    }
    metadata = {
        **artifact.metadata,
        "compression": {"chosen": chosen.name, "objective": args.objective},
    }
    model, encoder = pipeline.snapshot(result, chosen)
    save_artifact(args.out, model, encoder, metadata, chosen.storage_type)
    write_json(Path(args.out) / "compress.json", summary)
    print(steps_table(steps))
    print(candidates_table(summary["candidates"]))
    print(
        f"chose {chosen.name} ({args.objective}); artifact in "
        f"{args.out} ({artifact_bytes(args.out)['total']:,} bytes)"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    scorer = Scorer.load(args.model)
    skipped = SkipCounter()
    labels, scores = [], []
    schema = _schema(args, scorer.encoder.schema)
    for batch in iter_rows(
        args.data, schema, args.format, args.on_bad_lines, skipped=skipped
    ):
        if batch.labels is None:
            raise ValueError(f"{args.data}: has no label column; evaluate needs labels")
        labels.append(batch.labels)
        scores.append(scorer.predict_raw(batch))
    if not labels:
        raise ValueError(f"{args.data}: no rows to evaluate")
    metrics = evaluate(np.concatenate(labels), np.concatenate(scores))
    payload = {
        "model": str(args.model),
        "data": str(args.data),
        **metrics.as_dict(),
        "skipped_lines": dict(skipped.counts),
    }
    _print_json(payload)
    if skipped.total:
        print(skipped.summary(), file=sys.stderr)
    return 0


def _prefetch(iterator, depth: int = 2):
    """Yield ``iterator``'s items while a background thread reads ahead.

    Parsing the next chunk overlaps encoding and scoring this one; numpy and
    pandas release the GIL for most of both. An error in the reader is raised
    here, in order.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            items.put(err)

    thread = threading.Thread(target=produce, name="slimctr-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _write_scores(
    scorer: LeanScorer, batches, path: Path, quiet: bool
) -> tuple[int, np.ndarray]:
    """Write ``id,probability`` rows; returns rows written and oov counts."""
    counts = np.zeros((2, len(scorer.encoder.sparse_features)))  # present, oov
    rows = 0
    with (
        open(path, "w") as handle,
        tqdm(unit="row", unit_scale=True, desc="score", disable=quiet) as bar,
    ):
        handle.write("id,probability\n")
        for batch in batches:
            encoded = scorer.encoder.transform(batch)
            probability = scorer.predict_encoded(encoded.sparse_ids, encoded.dense)
            if len(batch):
                rows_text = map(
                    "{},{:.9g}".format, batch.ids.tolist(), probability.tolist()
                )
                handle.write("\n".join(rows_text) + "\n")
            counts[0] += (encoded.sparse_ids != MISSING_ID).sum(axis=0)
            counts[1] += (encoded.sparse_ids == OOV_ID).sum(axis=0)
            rows += len(batch)
            bar.update(len(batch))
    return rows, counts


def cmd_score(args: argparse.Namespace) -> int:
    out = Path(args.output)
    check_out_file(out, "--output", (args.input, args.model))
    scorer = LeanScorer.load(args.model)
    skipped = SkipCounter()
    chunks = iter_rows(
        args.input,
        _schema(args, scorer.encoder.schema),
        args.format,
        args.on_bad_lines,
        chunk_rows=SCORE_CHUNK_ROWS,
        skipped=skipped,
    )
    batches = _prefetch(chunks)
    out.parent.mkdir(parents=True, exist_ok=True)
    # write beside the target and rename at the end: a failed run leaves any
    # earlier output intact and no partial file behind
    tmp = out.with_name(out.name + ".partial")
    started = time.perf_counter()
    try:
        rows, counts = _write_scores(scorer, batches, tmp, args.quiet)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)

    seconds = time.perf_counter() - started
    print(
        f"scored {rows:,} rows into {out} in {seconds:.2f} s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s); {skipped.summary()}"
    )
    rates = np.divide(
        counts[1], counts[0], out=np.zeros(len(counts[0])), where=counts[0] > 0
    )
    pairs = zip(scorer.encoder.sparse_features, rates, strict=True)
    print("oov rate per field: " + ", ".join(f"{n} {r:.1%}" for n, r in pairs))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.json is not None:
        check_out_file(args.json, "--json", (args.model, args.data))
        if not args.json.parent.is_dir():
            raise FileNotFoundError(
                f"--json: the folder {args.json.parent} does not exist"
            )
    if args.baseline is not None:
        return _bench_engines(args)
    scorer = Scorer.load(args.model)
    if args.data is not None:
        schema = _schema(args, scorer.encoder.schema)
        batch = read_rows(args.data, schema, args.format, args.on_bad_lines)[0]
        encoded = scorer.encode(batch)
        source = str(args.data)
    else:
        sparse_ids, dense = random_rows(
            scorer.encoder.num_embeddings, scorer.model.num_dense, rows=4096
        )
        encoded = EncodedBatch(sparse_ids, dense, None)
        source = "random in-vocabulary rows"
    result = benchmark(scorer.model, encoded, latency_calls=args.calls)
    payload = {
        "model": str(args.model),
        "input": source,
        "bytes": artifact_bytes(args.model),
        "params": count_params(scorer.model),
        "batch_1": {"p50_us": result.p50_us, "p99_us": result.p99_us},
        "batch_4096": {"rows_per_s": result.rows_per_s},
        "threads": result.threads,
        "calls": result.calls,
    }
    _print_json(payload)
    if args.json:
        write_json(args.json, payload)
    return 0


def _bench_engines(args: argparse.Namespace) -> int:
    """The scorer against torch, TorchScript and ONNX Runtime, in one run."""
    threads = args.threads or torch.get_num_threads()
    command = "slimctr " + " ".join(sys.argv[1:]) if sys.argv[1:] else None
    result = compare_engines(
        args.model,
        args.baseline,
        threads=threads,
        repeats=args.repeats,
        command=command,
    )
    print(engines_markdown(result))
    if args.json is not None:
        paths = write_outputs(result, args.json)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    check_out_file(args.onnx, "--onnx", (args.model,))
    from serving.onnx_export import export_onnx  # needs the [onnx] extra

    artifact = load_artifact(args.model)
    path = export_onnx(artifact.model, args.onnx)
    print(
        f"exported {args.model} to {path} ({path.stat().st_size:,} bytes); "
        "ONNX Runtime outputs checked against the model's"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from serving.http import make_server, run_server

    scorer = Scorer.load(args.model)
    server = make_server(scorer, args.host, args.port, args.max_body_bytes)
    host, port = server.server_address[:2]
    print(f"serving {args.model} on http://{host}:{port} (POST /score, GET /health)")
    run_server(server)
    return 0


def _selection_figures(chosen) -> dict:
    keep = ("name", "step", "storage", "valid_auc", "valid_logloss", "nonzeros")
    return {key: chosen.figures[key] for key in keep}


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_out_folder(out, "run", (args.data,))
    out.mkdir(parents=True, exist_ok=True)
    config = _config(args)
    synthetic = args.data is None
    if synthetic and (args.dataset or args.schema):
        raise ValueError(
            "--dataset/--schema: describe the file given with --data; without "
            "--data the run writes synthetic Criteo rows"
        )
    schema = _schema(args)
    started = time.perf_counter()
    if synthetic:
        data_path = out / "data" / "synthetic.tsv"
        print(
            f"[1/5] no --data given: writing {args.rows:,} synthetic rows "
            f"(seed {config.train.seed}) to {data_path}"
        )
        with tqdm(
            total=args.rows,
            unit="row",
            unit_scale=True,
            desc="synth",
            disable=args.quiet,
        ) as bar:
            write_synthetic(
                data_path, args.rows, seed=config.train.seed, progress=bar.update
            )
    else:
        data_path = Path(args.data)
    print(f"[2/5] reading and encoding {data_path}")
    dataset = load_dataset(
        data_path, args.split, args.format, args.on_bad_lines, schema
    )
    encoded = pipeline.fit_encoder(dataset, config.min_count, config.dense_buckets)

    print(
        f"[3/5] training the baseline ({config.model.hidden_units}, "
        f"embedding_dim {config.model.embedding_dim})"
    )
    trained = pipeline.train_baseline(config, encoded, progress=_progress(args))
    metadata = {"config": config_to_dict(config), "data": dataset.describe()}
    save_artifact(
        out / "baseline",
        trained.model,
        encoded.encoder,
        {**metadata, "best_valid": trained.best_valid.as_dict()},
    )
    print(f"      best valid AUC {trained.best_valid.auc:.4f}")

    print("      sensitivity: each layer and field pruned alone, no fine-tuning")
    sensitivity_rows = sensitivity(
        trained.model, encoded.valid, names=encoded.encoder.sparse_features
    )
    plot_sensitivity(sensitivity_rows, out / SENSITIVITY_PLOT)

    print("[4/5] compressing: prune -> fine-tune, validation AUC after each step")
    prune_config = _prune_config(args)
    pruned = pipeline.compress(
        trained.model, encoded, prune_config, config, progress=_progress(args)
    )
    steps = [s.as_dict() for s in pruned.steps]
    print(f"      measuring {len(pruned.snapshots)} steps x storages on validation")
    chosen, candidates = pipeline.search(
        pruned, dataset, prune_config.max_auc_drop, args.storage, args.objective
    )
    compression = {"chosen": chosen.name, "objective": args.objective}
    save_artifact(
        out / "compressed",
        *pipeline.snapshot(pruned, chosen),
        {**metadata, "compression": compression},
        chosen.storage_type,
    )

    print("[5/5] scoring the test split and benchmarking both artifacts")
    baseline = Scorer.load(out / "baseline")
    compressed = Scorer.load(out / "compressed")
    test_base = baseline.encode(dataset.test)
    test_comp = compressed.encode(dataset.test)
    chosen_summary = {
        **pipeline.summarise(compressed, out / "compressed", test_comp),
        **_selection_figures(chosen),
    }
    report = {
        "slimctr_version": __version__,
        "data": {**dataset.describe(), "synthetic": synthetic},
        "threads": torch.get_num_threads(),
        "seed": config.train.seed,
        "config": config_to_dict(config),
        "max_auc_drop": prune_config.max_auc_drop,
        "prune_config": vars(prune_config),
        "baseline": {
            **pipeline.summarise(baseline, out / "baseline", test_base),
            "valid_auc": trained.best_valid.auc,
            "train_samples_per_s": trained.samples_per_s,
            "epochs": trained.epochs_run,
        },
        "compressed": chosen_summary,
        "chosen": chosen_summary,
        "objective": args.objective,
        "candidates": [c.figures for c in candidates],
        "steps": steps,
        "sensitivity": [asdict(row) for row in sensitivity_rows],
        "sensitivity_allocation": allocate(sensitivity_rows, prune_config.max_auc_drop),
        "test_auc_drop": pipeline.compare(
            baseline, compressed, dataset, seed=config.train.seed
        ),
        "bench": pipeline.bench_pair(
            baseline, compressed, dataset, repeats=args.bench_repeats
        ),
    }
    if synthetic:
        report["oracle_test_auc"] = pipeline.oracle_auc(
            read_proba(proba_path_for(data_path)), dataset
        )
    report["seconds"] = time.perf_counter() - started
    json_path, md_path = write_report(report, out)

    print()
    print(summary_table(report))
    drop = report["test_auc_drop"]
    ratio = report["baseline"]["bytes"] / report["compressed"]["bytes"]
    print(
        f"\n{ratio:.1f}x fewer bytes; test AUC drop {drop['drop']:+.4f} "
        f"(95% paired bootstrap [{drop['low']:+.4f}, {drop['high']:+.4f}])"
    )
    if synthetic:
        print(f"oracle test AUC {report['oracle_test_auc']:.4f} (synthetic data)")
    print(f"report: {json_path} and {md_path} ({report['seconds']:.0f} s)")
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimctr",
        description="Train a wide & deep CTR model on Criteo, Avazu or any "
        "click log a schema TOML describes, compress it and measure what "
        "compression costs in AUC and buys in size and speed.",
    )
    parser.add_argument("--version", action="version", version=f"slimctr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "synth",
        help="write synthetic Criteo-layout rows",
        description="Write seeded synthetic rows in the DAC TSV "
        "layout and their true click probabilities (FILE.proba).",
    )
    p.add_argument("--rows", type=_positive_int, required=True, help="rows to write")
    p.add_argument("--out", type=Path, required=True, help="data file to write")
    p.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    p.set_defaults(func=cmd_synth)

    p = commands.add_parser(
        "prepare",
        help="validate, split and encode files into a cache",
        description="Stream labeled files (plain or .gz, read in order as one "
        "stream) in bounded memory: parse them once, split the rows, fit the "
        "encoder on the train split and write an encoded, sharded cache folder.",
    )
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        metavar="FILE",
        help="labeled input files, read in this order",
    )
    p.add_argument("--out", type=Path, required=True, help="cache folder to write")
    p.add_argument(
        "--split",
        type=_split,
        default=Split(),
        help="train,valid,test fractions (default 0.8,0.1,0.1), by position over "
        "the rows of all files in order unless --split-seed is given",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        metavar="SEED",
        help="split at random instead: each row drawn into a split from this "
        "seed, reproducibly (e.g. --split 0.7,0.2,0.1 --split-seed 2018)",
    )
    p.add_argument(
        "--min-count",
        type=_positive_int,
        help="vocabulary cut-off (default: the config's)",
    )
    p.add_argument(
        "--max-vocab",
        type=_positive_int,
        metavar="K",
        help="keep the K most frequent keys per field, the rest oov "
        "(default: the config's max_vocab, else no cap)",
    )
    p.add_argument(
        "--workers",
        type=_threads,
        default=PREPARE_WORKERS,
        help=f"Criteo parser threads (default {PREPARE_WORKERS})",
    )
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="TOML config")
    _add_reading(p)
    _add_schema(p)
    p.set_defaults(func=cmd_prepare)

    p = commands.add_parser(
        "train",
        help="train the wide & deep baseline",
        description="Train on a prepared cache or a labeled file; "
        "write an artifact folder and train.json.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--cache", type=Path, help="folder written by slimctr prepare")
    source.add_argument("--data", type=Path, help="labeled input file")
    p.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    p.add_argument(
        "--split",
        type=_split,
        default=None,
        help="with --data: train,valid,test fractions (default 0.8,0.1,0.1)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.pt, left by a run that was stopped",
    )
    p.add_argument(
        "--nproc",
        type=_positive_int,
        default=1,
        help="training processes on this machine, started with torchrun "
        "(default 1); each trains on its own rows",
    )
    _add_training(p)
    _add_reading(p)
    _add_schema(p)
    _add_threads(p)
    p.set_defaults(func=cmd_train)

    p = commands.add_parser(
        "compress",
        help="prune and fine-tune a trained model",
        description="Gradual structured pruning of a trained "
        "artifact with fine-tuning, validation AUC after each step.",
    )
    p.add_argument("--model", type=Path, required=True, help="trained artifact folder")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="the labeled file the model was trained on",
    )
    p.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    p.add_argument(
        "--split",
        type=_split,
        default=None,
        help="train,valid,test fractions (default: those used in training)",
    )
    _add_training(p)
    _add_pruning(p)
    _add_storage(p)
    _add_reading(p)
    _add_schema(p, from_model=True)
    _add_threads(p)
    p.set_defaults(func=cmd_compress)

    p = commands.add_parser(
        "evaluate",
        help="AUC, logloss, calibration, NE on a file",
        description="Score a labeled file with an artifact and "
        "report AUC, logloss, calibration and normalized entropy.",
    )
    p.add_argument("--model", type=Path, required=True, help="artifact folder")
    p.add_argument("--data", type=Path, required=True, help="labeled input file")
    _add_reading(p)
    _add_schema(p, from_model=True)
    _add_threads(p)
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser(
        "score",
        help="click probabilities for a file",
        description="Write a CSV of id,probability, one row per "
        "scored input row, in input order.",
    )
    p.add_argument("--model", type=Path, required=True, help="artifact folder")
    p.add_argument("--input", type=Path, required=True, help="rows to score")
    p.add_argument("--output", type=Path, required=True, help="CSV file to write")
    _add_reading(p)
    _add_schema(p, from_model=True)
    _add_threads(p)
    p.set_defaults(func=cmd_score)

    p = commands.add_parser(
        "bench",
        help="size, latency and throughput of an artifact",
        description="Bytes by file, params, batch-1 latency "
        "p50/p99 and batch-4096 rows/s, after warm-up.",
    )
    p.add_argument("--model", type=Path, required=True, help="artifact folder")
    p.add_argument("--data", type=Path, help="rows to time (default: random ids)")
    p.add_argument(
        "--calls",
        type=_calls,
        default=2000,
        help="timed batch-1 calls (default 2000)",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        help="compare engines: the lean scorer on --model against the baseline "
        "in torch eager and TorchScript, and ONNX Runtime on both (if installed)",
    )
    p.add_argument(
        "--repeats",
        type=_positive_int,
        default=5,
        help="with --baseline: alternating rounds per engine (default 5)",
    )
    p.add_argument(
        "--json",
        type=Path,
        help="also write the figures to this file (with --baseline: plus .md "
        "and .png beside it)",
    )
    _add_reading(p)
    _add_schema(p, from_model=True)
    _add_threads(p)
    p.set_defaults(func=cmd_bench)

    p = commands.add_parser(
        "export",
        help="export an artifact to ONNX",
        description="Write the model as ONNX (probabilities out) and check ONNX "
        "Runtime's outputs against it; needs pip install -e '.[onnx]'.",
    )
    p.add_argument("--model", type=Path, required=True, help="artifact folder")
    p.add_argument("--onnx", type=Path, required=True, help="ONNX file to write")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser(
        "serve",
        help="score rows over HTTP",
        description='An HTTP JSON endpoint: POST /score with {"rows": [...]} '
        'or {"lines": [...]}, GET /health. Listens on loopback by default.',
    )
    p.add_argument("--model", type=Path, required=True, help="artifact folder")
    p.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=1_000_000,
        help="largest request body accepted (default 1,000,000)",
    )
    _add_threads(p)
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser(
        "run",
        help="prepare -> train -> compress -> bench",
        description="The whole pipeline: without --data it writes "
        "and uses synthetic rows.",
    )
    p.add_argument("--data", type=Path, help="labeled input file (default: synthetic)")
    p.add_argument("--out", type=Path, required=True, help="folder for the run")
    p.add_argument(
        "--rows",
        type=_positive_int,
        default=DEFAULT_SYNTH_ROWS,
        help=f"synthetic rows without --data (default {DEFAULT_SYNTH_ROWS:,})",
    )
    p.add_argument(
        "--split",
        type=_split,
        default=Split(),
        help="train,valid,test fractions in file order (default 0.8,0.1,0.1)",
    )
    _add_training(p)
    _add_pruning(p)
    _add_storage(p)
    _add_reading(p)
    _add_schema(p)
    _add_threads(p)
    p.add_argument(
        "--bench-repeats",
        type=_positive_int,
        default=5,
        help="alternating timing rounds per model; figures are medians (default 5)",
    )
    p.set_defaults(func=cmd_run)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.verbose:
        level = logging.DEBUG
    else:
        level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    warnings.showwarning = _show_warning
    # SIGTERM unwinds like Ctrl-C, so partial output files are removed
    signal.signal(signal.SIGTERM, _terminate)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.verbose:
            raise
        print(f"slimctr {args.command}: error: {_describe(err)}", file=sys.stderr)
        return 2


def _describe(err: Exception) -> str:
    """One readable line (or the bad-line list) for an error, without a traceback."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    if isinstance(err, MemoryError):
        return f"out of memory ({err}); use smaller settings or fewer rows"
    if isinstance(err, OSError | ValueError | TrainingError | ImportError):
        return str(err)
    return f"{type(err).__name__}: {err} (run with -v for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
