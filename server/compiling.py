"""Compiled forward passes for the faster precisions (``torch.compile``,
inductor).

Eager PyTorch pays a Python dispatch per operator: at one text, ELECTRA's
int8 pass is a few hundred small operators, and that overhead, not the
arithmetic, is what ONNX Runtime does not pay. Inductor fuses the
elementwise chains (each int8 layer's per-row quantize, rescale and bias;
GELU; layer norms) into a few C++ loops around the integer matrix products.

Sizes are symbolic, so two graphs serve every shape: one for a single row
(torch specializes size 1) and one for any other batch, each for any length;
a text's scores alone and in a batch agree as the eager passes' do (the same
replaced tokens, scores within 1e-3: tests/test_compiled.py). Treating size 1
as any other size (``backed_size_oblivious``) would make that one graph, but
with inductor's disk cache warm its graphs then scored wrongly (every score
off by up to 0.98 on the embedded checkpoint, torch 2.13), so it is not used.
float32 is never compiled: it stays exactly transformers.

Compiling takes tens of seconds on two cores the first time, and much less
when inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, by default under
the system's temporary folder) already holds the kernels; a replica warms up
both graphs before it reports ready, so no caller waits for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

Forward = TypeVar("Forward", bound=Callable[..., torch.Tensor])

COMPILED_PRECISIONS = ("int8", "bfloat16")


def compiled(forward: Forward, precision: str) -> Forward:
    """``forward`` compiled for every batch and length."""
    if precision not in COMPILED_PRECISIONS:
        raise ValueError(
            f"compiling serves {' and '.join(COMPILED_PRECISIONS)}; {precision} stays eager "
            "(float32 equals transformers exactly)"
        )
    return torch.compile(forward, dynamic=True)
