"""The two things every bench phase does: start a ``t5electra serve`` with
some settings, and measure one load point against it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from t5electra.tools.load.report import shown
from t5electra.tools.load.run import run_load
from t5electra.tools.load.workload import LoadConfig

from .checkpoints import ModelPair
from .processes import SERVE_READY, Started, cpu_spent, free_port, started_process


def closed_loop(address: str, rpc: str, concurrency: int, duration: float, warmup: float, **more: Any) -> LoadConfig:
    """The bench's load at one point: ``concurrency`` callers, each sending
    its next request when the last is answered, measured for ``duration``
    seconds after ``warmup``; a request waits up to 120 s. ``more``: the
    rest of :class:`LoadConfig` (params, prompts, mix)."""
    return LoadConfig(
        address=address,
        rpc=rpc,  # type: ignore[arg-type]
        concurrency=concurrency,
        duration=duration,
        warmup=warmup,
        timeout=120.0,
        **more,
    )


def load_point(
    load: LoadConfig, say: Callable[[str], None], label: str, server_pid: int | None = None
) -> dict[str, Any]:
    """Runs the load tester with ``load`` and prints one line of its figures;
    with ``server_pid``, the figures also carry the CPU milliseconds per
    request each of the server's processes spent over the load (warm-up
    included, as are its requests)."""
    if server_pid is None:
        figures = asyncio.run(run_load(load, progress=False)).to_json()
    else:
        with cpu_spent(server_pid) as spent:
            figures = asyncio.run(run_load(load, progress=False)).to_json()
        figures["cpu_ms_per_request"] = {role: 1000 * s / max(1, figures["requests"]) for role, s in spent.items()}
    say(
        f"  {label:<10} {load.rpc:<16} c={load.concurrency:<3} {shown(figures['throughput_rps']):>8} req/s  "
        f"{shown(figures.get('tokens_per_s'), '.0f'):>7} tok/s  p50 {shown(figures['latency_ms']['p50']):>7} ms  "
        f"errors {sum(figures['errors'].values())}  window {figures['window_s']:.1f} s"
        + (" (cut at the cap)" if figures["window_capped"] else "")
    )
    return figures


@contextmanager
def served(
    models: ModelPair,
    torch_threads: int,
    workdir: Path,
    scheduler: str = "continuous",
    dtype: str = "auto",
    env: dict[str, str] | None = None,
    label: str = "",
) -> Iterator[tuple[Started, str]]:
    """A ``t5electra serve`` process with ``scheduler`` for T5 and ``dtype``
    for both models, and ``env`` besides; yields it and its address. Its
    log's name has ``label`` in it."""
    port = free_port()
    env = {
        "T5ELECTRA_PORT": str(port),
        "T5ELECTRA_HTTP_PORT": str(free_port()),
        "T5ELECTRA_METRICS_PORT": str(free_port()),
        "T5ELECTRA_T5__MODEL": models.t5,
        "T5ELECTRA_ELECTRA__MODEL": models.electra,
        "T5ELECTRA_T5__TORCH_THREADS": str(torch_threads),
        "T5ELECTRA_ELECTRA__TORCH_THREADS": str(torch_threads),
        "T5ELECTRA_T5__SCHEDULER": scheduler,
        "T5ELECTRA_T5__DTYPE": dtype,
        "T5ELECTRA_ELECTRA__DTYPE": dtype,
        **(env or {}),
    }
    serve = [sys.executable, "-m", "t5electra.tools.cli", "serve"]
    log = workdir / f"serve-{models.size}-{scheduler}-{dtype}{label}.log"
    with started_process("t5electra serve", serve, SERVE_READY, log, env) as up:
        yield up, f"127.0.0.1:{port}"
