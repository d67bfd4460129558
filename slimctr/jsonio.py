"""JSON output: undefined metrics become ``null``, since JSON has no NaN."""

import json
import math
from pathlib import Path
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``, recursively."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()  # numpy and torch scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any) -> str:
    return json.dumps(finite(value), indent=1, default=str, allow_nan=False)


def write_json(path: str | Path, value: Any) -> Path:
    path = Path(path)
    path.write_text(dumps(value) + "\n")
    return path
