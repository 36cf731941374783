"""int8 execution of a model's linear layers on CPU.

Weights are quantized once, symmetrically per output channel. Activations
are quantized when a layer runs, with one scale per row (per token), and the
product is an integer matrix multiplication (``torch._int_mm``, VNNI
instructions on x86), which is exact. A row's result therefore depends only
on that row: whatever a request is batched with, its activations are
quantized and multiplied exactly as if it ran alone, which per-tensor
activation scales (``torch.ao``'s dynamic quantization, ONNX Runtime's
``DynamicQuantizeLinear``) cannot promise.

Measured on the 2-core reference machine (AVX512-VNNI), one thread,
t5-small's 512 -> 2048 layer at 16 rows: float32 566 us, the int8 product
134 us (whole-engine figures are in docs/benchmarks.md).
torchao's ``Int8DynamicActivationInt8WeightConfig``, the successor of the
deprecated ``torch.ao`` dynamic quantization, ran that layer eagerly in about
1.7 ms on this CPU (it dequantizes), and per-tensor activation scales would
make answers depend on the batch, so neither is used here.
"""

from __future__ import annotations

import torch
from torch import nn

_QMAX = 127.0
_TINY = 1e-12


class Int8Linear(nn.Module):
    """A drop-in replacement for :class:`torch.nn.Linear` (inference only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=_TINY) / _QMAX
        quantized = torch.round(weight / scale[:, None]).clamp(-_QMAX, _QMAX).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # Named and shaped as nn.Linear's, (out, in): transformers reads
        # ``weight.dtype`` (T5 skips its float casts for int8 weights). The
        # memory layout is what ``_int_mm`` multiplies fastest: (out, in) rows
        # where a layer widens, (in, out) rows where it narrows (t5-small's
        # 2048 -> 512 layer, 16 rows: 140 us instead of 324 us).
        if linear.in_features > linear.out_features:
            quantized = quantized.t().contiguous().t()
        self.register_buffer("weight", quantized)
        self.register_buffer("weight_scale", scale)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each operation here was the fastest of its alternatives on the
        # reference CPU (abs+amax is 15x torch.linalg.vector_norm(inf)).
        rows = x.reshape(-1, self.in_features)
        if rows.dtype != torch.float32:
            rows = rows.float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=_TINY).div_(_QMAX)
        quantized = rows.mul(scale.reciprocal()).round_().to(torch.int8)
        out = torch._int_mm(quantized, self.weight.t()).float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if out.dtype == x.dtype else out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_linears(model: nn.Module) -> int:
    """Replaces every :class:`torch.nn.Linear` of ``model`` in place; returns
    how many. Embeddings, norms and attention arithmetic stay float32."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, Int8Linear(child))
                replaced += 1
    return replaced
