"""Sparsity schedules for gradual pruning.

The cubic ramp is the automated gradual pruning (AGP) schedule of Zhu & Gupta
(2017), "To prune, or not to prune": prune fast early, when there are many
redundant weights, and slowly near the final sparsity.
"""


def agp_schedule(final: float, steps: int, initial: float = 0.0) -> list[float]:
    """Sparsity after each of ``steps`` steps, ending exactly at ``final``.

    ``s_t = final + (initial - final) * (1 - t / steps) ** 3`` for t = 1..steps.
    """
    if not 0.0 <= initial <= final < 1.0:
        raise ValueError(
            f"initial, final: expected 0 <= initial <= final < 1, "
            f"got {initial}, {final}"
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    return [
        final + (initial - final) * (1.0 - t / steps) ** 3 for t in range(1, steps + 1)
    ]


def one_shot(final: float) -> list[float]:
    """A single step straight to ``final``."""
    return agp_schedule(final, 1)
