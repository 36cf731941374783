"""Where a model runs and in which precision, and how its name is reported."""

from __future__ import annotations

from pathlib import Path

import torch

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
