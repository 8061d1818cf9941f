"""int8 linear layers for readers on CPUs without bfloat16 matrix units (AVX2 only).

Weights are quantized once per output channel, activations per token at every call (W8A8, symmetric), and the
product runs as an int8 x int8 -> int32 matmul (``torch._int_mm``), rescaled to float32. Per-token activation
scales matter: Qwen-style models carry a few tokens with activations hundreds of times larger than the rest, and
one scale per tensor (torch's ``quantize_dynamic``) flattens every other token to a handful of levels — on the
1.5B reader that changed the chosen letter of two thirds of the questions. Per token, the reader check's accuracy
stays inside float32's interval at every caption level (``caprl models check``; ``benchmarks/reader_speed.py``
measures speed; docs/readers.md, "Which CPU gets what", has both).

Weights use 7 bits (-63..63). On CPUs without VNNI (AVX2 only) oneDNN multiplies int8 by int8 through
``vpmaddubsw``, which adds pairs of products into 16 bits and saturates: with full-range 8-bit weights a 1536-long
dot product came out up to 22% wrong (measured with ``ONEDNN_MAX_CPU_ISA=AVX2``); with 7-bit weights no pair can
overflow, and the product is exact on every CPU, so an int8 reader answers the same on all of them.

Only the decoder layers' linear layers are converted: the embeddings and the ``lm_head`` (which runs at the answer
positions alone) keep float32, so letter probabilities come from a float32 projection.

>>> quantize_linear_int8(model)       # in place; returns the number of layers converted   # doctest: +SKIP
196
"""

from __future__ import annotations

import torch
from torch import nn

WEIGHT_LEVELS = 63
"""Largest weight code: 7 bits, so that no pair of int8 products overflows 16 bits on AVX2 (see above)."""


class Int8Linear(nn.Module):
    """A frozen ``nn.Linear`` computed as int8 x int8: per-output-channel weight scales (7-bit codes), per-token
    activation scales (8-bit codes)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / WEIGHT_LEVELS
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features).float()
        scale = flat.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        q = torch.round(flat / scale).to(torch.int8)
        y = torch._int_mm(q, self.weight_int8.t()).float()
        y.mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_linear_int8(model: nn.Module, *, skip: tuple[str, ...] = ("lm_head", "embed")) -> int:
    """Replace every ``nn.Linear`` of ``model`` whose qualified name contains none of ``skip`` by an
    :class:`Int8Linear`, in place. Returns how many were replaced; the model must be float32 on the CPU."""
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not any(s in name for s in skip)
    ]
    for name, module in targets:
        if module.weight.device.type != "cpu":
            raise ValueError(f"int8 readers run on the CPU; {name} is on {module.weight.device}")
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, Int8Linear(module))
    return len(targets)
