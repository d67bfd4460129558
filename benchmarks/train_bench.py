"""Training throughput from a prepared cache, and the same model in DeepCTR-Torch.

Not a test. Makes a planted file with ``slimctr synth`` (kept between runs),
encodes it with ``slimctr prepare`` and trains one epoch with
``slimctr train --cache ... --config configs/train_bench.toml``; the figure is
``samples_per_s`` from ``train.json`` (training rows per wall second, reading
the cache included, validation excluded).

When DeepCTR-Torch is installed (``pip install -e '.[bench]'``), the same run
then trains its ``WDL`` on the same encoded rows, with the same fields,
embedding width, MLP, batch size, optimiser (Adam, lr 1e-3) and no
regularisation, and times ``fit`` over the same number of rows: the ratio of
the two rates is printed beside them. DeepCTR-Torch asks PyPI for a newer
version when imported; this script blocks that request, so the run makes no
network traffic.

    python benchmarks/train_bench.py --rows 2000000 --threads 2
"""

import argparse
import json
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "train_bench.toml"


def _slimctr(*args: str) -> None:
    command = [str(Path(sys.executable).parent / "slimctr"), *args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def _ours(data: Path, out: Path, threads: int) -> dict:
    cache = out / "cache"
    if not (cache / "manifest.json").exists():
        _slimctr(
            "prepare", "--data", str(data), "--out", str(cache), "--config", str(CONFIG)
        )
    model = out / "model"
    _slimctr(
        "train",
        "--cache",
        str(cache),
        "--config",
        str(CONFIG),
        "--out",
        str(model),
        "--threads",
        str(threads),
        "--epochs",
        "1",
    )
    return json.loads((model / "train.json").read_text())


def _import_deepctr():
    """DeepCTR-Torch's modules, with its import-time version check kept offline."""
    if "requests" not in sys.modules:
        offline = types.ModuleType("requests")

        def refuse(*args, **kwargs):
            raise ConnectionError("network disabled in this benchmark")

        offline.get = refuse
        sys.modules["requests"] = offline
    try:
        from deepctr_torch.inputs import DenseFeat, SparseFeat
        from deepctr_torch.models import WDL
    except ImportError:
        return None
    return DenseFeat, SparseFeat, WDL


def _deepctr(cache: Path, rows: int, threads: int) -> dict | None:
    imported = _import_deepctr()
    if imported is None:
        return None
    DenseFeat, SparseFeat, WDL = imported
    import tomllib

    import torch

    from data.shards import open_cache

    torch.set_num_threads(threads)
    settings = tomllib.loads(CONFIG.read_text())
    opened = open_cache(cache)
    train = opened.split("train")
    part = train.read(0, min(rows, len(train)))
    sizes = opened.encoder.num_embeddings
    dim = settings["model"]["embedding_dim"]
    columns = [
        SparseFeat(f"s{i}", vocabulary_size=size, embedding_dim=dim)
        for i, size in enumerate(sizes)
    ] + [DenseFeat(f"d{j}", 1) for j in range(part.dense.shape[1])]
    inputs = {f"s{i}": part.sparse_ids[:, i] for i in range(len(sizes))}
    inputs.update({f"d{j}": part.dense[:, j] for j in range(part.dense.shape[1])})
    model = WDL(
        columns,
        columns,
        dnn_hidden_units=tuple(settings["model"]["hidden_units"]),
        l2_reg_linear=0,
        l2_reg_embedding=0,
        l2_reg_dnn=0,
        dnn_dropout=0,
        task="binary",
        device="cpu",
    )
    model.compile("adam", "binary_crossentropy")
    started = time.perf_counter()
    model.fit(
        inputs,
        part.labels,
        batch_size=settings["train"]["batch_size"],
        epochs=1,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    return {"rows": len(part), "seconds": seconds, "samples_per_s": len(part) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="planted rows")
    parser.add_argument(
        "--data", type=Path, help="an existing labeled file instead of a new one"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "train_bench")
    parser.add_argument(
        "--deepctr-rows",
        type=int,
        default=200_000,
        help="training rows DeepCTR-Torch is timed over (it is much slower)",
    )
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or args.out / f"planted_{args.rows}.tsv"
    if not data.exists():
        _slimctr("synth", "--rows", str(args.rows), "--out", str(data))
    ours = _ours(data, args.out, args.threads)
    theirs = _deepctr(args.out / "cache", args.deepctr_rows, args.threads)

    result = {
        "data": str(data),
        "rows": json.loads((args.out / "cache" / "manifest.json").read_text())["data"][
            "rows"
        ],
        "threads": args.threads,
        "config": str(CONFIG.relative_to(ROOT)),
        "slimctr": {
            k: ours[k] for k in ("samples_per_s", "epochs", "batch_size", "seconds")
        },
        "deepctr_torch": theirs,
        "ratio": None
        if theirs is None
        else ours["samples_per_s"] / theirs["samples_per_s"],
    }
    (args.out / "train_bench.json").write_text(json.dumps(result, indent=1))
    print(f"slimctr:       {ours['samples_per_s']:,.0f} samples/s (train.json)")
    if theirs is None:
        print("DeepCTR-Torch: not installed (pip install -e '.[bench]' to compare)")
    else:
        print(
            f"DeepCTR-Torch: {theirs['samples_per_s']:,.0f} samples/s over "
            f"{theirs['rows']:,} rows; slimctr is {result['ratio']:.1f}x"
        )
    print(f"written to {args.out / 'train_bench.json'}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
