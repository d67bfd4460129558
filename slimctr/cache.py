"""The encoded cache written by ``slimctr prepare`` and read by ``train``.

A folder holding the fitted encoder, one safetensors file per split
(``sparse_ids``, ``dense``, ``labels``) and ``manifest.json`` describing the
source file, so a later run can check what it reads.
"""

import json
import logging
from pathlib import Path

from safetensors.numpy import load_file, save_file

from data.encoder import EncodedBatch, Encoder
from slimctr.dataset import Dataset
from slimctr.pipeline import Encoded

logger = logging.getLogger(__name__)

CACHE_FORMAT = "slimctr-cache"
CACHE_VERSION = 1
SPLITS = ("train", "valid", "test")


def save_cache(folder: str | Path, dataset: Dataset, encoded: Encoded) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoded.encoder.save(folder)
    for name in SPLITS:
        part: EncodedBatch = getattr(encoded, name)
        save_file(
            {
                "sparse_ids": part.sparse_ids.astype("int32"),
                "dense": part.dense,
                "labels": part.labels,
            },
            str(folder / f"{name}.safetensors"),
        )
    stat = dataset.path.stat()
    manifest = {
        "format": CACHE_FORMAT,
        "format_version": CACHE_VERSION,
        "source": {
            "path": str(dataset.path),
            "bytes": stat.st_size,
            "mtime": stat.st_mtime,
        },
        "data": dataset.describe(),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


def _warn_if_stale(source: dict, manifest_path: Path) -> None:
    path = Path(source.get("path", ""))
    if not path.is_file():
        logger.warning("%s: the source file %s is gone", manifest_path, path)
        return
    stat = path.stat()
    if stat.st_size != source.get("bytes") or stat.st_mtime != source.get("mtime"):
        logger.warning(
            "%s: the source file %s changed since the cache was written; "
            "run slimctr prepare again to use the new rows",
            manifest_path,
            path,
        )


def load_cache(folder: str | Path) -> tuple[Encoded, dict]:
    """The encoded splits and the data description of a cache folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"--cache: {folder} is not a folder written by slimctr prepare"
        )
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"--cache: {manifest_path} not found; write the cache with slimctr prepare"
        ) from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{manifest_path}: not valid JSON ({err})") from err
    if manifest.get("format") != CACHE_FORMAT:
        raise ValueError(f"{manifest_path}: not a slimctr cache")
    if manifest.get("format_version") != CACHE_VERSION:
        raise ValueError(
            f"{manifest_path}: cache version {manifest.get('format_version')!r} is "
            f"not supported; prepare it again with this slimctr"
        )
    _warn_if_stale(manifest.get("source", {}), manifest_path)
    encoder = Encoder.load(folder)
    parts = []
    for name in SPLITS:
        path = folder / f"{name}.safetensors"
        try:
            tensors = load_file(str(path))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"--cache: {path} is missing") from err
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(
                f"{path}: not a readable safetensors file ({err})"
            ) from err
        missing = {"sparse_ids", "dense", "labels"} - set(tensors)
        if missing:
            raise ValueError(f"{path}: missing tensors {sorted(missing)}")
        parts.append(
            EncodedBatch(
                tensors["sparse_ids"].astype("int64"),
                tensors["dense"],
                tensors["labels"],
            )
        )
    return Encoded(encoder, *parts), manifest["data"]
