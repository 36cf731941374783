"""int8 execution of a model's linear layers on CPU.

Weights are quantized once, symmetrically per output channel. Activations
are quantized when a layer runs, with one scale per row (per token), and the
product is an integer matrix multiplication, which is exact; the float
rescale after it is elementwise. A row's result therefore depends only on
that row: whatever a request is batched with, its activations are quantized
and multiplied exactly as if it ran alone, which per-tensor activation
scales (``torch.ao``'s dynamic quantization, ONNX Runtime's
``DynamicQuantizeLinear``) cannot promise.

Two integer kernels, one per layer, chosen by the layer's size when it is
quantized (never by the batch, so the choice cannot make answers depend on
company): ``torch._int_mm`` for the model's blocks, and oneDNN's
``qlinear_pointwise`` on a weight prepacked at load for the large
projections (T5's vocabulary head). Measured on an AMD EPYC core (AVX-512
VNNI, no AMX), one thread, t5-small's 512 -> 32128 head: ``_int_mm`` 216 /
982 / 1234 us at 1 / 4 / 16 rows, the prepacked kernel 228 / 268 / 605 us;
on the blocks' 512 -> 512 layer the prepacked kernel's fixed cost loses
(18 against 4 us at one row). Both rescale as ``float(product) * weight
scale * row scale``, and the two kernels' outputs are bit-for-bit equal
(``tests/test_int8.py``). oneDNN multiplies unsigned activations with signed
weights natively (VNNI's ``vpdpbusd``); signed activations sent it to a
reference loop hundreds of times slower, so the prepacked kernel gets the
row's int8 values shifted by 128 with a zero point of 128, still exact.

An attention's query, key and value projections read the same layer-norm
output: they share one :class:`SharedQuantization`, so that it is quantized
once instead of three times (t5-small int8, one thread, 16 rows: 1518 ->
1602 tokens/s; electra-small 667 -> 695 texts/s), and the passes written
out here (the T5 decoder step, the ELECTRA pass) compute them as one integer
product (:func:`project`: electra-small b1 252 -> 271 texts/s, b16 711 ->
762; t5-small b1 285 -> 297 tokens/s, b16 1661 -> 1700).

torchao's ``Int8DynamicActivationInt8WeightConfig``, the successor of the
deprecated ``torch.ao`` dynamic quantization, ran t5-small's 512 -> 2048
layer eagerly in about 1.7 ms on this CPU (it dequantizes), and per-tensor
activation scales would make answers depend on the batch, so neither is
used here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_QMAX = 127.0
_TINY = 1e-12
_SHIFT = 128
PREPACKED_MIN_WEIGHTS = 1 << 22
"""Layers with at least this many weights (t5-small's vocabulary head has
16.4 M; its largest block layer 1 M) use the prepacked kernel."""


def _prepacked_kernel_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_prepack")


ATTENTION_INPUTS = ({"q", "k", "v"}, {"query", "key", "value"})
"""Names of the sibling projections (T5's, ELECTRA's) that read one tensor."""


def quantize_rows(x: torch.Tensor, in_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` as int8 rows and their float32 scales, (rows, 1)."""
    rows = x.reshape(-1, in_features)
    if rows.dtype != torch.float32:
        rows = rows.float()
    # Each operation here was the fastest of its alternatives on the
    # reference CPU (abs+amax is 15x torch.linalg.vector_norm(inf)).
    scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=_TINY).div_(_QMAX)
    return rows.mul(scale.reciprocal()).round_().to(torch.int8), scale


class SharedQuantization:
    """The tensor an attention's projections last quantized, kept so that
    its siblings reading the very same tensor reuse it. Only siblings share
    one: the attention's own code calls them one after another on one
    tensor it does not modify in between (inference tensors carry no
    version counter to check that), and holding the tensor keeps its
    identity from passing to another one while it is remembered. It also
    keeps the siblings' fused weights (:meth:`fused`, for :func:`project`)."""

    def __init__(self) -> None:
        self._source: torch.Tensor | None = None
        self._rows: tuple[torch.Tensor, torch.Tensor] | None = None
        self._fused: FusedProjection | None = None

    def fused(self, members: tuple[Int8Linear, ...]) -> FusedProjection | None:
        """The siblings' weights side by side, built the first time a pass
        projects them together (groups no written-out pass projects, such as
        T5's encoder, never pay the copy); None where they cannot be fused."""
        if self._fused is None or self._fused.members != members:
            if len({m.bias is None for m in members}) != 1 or any(m._packed is not None for m in members):
                return None
            self._fused = FusedProjection(members)
        return self._fused

    def rows(self, x: torch.Tensor, in_features: int) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.compiler.is_compiling():
            # A compiled graph computes the quantization once by itself
            # (common subexpressions), and remembering a traced tensor here
            # would make every call's guards fail.
            return quantize_rows(x, in_features)
        if x is not self._source or self._rows is None:
            self._source, self._rows = x, quantize_rows(x, in_features)
        return self._rows


class Int8Linear(nn.Module):
    """A drop-in replacement for :class:`torch.nn.Linear` (inference only)."""

    def __init__(self, linear: nn.Linear, shared: SharedQuantization | None = None) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=_TINY) / _QMAX
        quantized = torch.round(weight / scale[:, None]).clamp(-_QMAX, _QMAX).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._shared = shared
        self._packed: torch.Tensor | None = None
        if quantized.numel() >= PREPACKED_MIN_WEIGHTS and _prepacked_kernel_available():
            self._packed = torch.ops.onednn.qlinear_prepack(quantized, None)
            self._zero_points = torch.zeros(self.out_features, dtype=torch.int64)
        elif linear.in_features > linear.out_features:
            # The memory layout ``_int_mm`` multiplies fastest: (out, in)
            # rows where a layer widens, (in, out) rows where it narrows
            # (t5-small's 2048 -> 512 layer, 16 rows: 140 us instead of 324 us).
            quantized = quantized.t().contiguous().t()
        # Named and shaped as nn.Linear's, (out, in): transformers reads
        # ``weight.dtype`` (T5 skips its float casts for int8 weights).
        self.register_buffer("weight", quantized)
        self.register_buffer("weight_scale", scale)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._shared is None:
            quantized, scale = quantize_rows(x, self.in_features)
        else:
            quantized, scale = self._shared.rows(x, self.in_features)
        if self._packed is None:
            out = torch._int_mm(quantized, self.weight.t()).float().mul_(self.weight_scale)
        else:
            shifted = quantized.view(torch.uint8).bitwise_xor(_SHIFT)  # q + 128, as unsigned
            out = torch.ops.onednn.qlinear_pointwise(
                shifted, 1.0, _SHIFT, self._packed, self.weight_scale, self._zero_points,
                None, 1.0, 0, torch.float32, "none", [], "",
            )  # fmt: skip
        out.mul_(scale)
        if self.bias is not None:
            out.add_(self.bias)
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if out.dtype == x.dtype else out.to(x.dtype)

    def extra_repr(self) -> str:
        kernel = "prepacked" if self._packed is not None else "int_mm"
        return f"in_features={self.in_features}, out_features={self.out_features}, int8, {kernel}"


class FusedProjection:
    """Sibling projections as one integer product: their int8 weights side by
    side, so that a pass computing all of them (``project``) pays one
    ``_int_mm`` call instead of three. Each output column is computed exactly
    as its own layer computes it (the same integer sum, the same two
    rescales), so the outputs are the same bits."""

    def __init__(self, members: Sequence[Int8Linear]) -> None:
        self.members = tuple(members)
        self.in_features = members[0].in_features
        self.widths = [m.out_features for m in members]
        self.weight = torch.cat([m.weight for m in members]).contiguous()
        self.weight_scale = torch.cat([m.weight_scale for m in members])
        biases = [m.bias for m in members]
        self.bias = None if biases[0] is None else torch.cat(biases)  # type: ignore[arg-type]

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        quantized, scale = quantize_rows(x, self.in_features)
        out = torch._int_mm(quantized, self.weight.t()).float().mul_(self.weight_scale).mul_(scale)
        if self.bias is not None:
            out.add_(self.bias)
        out = out.reshape(*x.shape[:-1], -1)
        if out.dtype != x.dtype:
            out = out.to(x.dtype)
        return list(out.split(self.widths, dim=-1))


def project(linears: Sequence[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """Every layer of ``linears`` applied to ``x``: one fused product where
    they are int8 siblings (one :class:`SharedQuantization`), else each on
    its own (float32 layers run exactly as they would alone)."""
    fused = _fused(linears)
    return fused(x) if fused is not None else [linear(x) for linear in linears]


def _fused(linears: Sequence[nn.Module]) -> FusedProjection | None:
    """The siblings' fused projection; None where ``linears`` are not int8
    siblings or cannot be fused."""
    group = getattr(linears[0], "_shared", None)
    if isinstance(group, SharedQuantization) and all(getattr(m, "_shared", None) is group for m in linears):
        return group.fused(tuple(linears))  # type: ignore[arg-type]
    return None


def prepare_projection(linears: Sequence[nn.Module]) -> None:
    """Builds the fused weights :func:`project` would build on its first
    call with ``linears``; a pass about to be compiled needs them built
    beforehand, since tracing must not change what its guards read."""
    _fused(linears)


def quantize_linears(model: nn.Module) -> int:
    """Replaces every :class:`torch.nn.Linear` of ``model`` in place; returns
    how many. Embeddings, norms and attention arithmetic stay float32."""
    replaced = 0
    for parent in list(model.modules()):
        names = {name for name, child in parent.named_children() if type(child) is nn.Linear}
        siblings = next((group for group in ATTENTION_INPUTS if group <= names), set())
        shared = SharedQuantization() if siblings else None
        for name in names:
            setattr(parent, name, Int8Linear(getattr(parent, name), shared if name in siblings else None))
            replaced += 1
    return replaced
