import pytest

from data.split import Split


def test_default_is_80_10_10_in_order():
    train, valid, test = Split().bounds(1000)
    assert (train, valid, test) == (slice(0, 800), slice(800, 900), slice(900, 1000))


def test_parse_and_validation():
    assert Split.parse("0.7,0.2,0.1") == Split(0.7, 0.2, 0.1)
    with pytest.raises(ValueError, match="must sum to 1"):
        Split(0.5, 0.2, 0.2)
    with pytest.raises(ValueError, match="expected three fractions"):
        Split.parse("0.8,0.2")
    with pytest.raises(ValueError, match="too few"):
        Split().bounds(5)
