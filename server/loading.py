"""How the engines load a checkpoint: where it runs, in which precision,
the name it is reported by, and what GetModelInfo says of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .domain import ModelDescription

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` is cuda when this process can see a GPU. Ray hides GPUs from
    replicas that were not given ``num_gpus``, so the device follows the
    replica's resources without any Ray code here."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but this process sees no GPU")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """float32 unless half precision was asked for on a GPU; half precision on
    CPU is slower and less accurate than float32, so it is refused."""
    if requested == "auto":
        return torch.float32
    dtype = _DTYPES[requested]
    if dtype != torch.float32 and device.type != "cuda":
        raise ValueError(f"dtype {requested} needs a cuda device, got {device}")
    return dtype


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
    dtype: torch.dtype

    def describe(
        self, kind: str, *, max_input_tokens: int, max_input_chars: int, accepted: dict[str, str], suggestions: str = ""
    ) -> ModelDescription:
        return ModelDescription(
            kind=kind,
            name=self.name,
            architecture=self.model.config.model_type,
            parameters=sum(p.numel() for p in self.model.parameters()),
            dtype=str(self.dtype).removeprefix("torch."),
            device=self.device.type,
            max_input_tokens=max_input_tokens,
            max_input_chars=max_input_chars,
            parameters_accepted=accepted,
            suggestion_generator=suggestions,
        )


def load_pretrained(
    model: str, model_class: Any, *, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto"
) -> Pretrained:
    """``model`` (hub id or path) with its tokenizer. ``device`` and
    ``dtype`` are settings' names (see :func:`pick_device`) or, for a model
    that must sit beside another one, that one's choice."""
    where = device if isinstance(device, torch.device) else pick_device(device)
    precision = dtype if isinstance(dtype, torch.dtype) else pick_dtype(dtype, where)
    tokenizer = AutoTokenizer.from_pretrained(model)
    weights = model_class.from_pretrained(model, dtype=precision).to(where).eval()
    return Pretrained(model_name(model), tokenizer, weights, where, precision)
