"""A ``Schema`` read from a TOML file, so any delimited click log can be
described without code; ``configs/schema_example.toml`` comments every key.
"""

import os
import tomllib
from pathlib import Path

from data.schema import Schema


def load_schema(path: str | os.PathLike) -> Schema:
    """The schema a TOML file describes; its keys are :class:`Schema`'s fields.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: naming the file and, for bad TOML, the line and column, or
            else the key at fault.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path)}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--schema: {path} is a folder; name a TOML file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--schema: no such file: {path}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from err
    try:
        settings = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from err
    return Schema.from_dict(settings, str(path))
