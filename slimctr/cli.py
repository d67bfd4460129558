"""The ``slimctr`` command line: one subcommand per stage, and ``run`` for all.

Only this module and :mod:`slimctr.commands` print, draw progress bars and
configure logging. The parser and the light commands (synth, prepare) live
here and load no torch; the rest run from :mod:`slimctr.commands`, imported
when one of them is chosen.
"""

import argparse
import logging
import signal
import sys
import time
import warnings
from pathlib import Path

from tqdm import tqdm

from compression.prune_config import NORMS, ROW_CRITERIA, SCHEDULES, PruneConfig
from ctr.config import load_config
from ctr.training_error import TrainingError
from data.bad_lines import ON_BAD_LINES, SkipCounter
from data.criteo import FORMATS, iter_criteo
from data.prepare import CHUNK_ROWS, PrepareConfig, Reader, prepare_cache
from data.reader import DATASETS, iter_rows
from data.schema import CRITEO, Schema
from data.split import Split
from data.synth import proba_path_for, write_synthetic
from slimctr import __version__
from slimctr.options import check_out_folder, input_schema
from slimctr.search_space import OBJECTIVES, STORAGES

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "baseline.toml"
DEFAULT_SYNTH_ROWS = 200_000
MAX_THREADS = 1024
# rows per chunk and parser threads of prepare: two threads parse while the
# main one writes; for chunk rows see data.prepare.CHUNK_ROWS
PREPARE_CHUNK_ROWS = CHUNK_ROWS
PREPARE_WORKERS = 2


# ---------------------------------------------------------------- arguments


def _positive_int(text: str, high: int | None = None, low: int = 1) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from err
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"expected at most {high:,}, got {value:,}")
    return value


def _seed(text: str) -> int:
    return _positive_int(text, high=2**63 - 1, low=0)


def _threads(text: str) -> int:
    return _positive_int(text, high=MAX_THREADS)


def _calls(text: str) -> int:
    return _positive_int(text, high=1_000_000)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {value}")
    return value


def _steps(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(
            f"expected at most 100 steps, got {value}; each step fine-tunes the "
            "model once"
        )
    return value


def _unit_share(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {value}")
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
        help="error (the default): stop and list every bad line; skip: drop "
        "and count them",
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
        type=_unit_share,
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
        type=_steps,
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
        help="rank vocabulary rows by impact (training frequency x weight "
        "norm), by weight norm or by training frequency "
        f"(default {defaults.row_criterion})",
    )
    parser.add_argument(
        "--cutoff-share",
        type=_unit_share,
        default=defaults.cutoff_share,
        help="share of --max-auc-drop that the frequency cut-off may spend: "
        "values seen too rarely in training are folded into oov before pruning, "
        "at the highest count that stays within it on validation; 0 skips it "
        f"(default {defaults.cutoff_share})",
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


def _add_student(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-logloss-rise",
        type=_non_negative,
        default=0.01,
        help="largest validation logloss rise over the uncompressed model that a "
        "chosen candidate may show, so that a model ranking well but with "
        "probabilities off is not chosen (default 0.01)",
    )
    parser.add_argument(
        "--student-shrink",
        type=_share,
        default=0.5,
        help="also distil a student this share as wide as the last accepted "
        "pruning step (embedding width and hidden layers) and let the search "
        "consider it; 0 skips the student (default 0.5)",
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
    schema = input_schema(args)
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


def _deferred(name: str):
    """The command ``name`` of :mod:`slimctr.commands`, imported when it runs."""

    def run(args: argparse.Namespace) -> int:
        from slimctr import commands

        return getattr(commands, name)(args)

    return run


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
        type=_seed,
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
    p.set_defaults(func=_deferred("cmd_train"))

    p = commands.add_parser(
        "compress",
        help="compress a trained model within an AUC budget",
        description="Compress a trained artifact: a frequency cut-off of its "
        "vocabulary, then gradual structured pruning with fine-tuning "
        "(validation AUC after each step, a step below the budget rolled "
        "back), and a distilled student; every model in every storage is "
        "measured and the smallest (or fastest) within the budget on "
        "validation is written, with compress.json beside it.",
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
    _add_student(p)
    _add_reading(p)
    _add_schema(p, from_model=True)
    _add_threads(p)
    p.set_defaults(func=_deferred("cmd_compress"))

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
    p.set_defaults(func=_deferred("cmd_evaluate"))

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
    p.set_defaults(func=_deferred("cmd_score"))

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
    p.set_defaults(func=_deferred("cmd_bench"))

    p = commands.add_parser(
        "export",
        help="export an artifact to ONNX",
        description="Write the model as ONNX (probabilities out) and check ONNX "
        "Runtime's outputs against it; needs pip install -e '.[onnx]'.",
    )
    p.add_argument("--model", type=Path, required=True, help="artifact folder")
    p.add_argument("--onnx", type=Path, required=True, help="ONNX file to write")
    p.set_defaults(func=_deferred("cmd_export"))

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
    p.set_defaults(func=_deferred("cmd_serve"))

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
    _add_student(p)
    _add_reading(p)
    _add_schema(p)
    _add_threads(p)
    p.add_argument(
        "--bench-repeats",
        type=_positive_int,
        default=5,
        help="alternating timing rounds per model; figures are medians (default 5)",
    )
    p.set_defaults(func=_deferred("cmd_run"))
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
        import torch  # only the commands of slimctr.commands take --threads

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
    if isinstance(err, OSError | ValueError | ImportError | TrainingError):
        return str(err)
    return f"{type(err).__name__}: {err} (run with -v for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
