"""Load generator for a t5electra server: closed loop (fixed concurrency) or
open loop (Poisson arrivals at a fixed rate), for Generate, GenerateStream
and DetectReplacements, and the Open Inference Protocol's ModelInfer on
either model (one text per request), to compare the two protocols.

Figures follow ghz's conventions: latency is per request from send to the
last byte received (the whole stream for GenerateStream), errors are
counted by status code and never dropped, and requests that start during
the warm-up are excluded from latencies. Rates count what completed inside
the measured window, from the end of the warm-up to when sending stopped,
whenever the request was sent: counting only requests sent after the
warm-up would miss the window's first latency's worth of completions, which
under long latencies (64 callers) understates throughput. Goodput counts the
successes among them, which arrived within their deadline (the client's
timeout) by construction.

A measured window ends when its duration has passed *and* enough requests
sent after the warm-up have succeeded (one per caller by default, and one of
each ``mix`` set), so that a slow or busy machine gives a longer window
instead of an empty one, and a burst of failures (a server still warming up,
refusals) is not taken for a measurement; it is cut at ``max_window_factor``
times the duration at the latest, and the report says so, with the errors
that kept the window open.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from .aio import AsyncClient
from .load_report import LoadReport, Sample, server_timing
from .options import NO_RETRY
from .results import T5ElectraError

Rpc = Literal["generate", "generate-stream", "detect", "model-infer-t5", "model-infer-electra"]
RPCS: tuple[str, ...] = Rpc.__args__  # type: ignore[attr-defined]
INFERENCE_MODELS = {"model-infer-t5": "t5", "model-infer-electra": "electra"}
"""The Open Inference Protocol's model names (the server's defaults) behind each ModelInfer choice."""

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
    # A duration-bound window goes on past its duration until this many
    # measured requests have succeeded (and one of each ``mix`` set); None:
    # one per closed-loop caller, one for an open loop.
    min_succeeded: int | None = None
    max_window_factor: float = 10.0
    # Send no project metadata, only the gRPC deadline, as a plain gRPC
    # client (grpcurl, another language's stubs, a mesh sidecar) would.
    plain: bool = False

    def wanted_successes(self) -> int:
        if self.min_succeeded is not None:
            return self.min_succeeded
        return 1 if self.rate else self.concurrency

    def texts(self) -> tuple[str, ...]:
        if self.prompts:
            return self.prompts
        return DETECTION_TEXTS if self.rpc in ("detect", "model-infer-electra") else GENERATION_PROMPTS


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
        elif config.rpc in INFERENCE_MODELS:
            options = config.detect_options if config.rpc == "model-infer-electra" else params
            inference = await client.model_infer(
                INFERENCE_MODELS[config.rpc], [text], timeout=config.timeout, **options
            )
            metadata = inference.metadata
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
    capped = False
    stopped: float | None = None
    warm: list[Sample] = []
    succeeded_per_group = [0] * max(1, len(config.mix))
    async with AsyncClient(config.address, timeout=config.timeout, retry=NO_RETRY, plain=config.plain) as client:
        origin = time.perf_counter()
        stop_at = None if config.duration is None else config.warmup + config.duration
        cap_at = None if config.duration is None else config.warmup + config.duration * config.max_window_factor

        def enough() -> bool:
            return sum(succeeded_per_group) >= config.wanted_successes() and min(succeeded_per_group) > 0

        def claim() -> bool:
            """Whether another request may start now; counts it if measured."""
            nonlocal claimed, capped, stopped
            now = time.perf_counter() - origin
            if now < config.warmup:
                return True
            if stop_at is not None and cap_at is not None:
                if stopped is not None:
                    return False
                if now < stop_at:
                    return True
                if enough():
                    stopped = now
                    return False
                capped = now >= cap_at
                if capped:
                    stopped = now
                return not capped
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
                succeeded_per_group[group] += sample.code == "OK"
            else:
                warm.append(sample)

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
    ordered = sorted(samples, key=lambda s: s.sent)
    if stopped is None:  # a count of requests: the window runs to the last answer
        end = max((s.done for s in samples), default=config.warmup)
        return LoadReport(config, ordered, max(0.0, end - config.warmup), unfinished, capped)
    counted = [s for s in (*warm, *samples) if config.warmup <= s.done <= stopped]
    return LoadReport(config, ordered, stopped - config.warmup, unfinished, capped, counted)
