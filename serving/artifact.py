"""The model artifact: one folder of safetensors weights and JSON, no pickle.

Layout::

    model.json              format, version, model shape, training settings
    model.safetensors       the network's tensors (fp32)
    encoder.json            the encoder's settings and dense statistics
    vocabulary.safetensors  the vocabularies as int32 key arrays

This module is the one reader and writer of that layout.
"""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ctr.config import ModelConfig
from ctr.wide_deep import WideDeep
from data.encoder import ENCODER_JSON, VOCABULARY_FILE, Encoder
from serving.storage import Storage, decode_state, encode_state

logger = logging.getLogger(__name__)

MODEL_FORMAT = "slimctr-model"
MODEL_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS_FILE = "model.safetensors"


class ArtifactError(ValueError):
    """An artifact folder is missing, incomplete or not slimctr's."""


@dataclass
class Artifact:
    model: WideDeep
    encoder: Encoder
    metadata: dict = field(default_factory=dict)


def save_artifact(
    folder: str | Path,
    model: WideDeep,
    encoder: Encoder,
    metadata: dict | None = None,
    storage: Storage | None = None,
) -> Path:
    """Write ``model`` and ``encoder`` into ``folder`` (created if needed).

    ``storage`` picks fp32 (the default), fp16 or int8 for the tables and the
    MLP weights; see :mod:`serving.storage`.
    """
    storage = storage or Storage()
    if model.num_embeddings != encoder.num_embeddings:
        raise ValueError(
            "model and encoder disagree on vocabulary sizes: "
            f"{model.num_embeddings} vs {encoder.num_embeddings}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    description = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_VERSION,
        "model": {
            "embedding_dim": model.config.embedding_dim,
            "hidden_units": list(model.config.hidden_units),
            "dropout": model.config.dropout,
        },
        "num_embeddings": list(model.num_embeddings),
        "num_dense": model.num_dense,
        "storage": storage.as_dict(),
        "metadata": metadata or {},
    }
    save_file(encode_state(model.state_dict(), storage), str(folder / WEIGHTS_FILE))
    encoder.save(folder)
    description["encoder_sha256"] = encoder_fingerprint(folder)
    # model.json last: a folder without it is not mistaken for a finished artifact
    (folder / MODEL_JSON).write_text(json.dumps(description, indent=1))
    for path in (folder / WEIGHTS_FILE, folder / VOCABULARY_FILE):
        path.chmod(0o644)  # safetensors writes 0600; the JSON files are 0644
    return folder


def encoder_fingerprint(folder: Path) -> str:
    """SHA-256 over the encoder's files, binding them to one model."""
    digest = hashlib.sha256()
    for name in (ENCODER_JSON, VOCABULARY_FILE):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def _read_description(folder: Path) -> dict:
    path = folder / MODEL_JSON
    if not folder.is_dir():
        raise ArtifactError(f"--model: {folder} is not a folder")
    try:
        description = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ArtifactError(
            f"{path}: not found; is {folder} a slimctr artifact folder?"
        ) from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(description, dict) or description.get("format") != MODEL_FORMAT:
        raise ArtifactError(f"{path}: not a slimctr model description")
    if description.get("format_version") != MODEL_VERSION:
        raise ArtifactError(
            f"{path}: format_version {description.get('format_version')!r} is not "
            f"supported; this slimctr reads version {MODEL_VERSION}"
        )
    return description


def load_artifact(folder: str | Path) -> Artifact:
    """Read an artifact folder; every file is parsed without unpickling."""
    folder = Path(folder)
    description = _read_description(folder)
    try:
        config = ModelConfig(
            embedding_dim=description["model"]["embedding_dim"],
            hidden_units=tuple(description["model"]["hidden_units"]),
            dropout=description["model"]["dropout"],
        )
        model = WideDeep(
            config, description["num_embeddings"], description["num_dense"]
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(
            f"{folder / MODEL_JSON}: bad model description ({err})"
        ) from err

    weights_path = folder / WEIGHTS_FILE
    try:
        state = load_file(str(weights_path))
    except FileNotFoundError as err:
        raise ArtifactError(f"{weights_path}: not found") from err
    except (SafetensorError, OSError, ValueError) as err:
        raise ArtifactError(
            f"{weights_path}: not a valid safetensors file ({err}); slimctr never "
            "loads pickled weights"
        ) from err
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        state = decode_state(state, list(expected))
    except KeyError as err:
        raise ArtifactError(f"{weights_path}: tensor {err} is missing") from err
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        wrong = [k for k in expected if expected[k] != found.get(k)][:3]
        details = "; ".join(
            f"{k} is {list(found.get(k, ()))}, model.json implies {list(expected[k])}"
            for k in wrong
        )
        raise ArtifactError(
            f"{weights_path}: tensor shapes do not match model.json ({details}); "
            "copy the artifact folder whole"
        )
    model.load_state_dict(state)
    model.eval()

    expected_sha = description.get("encoder_sha256")
    for name in (ENCODER_JSON, VOCABULARY_FILE):
        if not (folder / name).is_file():
            raise ArtifactError(
                f"{folder / name}: not found; an artifact folder holds "
                f"{', '.join(ARTIFACT_FILES)}; copy it whole"
            )
    try:
        if expected_sha is not None and encoder_fingerprint(folder) != expected_sha:
            raise ArtifactError(
                f"{folder}: encoder.json or vocabulary.safetensors is damaged or "
                "belongs to another model (fingerprint mismatch); copy the "
                "artifact folder whole"
            )
        encoder = Encoder.load(folder)
    except (FileNotFoundError, ValueError) as err:
        if isinstance(err, ArtifactError):
            raise
        raise ArtifactError(str(err)) from err
    if encoder.num_embeddings != model.num_embeddings:
        raise ArtifactError(f"{folder}: encoder vocabularies do not match the model")
    return Artifact(model, encoder, description.get("metadata", {}))


ARTIFACT_FILES = (ENCODER_JSON, MODEL_JSON, WEIGHTS_FILE, VOCABULARY_FILE)


def artifact_bytes(folder: str | Path) -> dict[str, int]:
    """Size of each artifact file in ``folder``, and ``total``.

    Only the files a scorer loads count; a report written beside them does not.
    """
    folder = Path(folder)
    sizes = {
        name: (folder / name).stat().st_size
        for name in sorted(ARTIFACT_FILES)
        if (folder / name).is_file()
    }
    return {**sizes, "total": sum(sizes.values())}
