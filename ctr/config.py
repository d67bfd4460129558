"""Model and training settings as dataclasses, loadable from a commented TOML file."""

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


def _is_number(value: Any) -> bool:
    """An int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: Any, low: int = 1, high: int | None = None) -> bool:
    """An int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        return False
    return high is None or value <= high


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the wide & deep network.

    Attributes:
        embedding_dim: width of each sparse feature's embedding.
        hidden_units: widths of the deep part's hidden layers, input first.
        dropout: dropout rate after each hidden layer, in [0, 1).
    """

    embedding_dim: int = 16
    hidden_units: tuple[int, ...] = (400, 400, 400)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not _is_count(self.embedding_dim, high=4096):
            raise ValueError(
                f"model.embedding_dim: expected an integer in [1, 4096], "
                f"got {self.embedding_dim!r}"
            )
        units = tuple(self.hidden_units)
        if not units or any(not _is_count(u, high=65536) for u in units):
            raise ValueError(
                "model.hidden_units: expected a non-empty list of integers in "
                "[1, 65536], "
                f"got {self.hidden_units!r}"
            )
        object.__setattr__(self, "hidden_units", units)
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"model.dropout: expected a rate in [0, 1), got {self.dropout}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """How the model is fitted.

    Attributes:
        batch_size: rows per optimiser step.
        learning_rate: Adam step size for the dense layers.
        embedding_learning_rate: lazy Adam (RowAdam) step size for the tables.
        embedding_l2: L2 penalty on the embedding rows a batch looks up.
        epochs: upper bound on passes over the training rows.
        patience: evaluations without a better validation AUC before stopping.
        evals_per_epoch: validation passes per epoch (more on small data).
        seed: seeds weight init, shuffling and dropout.
        checkpoint_every: steps between checkpoints when a checkpoint file is
            given (0: only at each evaluation).
        block_rows: rows read together from a cache; epochs visit blocks in a
            random order.
        shuffle_window: blocks whose rows are shuffled together.
    """

    batch_size: int = 256
    learning_rate: float = 1e-3
    embedding_learning_rate: float = 1e-3
    embedding_l2: float = 0.0
    epochs: int = 10
    patience: int = 3
    evals_per_epoch: int = 4
    seed: int = 0
    checkpoint_every: int = 0
    block_rows: int = 65_536
    shuffle_window: int = 8

    def __post_init__(self) -> None:
        if not _is_count(self.checkpoint_every, low=0):
            raise ValueError(
                "train.checkpoint_every: expected an integer >= 0, "
                f"got {self.checkpoint_every!r}"
            )
        names = ("batch_size", "epochs", "patience", "evals_per_epoch")
        for name in (*names, "block_rows", "shuffle_window"):
            if not _is_count(getattr(self, name)):
                raise ValueError(
                    f"train.{name}: expected an integer >= 1, "
                    f"got {getattr(self, name)!r}"
                )
        for name in ("learning_rate", "embedding_learning_rate", "embedding_l2"):
            if not _is_number(getattr(self, name)):
                raise ValueError(
                    f"train.{name}: expected a number, got {getattr(self, name)!r}"
                )
        for name in ("learning_rate", "embedding_learning_rate"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(
                    f"train.{name}: expected > 0, got {getattr(self, name)}"
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"train.seed: expected an integer, got {self.seed!r}")
        if not 0 <= self.embedding_l2 < math.inf:
            raise ValueError(
                f"train.embedding_l2: expected >= 0, got {self.embedding_l2}"
            )


@dataclass(frozen=True)
class Config:
    """One experiment: the encoder's ``min_count`` and ``max_vocab`` (keys kept
    per field, the most frequent; ``None`` for no cap), whether dense features
    also become bucket fields (``dense_buckets``), the model and its training."""

    min_count: int = 3
    max_vocab: int | None = None
    dense_buckets: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not _is_count(self.min_count):
            raise ValueError(
                f"encoder.min_count: expected an integer >= 1, got {self.min_count!r}"
            )
        if self.max_vocab is not None and not _is_count(self.max_vocab):
            raise ValueError(
                "encoder.max_vocab: expected an integer >= 1 (leave it out for no "
                f"cap), got {self.max_vocab!r}"
            )
        if not isinstance(self.dense_buckets, bool):
            raise ValueError(
                "encoder.dense_buckets: expected true or false, "
                f"got {self.dense_buckets!r}"
            )

    def with_overrides(self, **train: Any) -> "Config":
        """A copy with some training settings replaced (``None`` keeps the value)."""
        changes = {k: v for k, v in train.items() if v is not None}
        return replace(self, train=replace(self.train, **changes))


def _section(table: dict, name: str, cls: type, source: str) -> Any:
    values = table.get(name, {})
    if not isinstance(values, dict):
        raise ValueError(f"{source}: [{name}] must be a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {unknown} in [{name}]; accepted: {sorted(known)}"
        )
    if "hidden_units" in values:
        values = {**values, "hidden_units": tuple(values["hidden_units"])}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from err


def load_config(path: str | Path) -> Config:
    """Read a TOML file with ``[encoder]``, ``[model]`` and ``[train]`` tables."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--config: no such file {path}") from err
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from err
    unknown = sorted(set(table) - {"encoder", "model", "train"})
    if unknown:
        raise ValueError(
            f"{path}: unknown table(s) {unknown}; accepted: encoder, model, train"
        )
    encoder = table.get("encoder", {})
    unknown = sorted(set(encoder) - {"min_count", "max_vocab", "dense_buckets"})
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} in [encoder]")
    try:
        return Config(
            min_count=encoder.get("min_count", Config.min_count),
            max_vocab=encoder.get("max_vocab", Config.max_vocab),
            dense_buckets=encoder.get("dense_buckets", Config.dense_buckets),
            model=_section(table, "model", ModelConfig, str(path)),
            train=_section(table, "train", TrainConfig, str(path)),
        )
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: {err}") from err


def config_to_dict(config: Config) -> dict:
    """Plain JSON-ready form, as written beside a model."""
    return {
        "min_count": config.min_count,
        "max_vocab": config.max_vocab,
        "dense_buckets": config.dense_buckets,
        "model": {
            "embedding_dim": config.model.embedding_dim,
            "hidden_units": list(config.model.hidden_units),
            "dropout": config.model.dropout,
        },
        "train": {f.name: getattr(config.train, f.name) for f in fields(TrainConfig)},
    }
