"""Runs a load against a t5electra server: closed loop (fixed concurrency)
or open loop (Poisson arrivals at a fixed rate), for the RPCs of
``workload.py``.

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
from collections.abc import Awaitable, Callable

from t5electra.clients import NO_RETRY, AsyncClient, T5ElectraError

from .report import LoadReport, Sample, server_timing
from .workload import INFERENCE_MODELS, LoadConfig


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


class _Window:
    """Whether another request may start, and what came back: a window
    bound by duration closes once the duration has passed and enough
    measured requests succeeded, or at its cap; one bound by a count of
    requests closes at the count."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.origin = time.perf_counter()
        self.samples: list[Sample] = []
        self.warm: list[Sample] = []
        self.succeeded = [0] * max(1, len(config.mix))
        self.claimed = 0
        self.capped = False
        self.stopped: float | None = None
        duration = config.duration
        self.stop_at = None if duration is None else config.warmup + duration
        self.cap_at = None if duration is None else config.warmup + duration * config.max_window_factor

    def elapsed(self) -> float:
        return time.perf_counter() - self.origin

    def _enough(self) -> bool:
        return sum(self.succeeded) >= self.config.wanted_successes() and min(self.succeeded) > 0

    def claim(self) -> bool:
        """Whether another request may start now; counts it if measured."""
        now = self.elapsed()
        if now < self.config.warmup:
            return True
        if self.stop_at is not None and self.cap_at is not None:
            if self.stopped is not None:
                return False
            if now < self.stop_at:
                return True
            if self._enough():
                self.stopped = now
                return False
            self.capped = now >= self.cap_at
            if self.capped:
                self.stopped = now
            return not self.capped
        if self.config.requests is not None and self.claimed >= self.config.requests:
            return False
        self.claimed += 1
        return True

    def keep(self, sample: Sample) -> None:
        if sample.sent >= self.config.warmup:
            self.samples.append(sample)
            self.succeeded[sample.group] += sample.code == "OK"
        else:
            self.warm.append(sample)

    def report(self, unfinished: int) -> LoadReport:
        config, samples = self.config, self.samples
        ordered = sorted(samples, key=lambda s: s.sent)
        if self.stopped is None:  # a count of requests: the window runs to the last answer
            end = max((s.done for s in samples), default=config.warmup)
            return LoadReport(config, ordered, max(0.0, end - config.warmup), unfinished, self.capped)
        counted = [s for s in (*self.warm, *samples) if config.warmup <= s.done <= self.stopped]
        return LoadReport(config, ordered, self.stopped - config.warmup, unfinished, self.capped, counted)


async def _show_progress(window: _Window, bar: _Progress) -> None:
    while True:
        await asyncio.sleep(0.5)
        elapsed, samples = window.elapsed(), window.samples
        recent = sum(s.done > elapsed - 2 for s in samples)
        bar.show(elapsed, window.stop_at, len(samples), sum(s.code != "OK" for s in samples), recent / 2)


async def _open_loop(
    window: _Window, send: Callable[[str], Awaitable[None]], rng: random.Random, texts: tuple[str, ...], rate: float
) -> int:
    """Poisson arrivals at the configured rate; returns how many requests
    were still unanswered a timeout after sending stopped (cancelled)."""
    in_flight: set[asyncio.Task] = set()
    while window.claim():
        task = asyncio.create_task(send(rng.choice(texts)))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        await asyncio.sleep(rng.expovariate(rate))
    if not in_flight:
        return 0
    _, still = await asyncio.wait(set(in_flight), timeout=window.config.timeout)
    for task in still:
        task.cancel()
    return len(still)


async def run_load(config: LoadConfig, *, progress: bool = True) -> LoadReport:
    """Runs the load and returns every request sent after the warm-up."""
    if (config.duration is None) == (config.requests is None):
        raise ValueError("give exactly one of duration and requests")
    texts = config.texts()
    rng = random.Random(0)
    bar = _Progress(progress)
    turns = itertools.count()
    unfinished = 0
    async with AsyncClient(config.address, timeout=config.timeout, retry=NO_RETRY, plain=config.plain) as client:
        window = _Window(config)

        async def send(text: str) -> None:
            group = next(turns) % len(config.mix) if config.mix else 0
            window.keep(await send_one(client, config, text, window.origin, group))

        async def caller() -> None:
            while window.claim():
                await send(rng.choice(texts))

        reporter = asyncio.create_task(_show_progress(window, bar))
        try:
            if config.rate:
                unfinished = await _open_loop(window, send, rng, texts, config.rate)
            else:
                await asyncio.gather(*(caller() for _ in range(config.concurrency)))
        finally:
            reporter.cancel()
            bar.close()
    return window.report(unfinished)
