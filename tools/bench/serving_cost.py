"""What serving costs next to the model's own work, in one run on one
machine: for each RPC, the engine in-process at batch 16 (one torch
thread, the replicas' setting), then a real ``t5electra serve`` at
concurrency 1 and 16 with the CPU time of every server process read from
the operating system over the load, and optionally each process's profile.

``python -m t5electra.tools.bench.serving_cost --sizes small --dtype int8``
prints, per RPC: served ÷ engine throughput, the c=1 p50 the server adds,
and the CPU milliseconds per request of each server process (proxy, ingress,
model replicas, Ray's own), so that a reader sees where each millisecond
goes; ``--profile DIR`` adds the frames that hold most samples in each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from t5electra.clients.loadtest import DETECTION_TEXTS, GENERATION_PROMPTS, LoadConfig
from t5electra.server.domain import GenerationParameters
from t5electra.server.settings import REQUEST_PATH_SWITCHES

from . import engine
from .checkpoints import ModelPair, small, tiny
from .points import closed_loop, load_point, served
from .processes import cpu_spent, serving_processes
from .profiles import read_folded, recording

RPCS = ("generate", "generate-stream", "detect")
BATCH = 16
_TOKENS = 16
"""Generated tokens per request, forced: served and in-process do the same work."""


def _engine_rates(models: ModelPair, rpcs: tuple[str, ...], dtype: str, duration: float) -> dict[str, dict]:
    """Each RPC's engine in-process at batch 16 and batch 1: requests/s,
    tokens/s and p50 (the batch-1 p50 is what c=1 adds to)."""
    import torch

    from t5electra.server.detector import ReplacementDetector
    from t5electra.server.generator import T5Generator

    torch.set_num_threads(1)
    rates: dict[str, dict] = {}
    generator = T5Generator(models.t5, dtype=dtype) if set(rpcs) - {"detect"} else None
    detector = ReplacementDetector(models.electra, dtype=dtype) if "detect" in rpcs else None
    for rpc in rpcs:
        points = {}
        for batch in (1, BATCH):
            if rpc == "detect":
                point = engine.measure_detection(detector, DETECTION_TEXTS, batch, duration)
            else:
                parameters = GenerationParameters(max_new_tokens=_TOKENS, min_new_tokens=_TOKENS)
                point = engine.measure_generation(
                    generator, GENERATION_PROMPTS, parameters, batch, duration, stream=rpc == "generate-stream"
                )
            points[batch] = point.to_json()
        rates[rpc] = points
    return rates


def _served_rpc(
    up_pid: int, address: str, rpc: str, args: argparse.Namespace, say: Callable[[str], None]
) -> dict[str, Any]:
    def load(concurrency: int) -> LoadConfig:
        params = {} if rpc == "detect" else {"max_new_tokens": _TOKENS, "min_new_tokens": _TOKENS}
        return closed_loop(address, rpc, concurrency, args.duration, args.warmup, params=params)

    single = load_point(load(1), say, "served")
    profiled: dict[str, Any] = {}
    with cpu_spent(up_pid) as spent, _maybe_profiled(up_pid, rpc, args, profiled):
        loaded = load_point(load(BATCH), say, "served")
    per_request = {role: 1000 * seconds / max(1, loaded["requests"]) for role, seconds in spent.items()}
    return {"c1": single, "c16": loaded, "cpu_ms_per_request": per_request, "profiles": profiled}


@contextmanager
def _maybe_profiled(up_pid: int, rpc: str, args: argparse.Namespace, profiled: dict[str, Any]) -> Iterator[None]:
    if args.profile is None:
        yield
        return
    wanted = {"proxy", "ingress", "electra replica" if rpc == "detect" else "t5 replica"}
    pids = {role: pid for pid, role in serving_processes(up_pid).items() if role in wanted}
    with recording(pids, args.warmup + args.duration, args.profile / rpc) as files:
        yield
    for role, folded in files.items():
        if folded.exists():
            profiled[role] = read_folded(role, folded)


def _report(rpc: str, engine_points: dict, served_figures: dict, say: Callable[[str], None]) -> dict[str, Any]:
    batch, single = engine_points[BATCH], engine_points[1]
    loaded, c1 = served_figures["c16"], served_figures["c1"]
    unit = "throughput_rps" if rpc == "detect" else "tokens_per_s"
    ratio = (loaded.get(unit) or 0.0) / batch[unit]
    added_ms = c1["latency_ms"]["p50"] - single["latency_ms"]["p50"]
    cpu = served_figures["cpu_ms_per_request"]
    server_ms = sum(cpu.values())
    engine_ms = 1000 / batch["throughput_rps"]
    say(f"== {rpc}: served c={BATCH} ÷ engine b{BATCH} ({unit}) {ratio:.2f}   c=1 p50 added {added_ms:.1f} ms")
    say(f"   server CPU per request {server_ms:.2f} ms, of which outside the engine ≈ {server_ms - engine_ms:.2f} ms")
    for role, ms in sorted(cpu.items(), key=lambda item: -item[1]):
        say(f"     {role:<16} {ms:6.2f} ms")
    for frames in served_figures["profiles"].values():
        for line in frames.lines(12):
            say(f"   {line}")
    return {
        "rpc": rpc,
        "served_over_engine": ratio,
        "c1_p50_added_ms": added_ms,
        "server_cpu_ms_per_request": server_ms,
        "outside_engine_cpu_ms_per_request": server_ms - engine_ms,
        "cpu_ms_per_request": cpu,
        "engine": engine_points,
        "served": {"c1": c1, "c16": loaded},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m t5electra.tools.bench.serving_cost", description=__doc__)
    parser.add_argument("--sizes", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--dtype", default="float32", help="both models' precision (float32, bfloat16, int8)")
    parser.add_argument("--rpcs", nargs="+", choices=RPCS, default=list(RPCS))
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of each load point")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--engine-duration", type=float, default=3.0)
    parser.add_argument("--profile", type=Path, help="record each serving process with py-spy into this folder")
    parser.add_argument(
        "--ray-serve-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Ray Serve switch for the server (ray_serve_env), besides the defaults; repeatable",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for the server, such as T5ELECTRA_T5__STREAM_INTERVAL_S=0.02; repeatable",
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        models = tiny() if args.sizes == "tiny" else small(workdir)
        started = time.monotonic()
        rates = _engine_rates(models, tuple(args.rpcs), args.dtype, args.engine_duration)
        switches = {**REQUEST_PATH_SWITCHES, **dict(item.split("=", 1) for item in args.ray_serve_env)}
        env = {"T5ELECTRA_RAY_SERVE_ENV": json.dumps(switches), **dict(i.split("=", 1) for i in args.server_env)}
        with served(models, 1, workdir, dtype=args.dtype, env=env) as (up, address):
            figures = {rpc: _served_rpc(up.pid, address, rpc, args, print) for rpc in args.rpcs}
        report = [_report(rpc, rates[rpc], figures[rpc], print) for rpc in args.rpcs]
    print(f"({models.size}, {args.dtype}, Ray Serve switches {switches}, server env {args.server_env}, ", end="")
    print("one torch thread per replica; ", end="")
    print(f"{time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
