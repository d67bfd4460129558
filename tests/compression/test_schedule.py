import pytest

from compression.schedule import agp_schedule, one_shot


def test_agp_is_the_cubic_ramp():
    steps = agp_schedule(0.8, 4)
    expected = [0.8 * (1 - (1 - t / 4) ** 3) for t in range(1, 5)]
    assert steps == pytest.approx(expected)
    assert steps[-1] == pytest.approx(0.8)
    # the increments shrink: most pruning happens early
    increments = [b - a for a, b in zip([0.0, *steps], steps, strict=False)]
    assert increments == sorted(increments, reverse=True)


def test_one_shot_and_validation():
    assert one_shot(0.5) == [0.5]
    with pytest.raises(ValueError, match="steps: expected an integer >= 1"):
        agp_schedule(0.5, 0)
    with pytest.raises(ValueError, match="initial, final"):
        agp_schedule(1.0, 3)
