"""The heavy ``slimctr`` commands: train, compress, evaluate, score, bench,
export, serve and run.

They need torch and the model code; :mod:`slimctr.cli` imports this module
only when one of them runs, so the parser and the light commands start fast.
"""

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from compression.prune_config import PruneConfig
from compression.sensitivity import allocate, sensitivity
from compression.sensitivity_plot import plot_sensitivity
from ctr.batches import Shuffle
from ctr.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint
from ctr.config import Config, config_to_dict, load_config
from ctr.distributed import World, init_from_env, shutdown
from ctr.metrics import evaluate
from ctr.train import Checkpointing
from ctr.wide_deep import count_params
from data.bad_lines import SkipCounter
from data.encoder import MISSING_ID, OOV_ID, EncodedBatch
from data.prefetch import prefetch
from data.reader import iter_rows, read_rows
from data.shards import encoder_sha256, open_cache
from data.split import Split
from data.synth import proba_path_for, read_proba, write_synthetic
from serving.artifact import artifact_bytes, load_artifact, save_artifact
from serving.bench import benchmark, random_rows
from serving.engines import compare_engines, write_outputs
from serving.engines import markdown as engines_markdown
from serving.lean import LeanScorer
from serving.scorer import Scorer
from slimctr import __version__, launch, pipeline
from slimctr.dataset import check_splits, load_dataset
from slimctr.jsonio import dumps, write_json
from slimctr.options import check_out_file, check_out_folder, input_schema, same_file
from slimctr.report import (
    SENSITIVITY_PLOT,
    candidates_table,
    steps_table,
    summary_table,
    write_report,
)

logger = logging.getLogger("slimctr")

# rows parsed at a time when scoring: small enough for bounded memory with a
# chunk read ahead, large enough that per-chunk overhead stays small
SCORE_CHUNK_ROWS = 100_000


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config).with_overrides(epochs=args.epochs, seed=args.seed)


def _prune_config(args: argparse.Namespace) -> PruneConfig:
    return PruneConfig(
        neuron_sparsity=args.neuron_sparsity,
        row_sparsity=args.row_sparsity,
        dim_sparsity=args.dim_sparsity,
        steps=args.steps,
        schedule=args.schedule,
        norm=args.norm,
        row_criterion=args.row_criterion,
        cutoff_share=args.cutoff_share,
        neuron_threshold=args.neuron_threshold,
        row_threshold=args.row_threshold,
        fine_tune_epochs=args.fine_tune_epochs,
        max_auc_drop=args.max_auc_drop,
    )


def _check_training_data(trained: dict, data: Path, dataset) -> None:
    """Warn when ``--data`` or its split is not what the model was trained on:
    then validation rows may have been training rows."""
    recorded = trained.get("resolved") or trained.get("path")
    reasons = []
    if recorded and not same_file(Path(recorded), Path(data)):
        reasons.append(f"the model was trained on {recorded}")
    if trained.get("rows") not in (None, dataset.rows):
        reasons.append(
            f"it was trained on {trained['rows']:,} rows, not {dataset.rows:,}"
        )
    fractions = trained.get("split", {}).get("fractions")
    split = [dataset.split.train, dataset.split.valid, dataset.split.test]
    pairs = zip(fractions or (), split, strict=False)
    if any(abs(a - b) > 1e-9 for a, b in pairs):
        reasons.append(f"its split was {','.join(map(str, fractions))}")
    if reasons:
        logger.warning(
            "--data %s: %s; validation rows may have been training rows, so the "
            "budget search may favour an overfitted model",
            data,
            "; ".join(reasons),
        )


def _student(args, pruned, dataset, config) -> tuple:
    """``(source, summary)`` of the distilled student, or ``()`` without one."""
    if not args.student_shrink:
        return ()
    return pipeline.distil_student(
        pruned, dataset, config, args.student_shrink, progress=_progress(args)
    )


def _print_json(payload: dict) -> None:
    print(dumps(payload))


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet


def cmd_train(args: argparse.Namespace) -> int:
    if args.nproc > 1 and not launch.under_torchrun():
        config = _config(args)
        Shuffle(config.train.batch_size, world=args.nproc)  # checks the split
        if args.resume:  # refused here rather than in every rank
            _check_resume_world(Path(args.out) / CHECKPOINT_FILE, args.nproc)
        launch.relaunch(args.argv, args.nproc, args.threads or 1)
    if launch.under_torchrun():
        launch.stop_with_parent()
    world = init_from_env()
    if not world.is_main:  # one copy of the log lines, from rank 0
        logging.getLogger().setLevel(logging.WARNING)
    # leave the group together only after success: a rank that failed or was
    # interrupted must not wait in a barrier the others never reach
    code = _train(args, world)
    shutdown(world)
    if world.distributed:
        # end here: at interpreter exit gloo's threads sometimes abort the
        # process ("terminate called without an active exception") after the
        # work is done; every file is closed and written by now
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


def _training_cache(folder: Path, config: Config) -> tuple[pipeline.Encoded, dict, str]:
    """The cache's splits (read whole when one shuffle window holds them, else
    memory-mapped and read a window at a time), its data description and its
    encoder's fingerprint."""
    cache = open_cache(folder)
    encoder = cache.encoder
    for name, used in (
        ("min_count", encoder.min_count),
        ("max_vocab", cache.manifest.get("encoder", {}).get("max_vocab")),
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
    encoded = pipeline.Encoded(encoder, *splits)
    return encoded, cache.manifest["data"], cache.manifest["encoder_sha256"]


def _check_resume_world(path: Path, nproc: int) -> None:
    saved = load_checkpoint(path).get("world_size")
    if saved != nproc:
        raise CheckpointError(
            f"{path}: written by {saved} process(es), resumed by {nproc}; resume "
            "with the same --nproc"
        )


def _data_identity(encoded: pipeline.Encoded, fingerprint: str | None) -> str:
    """What a checkpoint must have been trained on to resume here: the
    encoder's fingerprint (computed when not known) and the rows of each split."""
    if fingerprint is None:
        with tempfile.TemporaryDirectory(prefix="slimctr-encoder-") as folder:
            encoded.encoder.save(folder)
            fingerprint = encoder_sha256(folder)
    rows = "/".join(
        str(len(part)) for part in (encoded.train, encoded.valid, encoded.test)
    )
    return f"encoder {fingerprint[:16]}, rows {rows}"


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
        encoded, data_info, fingerprint = _training_cache(args.cache, config)
    else:
        fingerprint = None
        split = args.split or Split()
        dataset = load_dataset(
            args.data, split, args.format, args.on_bad_lines, input_schema(args)
        )
        check_splits(dataset)
        encoded = pipeline.fit_encoder(dataset, config.min_count, config.dense_buckets)
        data_info = dataset.describe()

    checkpoint = Path(args.out) / CHECKPOINT_FILE
    if checkpoint.exists() and not args.resume and world.is_main:
        logger.warning(
            "%s exists; starting afresh (use --resume to continue)", checkpoint
        )
    checkpointing = Checkpointing(
        checkpoint, resume=args.resume, data=_data_identity(encoded, fingerprint)
    )
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
    if not Path(args.data).is_file():
        raise FileNotFoundError(f"--data: no such file: {args.data}")
    config = Config(
        min_count=artifact.encoder.min_count,
        train=load_config(args.config).train,
    ).with_overrides(epochs=args.epochs, seed=args.seed)
    split = args.split or Split(
        *artifact.metadata.get("data", {})
        .get("split", {})
        .get("fractions", (0.8, 0.1, 0.1))
    )
    schema = input_schema(args, artifact.encoder.schema)
    dataset = load_dataset(args.data, split, args.format, args.on_bad_lines, schema)
    _check_training_data(artifact.metadata.get("data", {}), args.data, dataset)
    check_splits(dataset)
    encoded = pipeline.encode(dataset, artifact.encoder)
    result = pipeline.compress(
        artifact.model, encoded, _prune_config(args), config, progress=_progress(args)
    )
    steps = [s.as_dict() for s in result.steps]
    student = _student(args, result, dataset, config)
    chosen, candidates = pipeline.search(
        result,
        dataset,
        args.max_auc_drop,
        args.storage,
        args.objective,
        extra=student[:1],
        max_logloss_rise=args.max_logloss_rise,
    )
    summary = {
        "config": vars(_prune_config(args)),
        "storage": args.storage,
        "student_shrink": args.student_shrink,
        "objective": args.objective,
        "max_auc_drop": args.max_auc_drop,
        "max_logloss_rise": args.max_logloss_rise,
        "steps": steps,
        "cutoff": [t.as_dict() for t in result.cutoff],
        "last_step": result.chosen_step,
        "student": student[1] if student else None,
        "candidates": [c.figures for c in candidates],
        "chosen": chosen.figures,
    }
    metadata = {
        **artifact.metadata,
        "compression": {"chosen": chosen.name, "objective": args.objective},
    }
    model, encoder = pipeline.snapshot(chosen)
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
    schema = input_schema(args, scorer.encoder.schema)
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
        input_schema(args, scorer.encoder.schema),
        args.format,
        args.on_bad_lines,
        chunk_rows=SCORE_CHUNK_ROWS,
        skipped=skipped,
    )
    batches = prefetch(chunks)
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
        schema = input_schema(args, scorer.encoder.schema)
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
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, out)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a run refused before writing anything leaves no trace
        raise


def _run(args: argparse.Namespace, out: Path) -> int:
    config = _config(args)
    synthetic = args.data is None
    if synthetic and (args.dataset or args.schema):
        raise ValueError(
            "--dataset/--schema: describe the file given with --data; without "
            "--data the run writes synthetic Criteo rows"
        )
    schema = input_schema(args)
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
    check_splits(dataset)
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
    allocation = allocate(sensitivity_rows, prune_config.max_auc_drop)
    print("      pruning once at the sensitivity table's per-part levels")
    by_sensitivity = pipeline.allocated(
        trained.model,
        encoded,
        allocation,
        prune_config,
        config,
        progress=_progress(args),
    )
    if args.student_shrink:
        print(f"      distilling a student {args.student_shrink}x as wide")
    student = _student(args, pruned, dataset, config)
    extra = (by_sensitivity[0], *student[:1])
    sources = len(pruned.snapshots) + len(extra)
    print(f"      measuring {sources} models x storages on validation")
    chosen, candidates = pipeline.search(
        pruned,
        dataset,
        prune_config.max_auc_drop,
        args.storage,
        args.objective,
        extra=extra,
        max_logloss_rise=args.max_logloss_rise,
    )
    compression = {"chosen": chosen.name, "objective": args.objective}
    save_artifact(
        out / "compressed",
        *pipeline.snapshot(chosen),
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
        "max_logloss_rise": args.max_logloss_rise,
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
        "cutoff": [t.as_dict() for t in pruned.cutoff],
        "student": student[1] if student else None,
        "sensitivity": [asdict(row) for row in sensitivity_rows],
        "sensitivity_allocation": allocation,
        "allocated": by_sensitivity[1],
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
