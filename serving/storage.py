"""How an artifact stores its tensors: fp32, fp16 or int8, per kind of tensor.

Embedding tables (``embedding.weight``, ``wide_sparse.weight``) may be stored
as row-wise int8 codes with a per-row scale and bias (tables narrower than 8,
such as the wide part's one weight a row, go to fp16 instead); ``Linear`` weights as
per-channel int8 codes with a scale; anything may be stored as fp16. Loading
always gives back fp32 tensors of the model's shapes.
"""

import torch

from compression.quantize import (
    QuantizedRows,
    dequantize_channels,
    quantize_channels,
    quantize_rows,
)
from serving.storage_type import Storage

TABLES = ("embedding.weight", "wide_sparse.weight")
CODES, SCALE, BIAS = ".codes", ".scale", ".bias_q"

# below this width a row's scale and bias cost more than int8 saves over fp16
MIN_INT8_ROW_WIDTH = 8


def _kind(name: str, tensor: torch.Tensor, storage: Storage) -> str:
    if name in TABLES:
        if storage.embedding == "int8" and tensor.shape[1] < MIN_INT8_ROW_WIDTH:
            return "float16"
        return storage.embedding
    if name.startswith("mlp.") and name.endswith(".weight") and tensor.ndim == 2:
        return storage.linear
    return "float32"


def encode_state(state: dict[str, torch.Tensor], storage: Storage) -> dict:
    """The tensors to write for ``state`` under ``storage``."""
    out = {}
    for name, tensor in state.items():
        tensor = tensor.detach().float().contiguous()
        kind = _kind(name, tensor, storage)
        if kind == "float32":
            out[name] = tensor
        elif kind == "float16":
            out[name] = tensor.half()
        elif name in TABLES:
            rows = quantize_rows(tensor, storage.scale_dtype)
            out[name + CODES] = rows.codes
            out[name + SCALE] = rows.scale
            out[name + BIAS] = rows.bias
        else:
            codes, scale = quantize_channels(tensor)
            out[name + CODES] = codes
            out[name + SCALE] = scale.to(getattr(torch, storage.scale_dtype))
    return out


def decode_state(tensors: dict[str, torch.Tensor], names: list[str]) -> dict:
    """fp32 tensors for ``names`` from what :func:`encode_state` wrote."""
    state = {}
    for name in names:
        if name in tensors:
            state[name] = tensors[name].float()
        elif name + CODES in tensors and name + BIAS in tensors:
            rows = QuantizedRows(
                tensors[name + CODES], tensors[name + SCALE], tensors[name + BIAS]
            )
            state[name] = rows.dequantize()
        elif name + CODES in tensors:
            state[name] = dequantize_channels(
                tensors[name + CODES], tensors[name + SCALE]
            )
        else:
            raise KeyError(name)
    return state


def simulate(model: torch.nn.Module, storage: Storage) -> torch.nn.Module:
    """``model`` with its weights replaced by what loading them back would give."""
    names = list(model.state_dict())
    model.load_state_dict(
        decode_state(encode_state(model.state_dict(), storage), names)
    )
    return model
