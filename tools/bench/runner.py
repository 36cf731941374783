"""Runs a whole benchmark: for each model size, the served system (a real
``t5electra serve`` process) and the plain server under the load tester at
each concurrency, then the engines in-process at batch size 1 and at the
batch sizes the server formed. The phases run one after another so that they
never compete for the machine's cores."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from t5electra.deployments.names import TEXT_GENERATOR
from t5electra.server.domain import GenerationParameters
from t5electra.tools.load.workload import DETECTION_TEXTS, GENERATION_PROMPTS

from . import checkpoints, cpu, engine, peers, precisions
from .checkpoints import ModelPair
from .figures import (
    OVERLOAD_DEADLINE_S,
    OVERLOAD_FACTOR,
    REFERENCE_CONCURRENCY,
    SizeResult,
    formed_batch,
)
from .points import closed_loop, load_point, served
from .processes import free_port, replica_peak_rss_mb, started_process

RPCS = ("generate", "generate-stream", "detect")
SHORT, LONG = 4, 48


@dataclass(frozen=True)
class BenchConfig:
    sizes: tuple[str, ...] = ("tiny", "small")
    rpcs: tuple[str, ...] = RPCS
    concurrencies: tuple[int, ...] = (1, 4, 16, 64)
    duration: float = 8.0
    warmup: float = 2.0
    engine_duration: float = 4.0
    max_new_tokens: int = 32
    t5_model: str | None = None
    electra_model: str | None = None
    # The served replicas, the plain server and the in-process engines use
    # the same intra-op threads, so that efficiency compares serving, not
    # thread counts. One is what a replica of the default config gets
    # (num_cpus 0.5 makes Ray set OMP_NUM_THREADS=1).
    torch_threads: int = 1
    # The precision of both models in every phase but the peers phase,
    # which runs each of ``precisions``.
    dtype: str = "auto"
    # The mixed-length phase: GenerateStream at the reference concurrency,
    # requests wanting SHORT or LONG tokens in turn, then all LONG, under
    # each T5 scheduler.
    mixed: bool = True
    # The overload point: Generate open-loop at OVERLOAD_FACTOR times the
    # served capacity (its closed-loop rate at the reference concurrency),
    # from a plain gRPC client with an OVERLOAD_DEADLINE_S deadline.
    overload: bool = True
    # The peers phase (precisions.py): the served system at each of these
    # precisions beside CTranslate2 and ONNX Runtime on one workload, then
    # the engines and the peers in-process over ``peer_rounds`` rounds.
    peers: bool = True
    peer_rounds: int = 3
    precisions: tuple[str, ...] = ("float32", "bfloat16", "int8")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """About two minutes on a 2-core laptop: tiny models, concurrency 1 and 16."""
        defaults: dict[str, Any] = {
            "sizes": ("tiny",),
            "concurrencies": (1, REFERENCE_CONCURRENCY),
            "duration": 4.0,
            "warmup": 1.0,
            "engine_duration": 2.0,
            "peers": False,
        }
        return cls(**{**defaults, **overrides})


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    return {
        **cpu.describe(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in ("torch", "transformers", "ray", "grpcio", "t5-electra-serve")},
    }


def _loads(
    address: str, config: BenchConfig, say: Callable[[str], None], label: str, server_pid: int | None = None
) -> list[dict[str, Any]]:
    """Every (rpc, concurrency) point; with ``server_pid``, each with the
    server's CPU by process (``load_point``)."""
    points = []
    for rpc in config.rpcs:
        for concurrency in config.concurrencies:
            params = {} if rpc == "detect" else {"max_new_tokens": config.max_new_tokens}
            load = closed_loop(address, rpc, concurrency, config.duration, config.warmup, params=params)
            points.append(load_point(load, say, label, server_pid))
    return points


def _exact(tokens: int) -> dict[str, int]:
    return {"max_new_tokens": tokens, "min_new_tokens": tokens}


def _mixed_phase(address: str, config: BenchConfig, say: Callable[[str], None], scheduler: str) -> dict[str, Any]:
    """GenerateStream at the reference concurrency: SHORT and LONG requests
    in turn, then all LONG."""
    base = closed_loop(address, "generate-stream", REFERENCE_CONCURRENCY, config.duration, config.warmup)
    return {
        "mixed": load_point(replace(base, mix=(_exact(SHORT), _exact(LONG))), say, f"{scheduler[:6]} mix"),
        "all_long": load_point(replace(base, params=_exact(LONG)), say, f"{scheduler[:6]} {LONG}"),
    }


def _overload_point(
    address: str, config: BenchConfig, served: list[dict[str, Any]], say: Callable[[str], None]
) -> dict[str, Any]:
    """Generate past saturation, as a plain client meets it: what is
    answered within the deadline, and how soon the rest is refused."""
    capacity = next(
        (p["throughput_rps"] for p in served if p["rpc"] == "generate" and p["concurrency"] == REFERENCE_CONCURRENCY),
        None,
    )
    if not capacity:
        return {}
    load = replace(
        closed_loop(address, "generate", 1, config.duration, config.warmup),
        rate=OVERLOAD_FACTOR * capacity,
        timeout=OVERLOAD_DEADLINE_S,
        plain=True,
        params={"max_new_tokens": config.max_new_tokens},
    )
    return {**load_point(load, say, "overload"), "capacity_rps": capacity}


def engine_points(
    models: ModelPair,
    config: BenchConfig,
    sizes: dict[str, set[int]],
    parameters: GenerationParameters | None = None,
) -> list[dict[str, Any]]:
    """Each rpc's engines in-process at each of its batch ``sizes``; T5 with
    ``parameters`` (default: at most ``config.max_new_tokens`` new tokens)."""
    import torch

    from t5electra.server.detector import ReplacementDetector
    from t5electra.server.generator import T5Generator

    torch.set_num_threads(config.torch_threads)
    points = []
    parameters = parameters or GenerationParameters(max_new_tokens=config.max_new_tokens)
    if {"generate", "generate-stream"} & set(config.rpcs):
        generator = T5Generator(models.t5, dtype=config.dtype)
        for rpc in ("generate", "generate-stream"):
            for size in sorted(sizes.get(rpc, ())):
                point = engine.measure_generation(
                    generator,
                    GENERATION_PROMPTS,
                    parameters,
                    size,
                    config.engine_duration,
                    stream=rpc == "generate-stream",
                )
                points.append(point.to_json())
        del generator
    if "detect" in config.rpcs:
        detector = ReplacementDetector(models.electra, dtype=config.dtype)
        for size in sorted(sizes.get("detect", ())):
            points.append(engine.measure_detection(detector, DETECTION_TEXTS, size, config.engine_duration).to_json())
    return points


def run_size(models: ModelPair, config: BenchConfig, workdir: Path, say: Callable[[str], None]) -> SizeResult:
    result = SizeResult(models)
    say(f"{models.size}: served system (t5electra serve, {models.weights})")
    with served(models, config.torch_threads, workdir, "continuous", config.dtype) as (up, address):
        result.startup_s = up.seconds
        result.served = _loads(address, config, say, "served", up.pid)
        if config.overload and "generate" in config.rpcs:
            result.overload = _overload_point(address, config, result.served, say)
        if config.mixed:
            result.mixed["continuous"] = _mixed_phase(address, config, say, "continuous")
            result.mixed["continuous"]["replica_peak_rss_mb"] = replica_peak_rss_mb(up.pid, TEXT_GENERATOR)
    if config.mixed:
        say(f"{models.size}: served system, static T5 scheduler")
        with served(models, config.torch_threads, workdir, "static", config.dtype) as (up, address):
            result.mixed["static"] = _mixed_phase(address, config, say, "static")
            result.mixed["static"]["replica_peak_rss_mb"] = replica_peak_rss_mb(up.pid, TEXT_GENERATOR)

    plain_port = free_port()
    plain = [
        sys.executable,
        "-m",
        "t5electra.tools.bench.plain",
        "--t5",
        models.t5,
        "--electra",
        models.electra,
        "--port",
        str(plain_port),
        "--threads",
        str(config.torch_threads),
        "--dtype",
        config.dtype,
    ]
    say(f"{models.size}: plain grpcio server, one engine call per request")
    with started_process("plain server", plain, "ready", workdir / f"plain-{models.size}.log", {}):
        result.plain = _loads(f"127.0.0.1:{plain_port}", config, say, "plain")

    formed = {rpc: {formed_batch(p) for p in result.served if p["rpc"] == rpc} for rpc in config.rpcs}
    sizes = {rpc: {1, REFERENCE_CONCURRENCY} | formed[rpc] for rpc in config.rpcs}
    say(f"{models.size}: engines in-process at batch sizes {sorted(set().union(*sizes.values()))}")
    result.engine = engine_points(models, config, sizes)
    if config.peers:
        missing = peers.available()
        if missing:
            say(f"{models.size}: peers phase skipped ({missing})")
            result.peers = {"skipped": missing}
        else:
            result.peers = precisions.run_phase(
                models,
                cpu.usable_precisions(config.precisions),
                threads=config.torch_threads,
                duration=config.duration,
                warmup=config.warmup,
                engine_duration=config.engine_duration,
                rounds=config.peer_rounds,
                workdir=workdir,
                say=say,
            )
    return result


def run(config: BenchConfig, workdir: Path, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole benchmark as a JSON-ready dict."""
    workdir.mkdir(parents=True, exist_ok=True)
    pairs = []
    for size in config.sizes:
        if size == "tiny":
            pairs.append(checkpoints.tiny())
        else:
            pairs.append(checkpoints.small(workdir, config.t5_model, config.electra_model))
    started = time.monotonic()
    results = [run_size(pair, config, workdir, say).to_json() for pair in pairs]
    return {
        "machine": machine(),
        "config": asdict(config),
        "reference_concurrency": REFERENCE_CONCURRENCY,
        "seconds": round(time.monotonic() - started, 1),
        "sizes": results,
    }
