"""What serving costs next to the model's own work, in one run on one
machine: for each RPC, the engine in-process at batch 1 and 16 (one torch
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from t5electra.deployments.settings import REQUEST_PATH_SWITCHES
from t5electra.server.domain import GenerationParameters

from .checkpoints import small, tiny
from .figures import REFERENCE_CONCURRENCY, SizeResult, ratios
from .points import closed_loop, load_point, served
from .processes import serving_processes
from .profiles import Frames, read_folded, recording
from .runner import RPCS, BenchConfig, engine_points

_TOKENS = 16
"""Generated tokens per request, forced: served and in-process do the same work."""


def _served(up_pid: int, address: str, rpc: str, args: argparse.Namespace) -> tuple[list[dict], dict[str, Frames]]:
    """The served points of ``rpc`` at concurrency 1 and 16, each with the
    server's CPU by process, and the profiles recorded over the c=16 one."""
    params = {} if rpc == "detect" else {"max_new_tokens": _TOKENS, "min_new_tokens": _TOKENS}
    points: list[dict] = []
    profiled: dict[str, Frames] = {}
    for concurrency in (1, REFERENCE_CONCURRENCY):
        load = closed_loop(address, rpc, concurrency, args.duration, args.warmup, params=params)
        with _maybe_profiled(up_pid, rpc, args, profiled, concurrency == REFERENCE_CONCURRENCY):
            points.append(load_point(load, print, "served", up_pid))
    return points, profiled


@contextmanager
def _maybe_profiled(
    up_pid: int, rpc: str, args: argparse.Namespace, profiled: dict[str, Frames], wanted: bool
) -> Iterator[None]:
    if args.profile is None or not wanted:
        yield
        return
    roles = {"proxy", "ingress", "electra replica" if rpc == "detect" else "t5 replica"}
    pids = {role: pid for pid, role in serving_processes(up_pid).items() if role in roles}
    with recording(pids, args.warmup + args.duration, args.profile / rpc) as files:
        yield
    for role, folded in files.items():
        if folded.exists():
            profiled[role] = read_folded(role, folded)


def _report(rpc: str, result: SizeResult, profiled: dict[str, Frames]) -> dict[str, Any]:
    """Prints and returns ``rpc``'s figures: the bench's own ratios
    (``figures.ratios``) and the CPU by process at concurrency 16."""
    mine = ratios(result)[rpc]
    served_points = {f"c{p['concurrency']}": p for p in result.served if p["rpc"] == rpc}
    cpu = served_points[f"c{REFERENCE_CONCURRENCY}"]["cpu_ms_per_request"]
    b = REFERENCE_CONCURRENCY
    print(
        f"== {rpc}: served c={b} ÷ engine b{b} {mine['served_over_engine_b16']:.2f}   "
        f"c=1 p50 added {mine['p50_overhead_ms']:.1f} ms"
    )
    print(
        f"   server CPU per request {mine['server_cpu_ms']:.2f} ms, "
        f"of which outside the engine ≈ {mine['server_cpu_ms_outside_engine']:.2f} ms"
    )
    for role, ms in sorted(cpu.items(), key=lambda item: -item[1]):
        print(f"     {role:<16} {ms:6.2f} ms")
    for frames in profiled.values():
        for line in frames.lines(12):
            print(f"   {line}")
    return {
        "rpc": rpc,
        "served_over_engine": mine["served_over_engine_b16"],
        "c1_p50_added_ms": mine["p50_overhead_ms"],
        "server_cpu_ms_per_request": mine["server_cpu_ms"],
        "outside_engine_cpu_ms_per_request": mine["server_cpu_ms_outside_engine"],
        "cpu_ms_per_request": cpu,
        "engine": {str(p["batch_size"]): p for p in result.engine if p["rpc"] == rpc},
        "served": served_points,
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
        config = BenchConfig(rpcs=tuple(args.rpcs), dtype=args.dtype, engine_duration=args.engine_duration)
        result = SizeResult(models)
        forced = GenerationParameters(max_new_tokens=_TOKENS, min_new_tokens=_TOKENS)
        sizes = {rpc: {1, REFERENCE_CONCURRENCY} for rpc in args.rpcs}
        result.engine = engine_points(models, config, sizes, forced)
        switches = {**REQUEST_PATH_SWITCHES, **dict(item.split("=", 1) for item in args.ray_serve_env)}
        env = {"T5ELECTRA_RAY_SERVE_ENV": json.dumps(switches), **dict(i.split("=", 1) for i in args.server_env)}
        with served(models, 1, workdir, dtype=args.dtype, env=env) as (up, address):
            profiles = {}
            for rpc in args.rpcs:
                points, profiles[rpc] = _served(up.pid, address, rpc, args)
                result.served += points
        report = [_report(rpc, result, profiles[rpc]) for rpc in args.rpcs]
    print(f"({models.size}, {args.dtype}, Ray Serve switches {switches}, server env {args.server_env}, ", end="")
    print("one torch thread per replica; ", end="")
    print(f"{time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
