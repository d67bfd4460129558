"""Row-wise int8 quantization of embedding tables and per-channel int8 weights.

An embedding row ``w`` is stored as int8 codes ``q`` plus a per-row ``scale``
and ``bias`` (asymmetric, after the row-wise scheme of FBGEMM's 8-bit
embedding tables): ``w ≈ scale * q + bias``, error at most ``scale / 2`` per
entry. A ``Linear`` weight is stored symmetric per output channel:
``W ≈ scale[:, None] * q``.
"""

from dataclasses import dataclass

import torch

SCALE_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class QuantizedRows:
    """Int8 codes ``(rows, dim)`` with per-row ``scale`` and ``bias`` ``(rows,)``."""

    codes: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor

    def dequantize(self) -> torch.Tensor:
        """The fp32 table, ``(rows, dim)``."""
        scale = self.scale.float()[:, None]
        bias = self.bias.float()[:, None]
        return self.codes.float() * scale + bias

    @property
    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for t in (self.codes, self.scale, self.bias)
        )


def _scale_dtype(name: str) -> torch.dtype:
    if name not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype: expected one of {SCALE_DTYPES}, got {name!r}")
    return getattr(torch, name)


def quantize_rows(table: torch.Tensor, scale_dtype: str = "float32") -> QuantizedRows:
    """Row-wise asymmetric int8 codes of a 2-D table.

    Args:
        table: ``(rows, dim)`` float tensor.
        scale_dtype: storage type of the per-row scale and bias; float16
            saves 4 bytes a row at a slightly larger error.
    """
    if table.ndim != 2:
        raise ValueError(
            f"table: expected a 2-D tensor, got shape {tuple(table.shape)}"
        )
    dtype = _scale_dtype(scale_dtype)
    table = table.detach().float()
    low = table.min(dim=1).values
    high = table.max(dim=1).values
    # the stored (rounded) scale and bias are the ones used to pick the codes,
    # so the error bound holds for what is on disk
    scale = ((high - low) / 255.0).clamp_min(1e-12).to(dtype)
    bias = (low + 128.0 * scale.float()).to(dtype)
    codes = torch.round((table - bias.float()[:, None]) / scale.float()[:, None])
    codes = codes.clamp(-128, 127).to(torch.int8)
    return QuantizedRows(codes, scale, bias)


def quantize_channels(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``(codes, scale)`` for ``(out, in)``."""
    if weight.ndim != 2:
        raise ValueError(
            f"weight: expected a 2-D tensor, got shape {tuple(weight.shape)}"
        )
    weight = weight.detach().float()
    scale = (weight.abs().max(dim=1).values / 127.0).clamp_min(1e-12)
    codes = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scale


def dequantize_channels(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return codes.float() * scale.float()[:, None]
