"""Runs a whole benchmark: for each model size, the served system (a real
``t5electra serve`` process) and the plain server under the load tester at
each concurrency, then the engines in-process at batch size 1 and at the
batch sizes the server formed. The phases run one after another so that they
never compete for the machine's cores."""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from t5electra.clients.load_report import shown
from t5electra.clients.loadtest import DETECTION_TEXTS, GENERATION_PROMPTS, LoadConfig, run_load
from t5electra.deployments.names import TEXT_GENERATOR
from t5electra.server.domain import GenerationParameters

from . import checkpoints, engine
from .checkpoints import ModelPair
from .figures import REFERENCE_CONCURRENCY, formed_batch, ratios, scheduling_ratios
from .processes import Started, free_port, replica_peak_rss_mb, started_process

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
    # The mixed-length phase: GenerateStream at the reference concurrency,
    # requests wanting SHORT or LONG tokens in turn, then all LONG, under
    # each T5 scheduler.
    mixed: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """About two minutes on a 2-core laptop: tiny models, concurrency 1 and 16."""
        defaults: dict[str, Any] = {
            "sizes": ("tiny",),
            "concurrencies": (1, REFERENCE_CONCURRENCY),
            "duration": 4.0,
            "warmup": 1.0,
            "engine_duration": 2.0,
        }
        return cls(**{**defaults, **overrides})


@dataclass
class SizeResult:
    models: ModelPair
    startup_s: float = 0.0
    served: list[dict[str, Any]] = field(default_factory=list)
    plain: list[dict[str, Any]] = field(default_factory=list)
    engine: list[dict[str, Any]] = field(default_factory=list)
    mixed: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.models.size,
            "models": asdict(self.models),
            "served_startup_s": round(self.startup_s, 1),
            "served": self.served,
            "plain": self.plain,
            "engine": self.engine,
            "mixed": self.mixed,
            "ratios": ratios(self),
            "scheduling": scheduling_ratios(self.mixed),
        }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in ("torch", "transformers", "ray", "grpcio", "t5-electra-serve")},
    }


def _load(load: LoadConfig, say: Callable[[str], None], label: str) -> dict[str, Any]:
    figures = asyncio.run(run_load(load, progress=False)).to_json()
    say(
        f"  {label:<10} {load.rpc:<16} c={load.concurrency:<3} {shown(figures['throughput_rps']):>8} req/s  "
        f"{shown(figures.get('tokens_per_s'), '.0f'):>7} tok/s  p50 {shown(figures['latency_ms']['p50']):>7} ms  "
        f"errors {sum(figures['errors'].values())}  window {figures['window_s']:.1f} s"
        + (" (cut at the cap)" if figures["window_capped"] else "")
    )
    return figures


def _loads(address: str, config: BenchConfig, say: Callable[[str], None], label: str) -> list[dict[str, Any]]:
    return [
        _load(
            LoadConfig(
                address=address,
                rpc=rpc,  # type: ignore[arg-type]
                concurrency=concurrency,
                duration=config.duration,
                warmup=config.warmup,
                timeout=120.0,
                params={} if rpc == "detect" else {"max_new_tokens": config.max_new_tokens},
            ),
            say,
            label,
        )
        for rpc in config.rpcs
        for concurrency in config.concurrencies
    ]


def _exact(tokens: int) -> dict[str, int]:
    return {"max_new_tokens": tokens, "min_new_tokens": tokens}


def _mixed_phase(address: str, config: BenchConfig, say: Callable[[str], None], scheduler: str) -> dict[str, Any]:
    """GenerateStream at the reference concurrency: SHORT and LONG requests
    in turn, then all LONG."""
    base = LoadConfig(
        address=address,
        rpc="generate-stream",
        concurrency=REFERENCE_CONCURRENCY,
        duration=config.duration,
        warmup=config.warmup,
        timeout=120.0,
    )
    return {
        "mixed": _load(replace(base, mix=(_exact(SHORT), _exact(LONG))), say, f"{scheduler[:6]} mix"),
        "all_long": _load(replace(base, params=_exact(LONG)), say, f"{scheduler[:6]} {LONG}"),
    }


def _engine_points(models: ModelPair, config: BenchConfig, sizes: dict[str, set[int]]) -> list[dict[str, Any]]:
    import torch

    from t5electra.server.detector import ReplacementDetector
    from t5electra.server.generator import T5Generator

    torch.set_num_threads(config.torch_threads)
    points = []
    parameters = GenerationParameters(max_new_tokens=config.max_new_tokens)
    if {"generate", "generate-stream"} & set(config.rpcs):
        generator = T5Generator(models.t5)
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
        detector = ReplacementDetector(models.electra)
        for size in sorted(sizes.get("detect", ())):
            points.append(engine.measure_detection(detector, DETECTION_TEXTS, size, config.engine_duration).to_json())
    return points


@contextmanager
def _served(models: ModelPair, config: BenchConfig, workdir: Path, scheduler: str) -> Iterator[tuple[Started, str]]:
    """A ``t5electra serve`` process with ``scheduler`` for T5; yields it and its address."""
    port = free_port()
    env = {
        "T5ELECTRA_PORT": str(port),
        "T5ELECTRA_HTTP_PORT": str(free_port()),
        "T5ELECTRA_METRICS_PORT": str(free_port()),
        "T5ELECTRA_T5__MODEL": models.t5,
        "T5ELECTRA_ELECTRA__MODEL": models.electra,
        "T5ELECTRA_T5__TORCH_THREADS": str(config.torch_threads),
        "T5ELECTRA_ELECTRA__TORCH_THREADS": str(config.torch_threads),
        "T5ELECTRA_T5__SCHEDULER": scheduler,
    }
    serve = [sys.executable, "-m", "t5electra.server.cli", "serve"]
    log = workdir / f"serve-{models.size}-{scheduler}.log"
    with started_process("t5electra serve", serve, "serving on", log, env) as up:
        yield up, f"127.0.0.1:{port}"


def run_size(models: ModelPair, config: BenchConfig, workdir: Path, say: Callable[[str], None]) -> SizeResult:
    result = SizeResult(models)
    say(f"{models.size}: served system (t5electra serve, {models.weights})")
    with _served(models, config, workdir, "continuous") as (up, address):
        result.startup_s = up.seconds
        result.served = _loads(address, config, say, "served")
        if config.mixed:
            result.mixed["continuous"] = _mixed_phase(address, config, say, "continuous")
            result.mixed["continuous"]["replica_peak_rss_mb"] = replica_peak_rss_mb(up.pid, TEXT_GENERATOR)
    if config.mixed:
        say(f"{models.size}: served system, static T5 scheduler")
        with _served(models, config, workdir, "static") as (up, address):
            result.mixed["static"] = _mixed_phase(address, config, say, "static")
            result.mixed["static"]["replica_peak_rss_mb"] = replica_peak_rss_mb(up.pid, TEXT_GENERATOR)

    plain_port = free_port()
    plain = [
        sys.executable,
        "-m",
        "t5electra.server.bench.plain",
        "--t5",
        models.t5,
        "--electra",
        models.electra,
        "--port",
        str(plain_port),
        "--threads",
        str(config.torch_threads),
    ]
    say(f"{models.size}: plain grpcio server, one engine call per request")
    with started_process("plain server", plain, "ready", workdir / f"plain-{models.size}.log", {}):
        result.plain = _loads(f"127.0.0.1:{plain_port}", config, say, "plain")

    sizes = {rpc: {1} | {formed_batch(p) for p in result.served if p["rpc"] == rpc} for rpc in config.rpcs}
    say(f"{models.size}: engines in-process at batch sizes {sorted(set().union(*sizes.values()))}")
    result.engine = _engine_points(models, config, sizes)
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
