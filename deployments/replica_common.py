"""What both model replicas share: what ``info()`` reports, the torch
threads a replica's settings ask for, and milliseconds since a start."""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from t5electra.server.detector import ReplacementDetector
from t5electra.server.generator import T5Generator

from .deployment_settings import ModelSettings


def replica_info(engine: T5Generator | ReplacementDetector) -> dict[str, Any]:
    """What every replica's ``info()`` reports: model, placement, process."""
    return {
        "model": engine.name,
        "device": str(engine.device),
        "dtype": engine.precision,
        "torch_threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }


def set_threads(settings: ModelSettings) -> None:
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)


def since(entered: float) -> float:
    return (time.perf_counter() - entered) * 1000
