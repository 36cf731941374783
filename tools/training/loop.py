"""The optimisation loop the embedded checkpoints are trained with, resumable
from a saved training state."""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"


def _schedule(cycles: Sequence[int]) -> Callable[[int], float]:
    """The learning rate's factor at a step: each cycle a linear warm-up over
    its first 5% of steps, then a cosine decay to zero."""
    starts = [0, *itertools.accumulate(cycles)]

    def schedule(step: int) -> float:
        index = bisect.bisect_right(starts, step) - 1
        into, length = step - starts[index], cycles[min(index, len(cycles) - 1)]
        warmup = max(1, length // 20)
        if into < warmup:
            return (into + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (into - warmup) / max(1, length - warmup)))

    return schedule


def fit(
    model: torch.nn.Module,
    batch: Callable[[int], dict[str, Any]],
    *,
    cycles: Sequence[int],
    learning_rate: float,
    log: Callable[[str], None],
    name: str,
    state_dir: Path | None = None,
    save_every: int = 500,
    recipe: dict[str, Any] | None = None,
    loss: Callable[[dict[str, Any]], torch.Tensor] | None = None,
) -> None:
    """AdamW over ``cycles`` (their lengths in steps, run one after another),
    each a linear warm-up over its first 5% of steps then a cosine decay to
    zero (warm restarts, as SGDR), gradients clipped at norm 1;
    ``batch(step)`` gives that step's model inputs with ``labels``. The model
    is left in eval mode.

    With ``state_dir``, model, optimizer, scheduler and step are saved there
    every ``save_every`` steps and at the end, and a saved state is resumed:
    since ``batch`` depends only on the step, a run cut into several
    invocations trains exactly as one would. ``recipe`` (seed, sizes...) is
    saved with the state, and a state saved with another recipe is refused
    rather than mixed in; a state that finished the first cycles of this
    recipe is continued with the next, which is how a trained checkpoint is
    trained further in a later run, identically to one long run.

    ``loss`` computes a batch's loss where the model's own would waste time
    (by default, ``model(**batch).loss``).
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    steps = sum(cycles)
    schedule = _schedule(cycles)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    recipe = {"name": name, "cycles": list(cycles), "learning_rate": learning_rate, **(recipe or {})}
    first = _resume(state_dir, recipe, model, optimizer, scheduler, log) if state_dir else 0
    # A state that ended a shorter recipe's last cycle holds that cycle's
    # final rate, not the next cycle's first.
    for group in optimizer.param_groups:
        group["lr"] = learning_rate * schedule(first)
    started = time.monotonic()
    model.train()
    loss_of = loss or (lambda inputs: model(**inputs).loss)
    for step in range(first, steps):
        value = loss_of(batch(step))
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 250 == 0 or step == steps - 1:
            log(f"{name} step {step:5d}/{steps} loss {value.item():.4f} ({time.monotonic() - started:.0f}s)")
        if state_dir and ((step + 1) % save_every == 0 or step == steps - 1):
            _save(state_dir, recipe, step + 1, model, optimizer, scheduler)
    model.eval()


def _resume(
    state_dir: Path,
    recipe: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    log: Callable[[str], None],
) -> int:
    """Loads a saved state into the objects and returns the next step (0
    when there is none)."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return 0
    saved = torch.load(path, weights_only=True)
    if not _continues(saved["recipe"], saved["step"], recipe):
        raise ValueError(
            f"{path} was saved by another training recipe ({saved['recipe']}, not {recipe}); "
            "delete it or choose another state directory"
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    log(f"{recipe['name']}: resuming at step {saved['step']} from {path}")
    return saved["step"]


def _continues(saved: dict[str, Any], step: int, recipe: dict[str, Any]) -> bool:
    """Whether a state saved at ``step`` by ``saved`` is part of a run of
    ``recipe``: the same recipe, or the same but for fewer cycles, all of
    them finished."""
    done = saved.get("cycles", [])
    return saved == recipe or (
        {**saved, "cycles": recipe["cycles"]} == recipe and recipe["cycles"][: len(done)] == done and step == sum(done)
    )


def _save(
    state_dir: Path,
    recipe: dict[str, Any],
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """Writes the state beside the old one and renames it over, so that an
    interrupted save leaves the previous state intact."""
    state_dir.mkdir(parents=True, exist_ok=True)
    partial = state_dir / f"{STATE_FILE}.partial"
    state = {
        "recipe": recipe,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    torch.save(state, partial)
    partial.replace(state_dir / STATE_FILE)
