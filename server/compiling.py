"""Compiled forward passes for the faster precisions (``torch.compile``,
inductor).

Eager PyTorch pays a Python dispatch per operator: at one text, ELECTRA's
int8 pass is a few hundred small operators, and that overhead, not the
arithmetic, is what ONNX Runtime does not pay. Inductor fuses the
elementwise chains (each int8 layer's per-row quantize, rescale and bias;
GELU; layer norms) into a few C++ loops around the integer matrix products.

One graph serves every shape: sizes are symbolic and size 1 is not
special-cased (``backed_size_oblivious``), so a text scored alone and the same
text in a batch run the very same kernels, and its scores do not depend on
its company (batch invariance, tested); a second shape never recompiles.
float32 is never compiled: it stays exactly transformers.

Compiling takes about a minute on two cores the first time, and about 15 s
when inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, by default under
the system's temporary folder) already holds the kernels; a replica warms up
before it reports ready, so no caller waits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch.fx.experimental import _config as symbolic_shapes

Forward = TypeVar("Forward", bound=Callable[..., torch.Tensor])

COMPILED_PRECISIONS = ("int8", "bfloat16")


def compiled(forward: Forward, precision: str) -> Forward:
    """``forward`` compiled once for every batch and length."""
    if precision not in COMPILED_PRECISIONS:
        raise ValueError(
            f"compiling serves {' and '.join(COMPILED_PRECISIONS)}; {precision} stays eager "
            "(float32 equals transformers exactly)"
        )
    graph = torch.compile(forward, dynamic=True)

    def run(*args: torch.Tensor) -> torch.Tensor:
        with symbolic_shapes.patch(backed_size_oblivious=True):
            return graph(*args)

    return run  # type: ignore[return-value]
