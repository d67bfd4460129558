"""What the options shared by the light and the heavy commands mean: where
output may be written, and which schema the input is read with.
"""

import argparse
import os
from pathlib import Path

from data.reader import preset
from data.schema import CRITEO, Schema
from data.schema_file import load_schema

# the file that marks each kind of folder slimctr writes
FOLDER_MARKERS = {
    "artifact": "model.json",
    "cache": "manifest.json",
    "run": "report.json",
}


def check_out_folder(out: Path, kind: str, inputs: tuple[Path | None, ...]) -> None:
    """Refuse an ``--out`` that is a file, an input, or a folder of another kind."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    for parent in out.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--out: {parent} is a file, so {out} cannot be a folder")
    for source in inputs:
        if source is not None and source.exists() and same_file(out, source):
            raise ValueError(f"--out: {out} is also an input; choose another folder")
        if source is not None and source.exists() and _inside(source, out):
            raise ValueError(
                f"--out: the input {source} is inside {out}, which would be "
                "overwritten; choose another folder or move the input"
            )
    for other, marker in FOLDER_MARKERS.items():
        if other != kind and (out / marker).exists():
            raise ValueError(
                f"--out: {out} holds a slimctr {other} ({marker}); choose an empty "
                f"folder or an existing {kind} folder to overwrite"
            )


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies somewhere under ``folder``."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_out_file(out: Path, option: str, inputs: tuple[Path | None, ...]) -> None:
    """Refuse an output file that is not a regular file, an input, or inside one."""
    if out.exists() and not out.is_file():
        raise ValueError(f"{option}: {out} exists and is not a regular file")
    for source in inputs:
        if source is None or not source.exists():
            continue
        inside = source.is_dir() and same_file(out.parent, source)
        if same_file(out, source) or inside:
            raise ValueError(
                f"{option}: {out} would overwrite the input {source}; "
                "choose another path"
            )


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` exists and is ``b``; by resolved path when either can't be
    looked up."""
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def input_schema(args: argparse.Namespace, trained: Schema | None = None) -> Schema:
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
