"""Bad input lines: what a reader found wrong, the error that lists them, and the
counter that tallies the lines a reader dropped under ``on_bad_lines="skip"``.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

ON_BAD_LINES = ("error", "skip")

# The fixed set of reason keys, in the order a summary lists them. Criteo's
# dense values must be integers; a schema's dense values may be any number.
REASONS = ("field_count", "not_integer", "bad_label", "bad_sparse_value", "not_number")

# How many bad lines an error message lists before it says "... and N more".
MAX_LISTED = 100

SKIP_FIX = "use --on-bad-lines skip to drop them"


def check_on_bad_lines(on_bad_lines: object) -> str:
    """``on_bad_lines`` itself, after checking that it is one of ``ON_BAD_LINES``."""
    if on_bad_lines not in ON_BAD_LINES:
        accepted = ", ".join(repr(v) for v in ON_BAD_LINES)
        raise ValueError(f"on_bad_lines: got {on_bad_lines!r}; accepted: {accepted}")
    return on_bad_lines


@dataclass(frozen=True)
class BadLine:
    """One fault on one input line.

    Attributes:
        path: the file (or frame) the line came from.
        line: 1-based physical line number (a CSV header is line 1).
        column: the column at fault (``"I5"``, ``"C3"``, ``"label"``), or
            ``None`` when the whole line is, e.g. for a wrong field count.
        reason: a key from ``REASONS``.
        detail: human text, e.g. ``"'abc' is not an integer"``.
    """

    path: str
    line: int
    column: str | None
    reason: str
    detail: str

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"reason: got {self.reason!r}; accepted: {REASONS}")

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:"
        if self.column is not None:
            where += f" column {self.column}:"
        return f"{where} {self.detail}"


class BadLinesError(ValueError):
    """Raised when input holds bad lines and the policy is ``"error"``.

    Attributes:
        bad_lines: the faults found, in line order; a reader keeps only the
            first ``MAX_LISTED`` of them.
        total: how many distinct lines were bad (a line with two faulty
            columns counts once).
        num_faults: how many faults were found in all.
    """

    def __init__(
        self,
        bad_lines: Iterable[BadLine],
        total: int | None = None,
        num_faults: int | None = None,
        fix: str = SKIP_FIX,
    ) -> None:
        self.bad_lines = tuple(bad_lines)
        self.num_faults = len(self.bad_lines) if num_faults is None else num_faults
        if total is None:
            total = len({(b.path, b.line) for b in self.bad_lines})
        self.total = total
        self.fix = fix
        super().__init__(self._message())

    def _message(self) -> str:
        listed = self.bad_lines[:MAX_LISTED]
        lines = [f"found {self.total} bad line{'s' * (self.total != 1)}:"]
        lines += [str(b) for b in listed]
        if self.num_faults > len(listed):
            lines.append(f"... and {self.num_faults - len(listed)} more")
        total = f"total: {self.total} bad line{'s' * (self.total != 1)}"
        if self.num_faults != self.total:
            total += f" ({self.num_faults} faults)"
        lines.append(f"{total}; {self.fix}")
        return "\n".join(lines)

    def __reduce__(self):
        # Rebuild from the fields, so the error survives pickling (e.g. out of
        # a DataLoader worker process) despite the custom constructor.
        return type(self), (self.bad_lines, self.total, self.num_faults, self.fix)


@dataclass
class SkipCounter:
    """Counts the lines dropped under ``on_bad_lines="skip"``, by reason.

    A line with several faults counts once, under the reason of its first
    faulty column.
    """

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, count: int = 1) -> None:
        """Count ``count`` more skipped lines under ``reason``."""
        if reason not in REASONS:
            raise ValueError(f"reason: got {reason!r}; accepted: {REASONS}")
        if count < 0:
            raise ValueError(f"count: got {count}; expected a count >= 0")
        if count:
            self.counts[reason] = self.counts.get(reason, 0) + count

    @property
    def total(self) -> int:
        """How many lines were skipped, all reasons together."""
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line, e.g. ``skipped 2 bad lines: field_count 1, bad_label 1``."""
        if not self.total:
            return "skipped 0 bad lines"
        parts = [f"{r} {self.counts[r]}" for r in REASONS if self.counts.get(r)]
        s = "s" * (self.total != 1)
        return f"skipped {self.total} bad line{s}: " + ", ".join(parts)

    def __str__(self) -> str:
        return self.summary()


def check_read_options(
    on_bad_lines: object, chunk_rows: object, skipped: object
) -> None:
    """Check the options every reader takes: the bad-line policy, the rows
    read at a time, and the counter skipped lines go to."""
    check_on_bad_lines(on_bad_lines)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int):
        raise TypeError(f"chunk_rows: expected an int, got {type(chunk_rows)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows: got {chunk_rows}; expected an int >= 1")
    if skipped is not None and not isinstance(skipped, SkipCounter):
        raise TypeError(f"skipped: expected a SkipCounter or None, got {skipped!r}")


class FaultLog:
    """The faults a reader found in one file: the first ``MAX_LISTED`` as
    ``BadLine``s in line order, and counts of all bad lines and faults.

    Readers add the faults of each piece of the file in order, through
    :meth:`record`; :meth:`error` makes the error to raise at the end.
    """

    def __init__(self, path: str, fix: str | None = None) -> None:
        self.path = path
        self.fix = fix
        self.listed: list[BadLine] = []
        self.total = 0
        self.num_faults = 0

    def record(self, bad_lines: int, faults: int, listed: Iterable[BadLine]) -> None:
        """Count ``bad_lines`` lines holding ``faults`` faults, and list some.

        Each call lists at most ``MAX_LISTED`` faults of its piece, all after
        those of earlier pieces, so sorting and cutting keeps the first ones
        overall.
        """
        self.total += bad_lines
        self.num_faults += faults
        self.listed.extend(listed)
        self.listed.sort(key=lambda b: b.line)  # stable: columns stay in order
        del self.listed[MAX_LISTED:]

    def error(self) -> BadLinesError:
        extra = {} if self.fix is None else {"fix": self.fix}
        return BadLinesError(self.listed, self.total, self.num_faults, **extra)
