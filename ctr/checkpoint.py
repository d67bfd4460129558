"""Training checkpoints: written atomically, read without unpickling code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts saved
with ``torch.save``, wrapped with the SHA-256 of its bytes so damage inside a
tensor is found on load. It is written to a temporary file beside the target,
flushed and fsynced, then renamed over the target (and the folder fsynced), so
a process killed at any moment leaves either the previous checkpoint or the
new one, never a half-written file under the checkpoint's name. It is read
with ``torch.load(..., weights_only=True)``, which refuses anything but plain
data.
"""

import hashlib
import io
import logging
import os
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "slimctr-checkpoint"
CHECKPOINT_VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint cannot be used to resume this run."""


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inner = io.BytesIO()
    torch.save(state, inner)
    data = inner.getvalue()
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "sha256": hashlib.sha256(data).hexdigest(),
        "state": torch.frombuffer(bytearray(data), dtype=torch.uint8),
    }
    fd, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """The state saved by :func:`save_checkpoint`, checked for its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no checkpoint to resume from; run without --resume first"
        )
    payload = _load(path, path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a slimctr checkpoint")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('format_version')!r} is not "
            f"supported; this slimctr writes version {CHECKPOINT_VERSION}"
        )
    stored = payload.get("state")
    if not isinstance(stored, torch.Tensor) or stored.dtype != torch.uint8:
        raise CheckpointError(f"{path}: not a slimctr checkpoint (no state)")
    data = stored.numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != payload.get("sha256"):
        raise CheckpointError(
            f"{path}: the checkpoint is damaged (its SHA-256 does not match); "
            "delete it and start again"
        )
    state = _load(io.BytesIO(data), path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a slimctr checkpoint (bad state)")
    return state


def _load(source, path: Path):
    """``torch.load`` of plain data only; other content is an error."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for unreadable files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: it is "
            "damaged, or holds more than tensors and plain values); delete it "
            "and start again"
        ) from err


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporary files a killed writer left in ``folder``; returns the count."""
    removed = 0
    for leftover in Path(folder).glob(f".{CHECKPOINT_FILE}.*.tmp"):
        leftover.unlink(missing_ok=True)
        removed += 1
    if removed:
        logger.info("removed %d unfinished checkpoint file(s) in %s", removed, folder)
    return removed


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
