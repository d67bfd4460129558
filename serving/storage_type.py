"""The storage types an artifact may keep its tensors in, one per kind of tensor.

Free of torch, so that the command line can name the storages it offers
without loading the model code; :mod:`serving.storage` applies them.
"""

from dataclasses import asdict, dataclass

KINDS = ("float32", "float16", "int8")


@dataclass(frozen=True)
class Storage:
    """Storage types: ``embedding`` for the tables, ``linear`` for MLP weights.

    Attributes:
        embedding: "float32", "float16" or "int8" (row-wise).
        linear: "float32", "float16" or "int8" (per output channel).
        scale_dtype: "float32" or "float16", for int8 scales and biases.
    """

    embedding: str = "float32"
    linear: str = "float32"
    scale_dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("embedding", "linear"):
            if getattr(self, name) not in KINDS:
                raise ValueError(
                    f"storage.{name}: expected one of {KINDS}, "
                    f"got {getattr(self, name)!r}"
                )
        if self.scale_dtype not in ("float32", "float16"):
            raise ValueError(
                "storage.scale_dtype: expected float32 or float16, "
                f"got {self.scale_dtype!r}"
            )

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def lossless(self) -> bool:
        return self.embedding == "float32" and self.linear == "float32"
