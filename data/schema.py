"""What a dataset's rows hold: the ``Schema`` of a delimited click log, and
``CRITEO``, the default, whose column names stay importable as constants.

A schema names the label, the dense and sparse features, an optional id
column and how the file is written (separator, header). It round-trips
through a plain dict, which is how ``encoder.json`` and a TOML schema file
(see :mod:`data.schema_file`) hold it.
"""

import difflib
from dataclasses import asdict, dataclass, fields

LABEL = "label"
DENSE_FEATURES: tuple[str, ...] = tuple(f"I{i}" for i in range(1, 14))
SPARSE_FEATURES: tuple[str, ...] = tuple(f"C{i}" for i in range(1, 27))
NUM_DENSE = len(DENSE_FEATURES)
NUM_SPARSE = len(SPARSE_FEATURES)

# A sparse key of -1 marks a missing (empty) categorical value. Criteo keys are
# 32-bit hashes read as unsigned integers, so they never collide with it; a
# 64-bit string hash hits it with odds of 2**-64 per distinct value.
MISSING_KEY = -1

# How the sparse columns are written: "hex32" is 1 to 8 hex digits read as an
# unsigned 32-bit key (Criteo); "string" is any text, hashed to a 64-bit key.
SPARSE_KINDS = ("hex32", "string")
# The two categorical fields a YYMMDDHH ``hour_column`` becomes, in this order.
HOUR_FIELDS = ("hour_of_day", "weekday")
_FORBIDDEN_SEPARATORS = ("\n", "\r", '"')


@dataclass(frozen=True, kw_only=True)
class Schema:
    """The layout of one dataset's files.

    Attributes:
        name: short name, e.g. ``"criteo"``, ``"avazu"``.
        label: the 0/1 click column; a file without it is read as unlabeled.
        dense_features: numeric columns; empty is missing. May be empty.
        sparse_features: categorical columns, in model order; empty is missing.
        id_column: a column kept as text to name rows in scores (Avazu's
            20-digit ``id``), or ``None``; rows are then named by line number.
        separator: one character between fields, e.g. ``","`` or ``"\\t"``.
        header: whether the first non-blank line names the columns.
        columns: every column in file order; required when ``header`` is
            false, unused (and so refused) when it is true.
        sparse_kind: how sparse values are written, one of ``SPARSE_KINDS``.
        hour_column: a ``YYMMDDHH`` column that becomes the two sparse fields
            ``HOUR_FIELDS`` (hour of day 0..23, weekday 0..6 from Monday), or
            ``None``.
    """

    name: str
    label: str
    dense_features: tuple[str, ...] = ()
    sparse_features: tuple[str, ...] = ()
    id_column: str | None = None
    separator: str = ","
    header: bool = True
    columns: tuple[str, ...] = ()
    sparse_kind: str = "string"
    hour_column: str | None = None

    def __post_init__(self) -> None:
        for key in ("dense_features", "sparse_features", "columns"):
            value = getattr(self, key)
            if isinstance(value, list):  # frozen: set through object.__setattr__
                object.__setattr__(self, key, tuple(value))
        self._check_types()
        self._check_values()

    def _check_types(self) -> None:
        for key in ("name", "label", "sparse_kind"):
            _expect_name(key, getattr(self, key))
        if not isinstance(self.separator, str):
            raise TypeError(f"separator: expected a string, got {self.separator!r}")
        for key in ("id_column", "hour_column"):
            if getattr(self, key) is not None:
                _expect_name(key, getattr(self, key))
        for key in ("dense_features", "sparse_features", "columns"):
            value = getattr(self, key)
            if not isinstance(value, tuple):
                raise TypeError(
                    f"{key}: expected a list of column names, got {value!r:.60}"
                )
            for item in value:
                _expect_name(key, item)
        if not isinstance(self.header, bool):
            raise TypeError(f"header: expected true or false, got {self.header!r}")

    def _check_values(self) -> None:
        if len(self.separator) != 1 or self.separator in _FORBIDDEN_SEPARATORS:
            raise ValueError(
                f"separator: got {self.separator!r}; expected one character "
                'other than a line break or \'"\', e.g. "," or "\\t"'
            )
        if self.sparse_kind not in SPARSE_KINDS:
            raise ValueError(
                f"sparse_kind: got {self.sparse_kind!r}; accepted: "
                + ", ".join(repr(k) for k in SPARSE_KINDS)
            )
        if not self.sparse_fields:
            raise ValueError(
                "sparse_features: the model needs at least one sparse feature; "
                "list categorical columns in sparse_features or set hour_column"
            )
        _check_unique(self._named_columns())
        if self.hour_column is not None:
            named = {column for _, column in self._named_columns()}
            clash = sorted(set(HOUR_FIELDS) & named)
            if clash:
                raise ValueError(
                    f"hour_column: makes the fields {list(HOUR_FIELDS)}, but "
                    f"{clash} also name columns; rename those columns"
                )
        self._check_columns()

    def _check_columns(self) -> None:
        if self.header:
            if self.columns:
                raise ValueError(
                    "columns: only for a file without a header (header = false); "
                    "a header names the columns itself, so drop columns"
                )
            return
        if not self.columns:
            raise ValueError(
                "columns: a file without a header (header = false) needs every "
                "column listed in file order"
            )
        _check_unique([("columns", c) for c in self.columns])
        missing = [c for _, c in self._named_columns() if c not in self.columns]
        if missing:
            raise ValueError(
                f"columns: does not list {missing}, named elsewhere in the "
                "schema; add them in file order"
            )

    def _named_columns(self) -> list[tuple[str, str]]:
        """``(key, column)`` for every column the schema names."""
        named = [("label", self.label)]
        for key in ("id_column", "hour_column"):
            if getattr(self, key) is not None:
                named.append((key, getattr(self, key)))
        named += [("dense_features", c) for c in self.dense_features]
        named += [("sparse_features", c) for c in self.sparse_features]
        return named

    @property
    def sparse_fields(self) -> tuple[str, ...]:
        """The model's sparse fields in order: ``sparse_features``, then
        ``HOUR_FIELDS`` when there is an ``hour_column``."""
        derived = HOUR_FIELDS if self.hour_column is not None else ()
        return self.sparse_features + derived

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """The columns every file must hold: dense, sparse, then the hour."""
        hour = (self.hour_column,) if self.hour_column is not None else ()
        return self.dense_features + self.sparse_features + hour

    @property
    def num_dense(self) -> int:
        return len(self.dense_features)

    @property
    def num_sparse(self) -> int:
        return len(self.sparse_fields)

    def to_dict(self) -> dict:
        """Plain JSON types, lists for tuples; :meth:`from_dict` reads it back."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, settings: object, source: str) -> "Schema":
        """A schema from ``settings`` (parsed TOML or JSON), checked key by key.

        Raises:
            ValueError: naming ``source`` and the key at fault, for an unknown
                or missing key, a value of the wrong type, or a bad value.
        """
        if not isinstance(settings, dict):
            raise ValueError(
                f"{source}: expected a table of schema keys, got {settings!r:.60}"
            )
        accepted = [f.name for f in fields(cls)]
        for key in settings:
            if key not in accepted:
                close = difflib.get_close_matches(str(key), accepted, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"{source}: unknown key {key!r}{hint}; accepted keys: "
                    + ", ".join(accepted)
                )
        for key in ("name", "label"):
            if key not in settings:
                raise ValueError(f"{source}: the key {key!r} is missing")
        try:
            return cls(**settings)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: key {err}") from err


def _expect_name(key: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{key}: expected a string, got {value!r:.60}")
    if not value or value != value.strip():
        raise ValueError(
            f"{key}: got {value!r:.60}; expected a non-empty name without "
            "leading or trailing spaces"
        )


def _check_unique(named: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for key, column in named:
        if column in seen:
            where = "twice" if seen[column] == key else f"also in {seen[column]}"
            raise ValueError(f"{key}: the column {column!r} is listed {where}")
        seen[column] = key


CRITEO = Schema(
    name="criteo",
    label=LABEL,
    dense_features=DENSE_FEATURES,
    sparse_features=SPARSE_FEATURES,
    separator="\t",
    header=False,
    columns=(LABEL, *DENSE_FEATURES, *SPARSE_FEATURES),
    sparse_kind="hex32",
)
