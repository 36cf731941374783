"""Load generator for a t5electra server: closed loop (fixed concurrency) or
open loop (Poisson arrivals at a fixed rate), for Generate, GenerateStream
and DetectReplacements.

Figures follow ghz's conventions: latency is per request from send to the
last byte received (the whole stream for GenerateStream), errors are
counted by status code and never dropped, throughput is completed requests
(successes and errors) per second of the measured window, and requests
that start during the warm-up are excluded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .aio import AsyncClient
from .options import NO_RETRY
from .results import T5ElectraError

Rpc = Literal["generate", "generate-stream", "detect"]

GENERATION_PROMPTS = (
    "reverse words: apple river stone",
    "sort numbers: 42 7 19 88 3",
    "translate English to German: the small dog sleeps today",
    "count words: tiger zebra falcon",
    "reverse words: candle forest mirror planet rocket",
    "translate English to German: the old teacher reads again",
    "sort numbers: 5 61 23",
    "translate English to German: the happy child plays",
)
DETECTION_TEXTS = (
    "Return the value of the attribute unless it is missing.",
    "The callable is invoked with a single argument for each element of the list.",
    "Raise an exception when the file cannot be opened for reading.",
    "This module provides functions for working with dates and times in a portable way.",
    "If the optional argument is given, it is used as the default value.",
)


@dataclass(frozen=True)
class LoadConfig:
    address: str
    rpc: Rpc = "generate"
    concurrency: int = 4
    rate: float | None = None
    duration: float | None = 10.0
    requests: int | None = None
    warmup: float = 2.0
    timeout: float = 30.0
    prompts: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    # DetectReplacements options (suggestions, word_scoring, offset_unit).
    detect_options: dict[str, Any] = field(default_factory=dict)
    # Parameter sets that requests take in turn on top of ``params`` (e.g.
    # short and long answers); figures are also reported per set.
    mix: tuple[dict[str, Any], ...] = ()

    def texts(self) -> tuple[str, ...]:
        if self.prompts:
            return self.prompts
        return DETECTION_TEXTS if self.rpc == "detect" else GENERATION_PROMPTS


@dataclass(frozen=True)
class Sample:
    """One finished request: when it was sent and done (seconds since the
    start of the run), its status, and for streams the time to the first
    message (first token) and the gaps between pieces of text."""

    sent: float
    done: float
    code: str
    ttft: float | None = None
    gaps: tuple[float, ...] = ()
    batch_size: int | None = None
    tokens_out: int = 0
    group: int = 0
    server_ms: dict[str, float] = field(default_factory=dict)

    @property
    def latency(self) -> float:
        return self.done - self.sent

    def hops_ms(self) -> dict[str, float] | None:
        """This request's time per hop, from the server's ``server-timing``
        trailer and the latency seen here; None without that trailer."""
        s = self.server_ms
        if not {"ingress", "model-call", "replica", "queue", "inference"} <= s.keys():
            return None
        return {
            "proxy": self.latency * 1000 - s["ingress"],
            "ingress": s["ingress"] - s["model-call"],
            "model call": s["model-call"] - s["replica"],
            "replica": s["replica"] - s["queue"] - s["inference"],
            "queue": s["queue"],
            "engine": s["inference"],
        }


HOPS_EXPLAINED = {
    "proxy": "client and Ray's gRPC proxy, to the ingress and back",
    "ingress": "validation, auth, conversion, metrics and log line",
    "model call": "Ray's router and the call to the model replica and back",
    "replica": "tokenizing and answering inside the model replica",
    "queue": "waiting in the replica for a batch (T5: a step to join)",
    "engine": "the model's work for this request, shared with its batch",
}


def server_timing(header: str | None) -> dict[str, float]:
    """``name;dur=1.5, other;dur=2`` as {name: 1.5, other: 2.0}."""
    spans = {}
    for part in (header or "").split(","):
        name, _, rest = part.strip().partition(";dur=")
        if name and rest:
            spans[name] = float(rest)
    return spans


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def _summary_ms(values: Sequence[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "min": min(ms, default=0.0),
        "mean": sum(ms) / len(ms) if ms else 0.0,
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms, default=0.0),
    }


@dataclass
class LoadReport:
    config: LoadConfig
    samples: list[Sample]
    window: float
    unfinished: int = 0

    def to_json(self) -> dict[str, Any]:
        ok = [s for s in self.samples if s.code == "OK"]
        errors = Counter(s.code for s in self.samples if s.code != "OK")
        figures: dict[str, Any] = {
            "rpc": self.config.rpc,
            "address": self.config.address,
            "mode": "open" if self.config.rate else "closed",
            "concurrency": self.config.concurrency,
            "rate": self.config.rate,
            "window_s": round(self.window, 3),
            "requests": len(self.samples),
            "successes": len(ok),
            "errors": dict(sorted(errors.items())),
            "unfinished": self.unfinished,
            "throughput_rps": len(self.samples) / self.window if self.window > 0 else 0.0,
            "latency_ms": _summary_ms([s.latency for s in ok]),
        }
        if self.config.rpc != "detect":
            figures["tokens_per_s"] = sum(s.tokens_out for s in ok) / self.window if self.window > 0 else 0.0
        batch_sizes = [s.batch_size for s in ok if s.batch_size]
        if batch_sizes:
            figures["batch_size"] = {"mean": sum(batch_sizes) / len(batch_sizes), "max": max(batch_sizes)}
        if self.config.rpc == "generate-stream":
            figures["ttft_ms"] = _summary_ms([s.ttft for s in ok if s.ttft is not None])
            figures["inter_piece_ms"] = _summary_ms([g for s in ok for g in s.gaps])
        hops = [h for s in ok if self.config.rpc != "generate-stream" and (h := s.hops_ms()) is not None]
        if hops:
            figures["hops_ms"] = {name: sum(h[name] for h in hops) / len(hops) for name in HOPS_EXPLAINED}
        if self.config.mix:
            figures["groups"] = [self._group(i, ok) for i in range(len(self.config.mix))]
        return figures

    def _group(self, index: int, ok: list[Sample]) -> dict[str, Any]:
        mine = [s for s in ok if s.group == index]
        group: dict[str, Any] = {
            "params": self.config.mix[index],
            "successes": len(mine),
            "tokens_per_s": sum(s.tokens_out for s in mine) / self.window if self.window > 0 else 0.0,
            "latency_ms": _summary_ms([s.latency for s in mine]),
        }
        if self.config.rpc == "generate-stream":
            group["ttft_ms"] = _summary_ms([s.ttft for s in mine if s.ttft is not None])
        return group

    def table(self) -> str:
        figures = self.to_json()
        lines = [
            f"{figures['rpc']} against {figures['address']} ({figures['mode']} loop, "
            + (f"rate {figures['rate']}/s" if figures["rate"] else f"concurrency {figures['concurrency']}")
            + f", {figures['window_s']:.1f}s measured)",
            f"  requests      {figures['requests']:>8}   successes {figures['successes']}",
            f"  throughput    {figures['throughput_rps']:>8.1f} req/s"
            + (f", {figures['tokens_per_s']:.0f} tokens/s out" if "tokens_per_s" in figures else ""),
        ]
        for code, count in figures["errors"].items():
            lines.append(f"  error {code:<22} {count}")
        if figures["unfinished"]:
            lines.append(f"  unfinished at the end: {figures['unfinished']}")
        header = f"  {'':<14}{'min':>9}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
        lines.append(header)
        rows = [("latency ms", figures["latency_ms"])]
        if "ttft_ms" in figures:
            rows += [("ttft ms", figures["ttft_ms"]), ("inter-piece ms", figures["inter_piece_ms"])]
        for name, stats in rows:
            lines.append(f"  {name:<14}" + "".join(f"{stats[k]:>9.1f}" for k in ("min", "p50", "p90", "p99", "max")))
        if "batch_size" in figures:
            lines.append(
                f"  batch size    mean {figures['batch_size']['mean']:.1f}, max {figures['batch_size']['max']}"
            )
        if "hops_ms" in figures:
            lines.append("  mean ms per hop  " + ", ".join(f"{k} {v:.1f}" for k, v in figures["hops_ms"].items()))
        for group in figures.get("groups", []):
            ttft = f", ttft p50 {group['ttft_ms']['p50']:.1f} ms" if "ttft_ms" in group else ""
            lines.append(
                f"  {json.dumps(group['params'])}: {group['successes']} ok, {group['tokens_per_s']:.0f} tokens/s, "
                f"p50 {group['latency_ms']['p50']:.1f} ms{ttft}"
            )
        return "\n".join(lines)

    def plot(self, path: Path) -> None:
        """Latency histogram and throughput over time, side by side."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ok = [s for s in self.samples if s.code == "OK"]
        figure, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4))
        latency.hist([s.latency * 1000 for s in ok], bins=40, color="#4477aa")
        latency.set_xlabel("latency (ms)")
        latency.set_ylabel("requests")
        latency.set_title(f"{self.config.rpc}: latency of {len(ok)} successful requests")
        start = min((s.done for s in self.samples), default=0.0)
        seconds = Counter(int(s.done - start) for s in self.samples)
        errors = Counter(int(s.done - start) for s in self.samples if s.code != "OK")
        xs = list(range(max(seconds, default=0) + 1))
        throughput.plot(xs, [seconds.get(x, 0) for x in xs], label="completed/s", color="#4477aa")
        throughput.plot(xs, [errors.get(x, 0) for x in xs], label="errors/s", color="#cc6677")
        throughput.set_xlabel("second of the measured window")
        throughput.set_ylabel("requests per second")
        throughput.legend()
        throughput.set_title("throughput over time")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)


class _Progress:
    """One self-rewriting line on stderr: elapsed, completed, rate, errors."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def show(self, elapsed: float, total: float | None, done: int, errors: int, recent_rps: float) -> None:
        if not self.enabled:
            return
        if total:
            filled = int(30 * min(1.0, elapsed / total))
            bar = "[" + "#" * filled + "." * (30 - filled) + "]"
        else:
            bar = ""
        sys.stderr.write(f"\r{bar} {elapsed:6.1f}s  {done} done  {recent_rps:7.1f} req/s  {errors} errors ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


async def send_one(client: AsyncClient, config: LoadConfig, text: str, origin: float, group: int = 0) -> Sample:
    sent = time.perf_counter() - origin
    ttft, gaps, batch, tokens, metadata = None, [], None, 0, {}
    params = {**config.params, **(config.mix[group] if config.mix else {})}
    try:
        if config.rpc == "detect":
            detection = await client.detect_replacements(text, timeout=config.timeout, **config.detect_options)
            metadata = detection.metadata
        elif config.rpc == "generate":
            generation = await client.generate(text, timeout=config.timeout, **params)
            metadata = generation.metadata
            tokens = generation.output_tokens
        else:
            stream = client.generate_stream(text, timeout=config.timeout, **params)
            last = None
            async for _ in stream:
                now = time.perf_counter() - origin
                if last is not None:
                    gaps.append(now - last)
                last = now
            if stream.first_token_at is not None:
                ttft = stream.first_token_at - origin - sent
            if stream.end is not None:
                metadata = stream.end.metadata
                tokens = stream.end.generated_tokens
        code = "OK"
        batch = int(metadata.get("batch-size", 0)) or None
    except T5ElectraError as error:
        code = error.code.name
    done = time.perf_counter() - origin
    return Sample(
        sent, done, code, ttft, tuple(gaps), batch, tokens, group, server_timing(metadata.get("server-timing"))
    )


async def run_load(config: LoadConfig, *, progress: bool = True) -> LoadReport:
    """Runs the load and returns every request sent after the warm-up."""
    if (config.duration is None) == (config.requests is None):
        raise ValueError("give exactly one of duration and requests")
    texts = config.texts()
    rng = random.Random(0)
    samples: list[Sample] = []
    bar = _Progress(progress)
    claimed = 0
    async with AsyncClient(config.address, timeout=config.timeout, retry=NO_RETRY) as client:
        origin = time.perf_counter()
        stop_at = None if config.duration is None else config.warmup + config.duration

        def claim() -> bool:
            """Whether another request may start now; counts it if measured."""
            nonlocal claimed
            now = time.perf_counter() - origin
            if now < config.warmup:
                return True
            if stop_at is not None:
                return now < stop_at
            if claimed >= config.requests:
                return False
            claimed += 1
            return True

        turns = itertools.count()

        async def record(text: str) -> None:
            group = next(turns) % len(config.mix) if config.mix else 0
            sample = await send_one(client, config, text, origin, group)
            if sample.sent >= config.warmup:
                samples.append(sample)

        async def closed_worker() -> None:
            while claim():
                await record(rng.choice(texts))

        async def report() -> None:
            while True:
                await asyncio.sleep(0.5)
                elapsed = time.perf_counter() - origin
                recent = sum(s.done > elapsed - 2 for s in samples)
                bar.show(elapsed, stop_at, len(samples), sum(s.code != "OK" for s in samples), recent / 2)

        reporter = asyncio.create_task(report())
        in_flight: set[asyncio.Task] = set()
        unfinished = 0
        try:
            if config.rate:
                while claim():
                    task = asyncio.create_task(record(rng.choice(texts)))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    await asyncio.sleep(rng.expovariate(config.rate))
                if in_flight:
                    _, still = await asyncio.wait(set(in_flight), timeout=config.timeout)
                    unfinished = len(still)
                    for task in still:
                        task.cancel()
            else:
                await asyncio.gather(*(closed_worker() for _ in range(config.concurrency)))
        finally:
            reporter.cancel()
            bar.close()
    end = max((s.done for s in samples), default=config.warmup)
    return LoadReport(config, sorted(samples, key=lambda s: s.sent), max(1e-9, end - config.warmup), unfinished)


def write_json(report: LoadReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
