"""The optimisation loop both embedded checkpoints are trained with."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


def fit(
    model: torch.nn.Module,
    batches: Iterator[dict[str, Any]],
    *,
    steps: int,
    learning_rate: float,
    log: Callable[[str], None],
    name: str,
) -> None:
    """AdamW with a linear warm-up over the first 5% of steps, then cosine
    decay to zero, gradients clipped at norm 1; ``batches`` yields model
    inputs with ``labels``. The model is left in eval mode."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    started = time.monotonic()
    model.train()
    for step in range(steps):
        loss = model(**next(batches)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 250 == 0 or step == steps - 1:
            log(f"{name} step {step:5d}/{steps} loss {loss.item():.4f} ({time.monotonic() - started:.0f}s)")
    model.eval()
