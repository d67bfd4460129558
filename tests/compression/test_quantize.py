import pytest
import torch

from compression.quantize import (
    dequantize_channels,
    quantize_channels,
    quantize_rows,
)


def _table():
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(500, 16, generator=generator) * 0.05
    table[3] = 0.0  # a constant row
    table[4] *= 100  # a wide one
    return table


@pytest.mark.parametrize("scale_dtype", ["float32", "float16"])
def test_row_round_trip_error_is_within_half_a_step(scale_dtype):
    table = _table()
    quantized = quantize_rows(table, scale_dtype)
    error = (quantized.dequantize() - table).abs()
    step = quantized.scale.float()[:, None]
    # half a quantisation step per entry, plus float rounding of the stored scale
    assert (error <= step * 0.5 + 1e-6).all()
    assert quantized.codes.dtype == torch.int8
    assert error[3].max() < 1e-6


def test_row_codes_use_a_quarter_of_the_bytes():
    table = _table()
    quantized = quantize_rows(table, "float16")
    assert quantized.nbytes == 500 * 16 + 500 * 2 * 2
    assert quantized.nbytes < table.numel() * 4 / 3


def test_channel_round_trip():
    weight = torch.randn(64, 30, generator=torch.Generator().manual_seed(1))
    codes, scale = quantize_channels(weight)
    error = (dequantize_channels(codes, scale) - weight).abs()
    assert (error <= scale[:, None] * 0.5 + 1e-6).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="expected a 2-D tensor"):
        quantize_rows(torch.ones(3))
    with pytest.raises(ValueError, match="scale_dtype: expected one of"):
        quantize_rows(torch.ones(2, 2), "int4")
