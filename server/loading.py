"""How the engines load a checkpoint: where it runs, in which precision,
the name it is reported by, and what GetModelInfo says of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .domain import ModelDescription
from .int8 import quantize_linears

PRECISIONS: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int8": torch.float32,  # int8 weights and activations inside linear layers, float32 between them
}
"""Each precision a model may run in, with the dtype its weights load in and
its activations flow in."""


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` is cuda when this process can see a GPU. Ray hides GPUs from
    replicas that were not given ``num_gpus``, so the device follows the
    replica's resources without any Ray code here."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but this process sees no GPU")
    return torch.device(requested)


def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX);
    elsewhere torch emulates it, slower and no more accurate than float32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def pick_precision(requested: str, device: torch.device) -> str:
    """``auto`` is float32, which equals transformers exactly; the faster
    precisions are opt-in, each refused where it would not run fast."""
    if requested == "auto":
        return "float32"
    if requested not in PRECISIONS:
        raise ValueError(f"dtype {requested!r} is not one of {sorted(PRECISIONS)}")
    if device.type == "cuda" and requested == "int8":
        raise ValueError("dtype int8 runs on CPU replicas; on cuda use bfloat16 or float16")
    if device.type != "cuda" and requested == "float16":
        raise ValueError(f"dtype float16 needs a cuda device, got {device}; CPUs run bfloat16 or int8")
    if device.type == "cpu" and requested == "bfloat16" and not cpu_has_bfloat16():
        raise ValueError("dtype bfloat16 needs a CPU with AVX512-BF16 or AMX; this one would emulate it")
    return requested


def model_name(model: str) -> str:
    """A hub id as given; a local checkpoint by its directory name."""
    path = Path(model)
    return path.name if path.exists() else model


class Pretrained(NamedTuple):
    """A loaded checkpoint: its tokenizer and its weights, in eval mode on
    their device."""

    name: str
    tokenizer: PreTrainedTokenizerBase
    model: Any
    device: torch.device
    precision: str

    def describe(
        self, kind: str, *, max_input_tokens: int, max_input_chars: int, accepted: dict[str, str], suggestions: str = ""
    ) -> ModelDescription:
        return ModelDescription(
            kind=kind,
            name=self.name,
            architecture=self.model.config.model_type,
            parameters=sum(p.numel() for p in self.model.parameters()),
            dtype=self.precision,
            device=self.device.type,
            max_input_tokens=max_input_tokens,
            max_input_chars=max_input_chars,
            parameters_accepted=accepted,
            suggestion_generator=suggestions,
        )


def load_pretrained(
    model: str, model_class: Any, *, device: str | torch.device = "auto", dtype: str = "auto"
) -> Pretrained:
    """``model`` (hub id or path) with its tokenizer, in the precision
    ``dtype`` names (see :func:`pick_precision`). ``device`` is a settings
    name (see :func:`pick_device`) or, for a model that must sit beside
    another one, that one's device."""
    where = device if isinstance(device, torch.device) else pick_device(device)
    precision = pick_precision(dtype, where)
    tokenizer = AutoTokenizer.from_pretrained(model)
    # SDPA, transformers' default, said outright: the T5 decoder step mirrors it.
    weights = model_class.from_pretrained(model, dtype=PRECISIONS[precision], attn_implementation="sdpa")
    weights = weights.to(where).eval()
    if precision == "int8":
        quantize_linears(weights)
    return Pretrained(model_name(model), tokenizer, weights, where, precision)
