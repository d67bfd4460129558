"""Train / valid / test split by position, which keeps Criteo's time order."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Split:
    """Fractions of the rows, in file order: earliest train, latest test."""

    train: float = 0.8
    valid: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 < value < 1.0:
                raise ValueError(
                    f"split.{name}: expected a fraction in (0, 1), got {value}"
                )
        if abs(self.train + self.valid + self.test - 1.0) > 1e-6:
            raise ValueError(
                f"split: fractions must sum to 1, got {self.train} + {self.valid}"
                f" + {self.test}"
            )

    def bounds(self, rows: int) -> tuple[slice, slice, slice]:
        """Slices of train, valid and test for ``rows`` rows."""
        train_end = int(round(rows * self.train))
        valid_end = int(round(rows * (self.train + self.valid)))
        if train_end < 1 or valid_end - train_end < 1 or rows - valid_end < 1:
            raise ValueError(
                f"split: {rows} rows are too few for fractions "
                f"{self.train}/{self.valid}/{self.test}; every part needs a row"
            )
        return slice(0, train_end), slice(train_end, valid_end), slice(valid_end, rows)

    @classmethod
    def parse(cls, text: str) -> "Split":
        """From ``"0.8,0.1,0.1"`` (the CLI's ``--split``)."""
        try:
            train, valid, test = (float(part) for part in text.split(","))
        except ValueError as err:
            raise ValueError(
                f"--split: expected three fractions like 0.8,0.1,0.1, got {text!r}"
            ) from err
        return cls(train, valid, test)
