"""Ray Serve deployments that own a model each and batch its requests.

They wrap the engines and know nothing of tokenizers or protos: requests and
results are the domain's dataclasses. Model work runs on one worker thread
per replica so that the replica's event loop keeps accepting requests (and
noticing cancellations) while a batch computes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from ray import serve
from ray.serve.metrics import Counter, Histogram

from t5electra.server.detector import PreparedDetection, ReplacementDetector
from t5electra.server.domain import (
    BatchTiming,
    Detection,
    DetectionRequest,
    GenerationRequest,
    GenerationResult,
    StreamPiece,
)
from t5electra.server.generator import StepEvent, T5Generator
from t5electra.server.settings import Limits, ModelDeployment

_MS_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
_BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128]


@dataclass
class Ticket:
    """One request's place in a batch. ``cancelled`` is set by the request's
    own coroutine when its caller goes away, and read between decoding steps."""

    prepared: Any
    arrived: float = field(default_factory=time.perf_counter)
    cancelled: bool = False


class _BatchMetrics:
    """Queue time, batch size and token counts of one model deployment."""

    def __init__(self, model: str) -> None:
        tags = ("model",)
        self._tags = {"model": model}
        self.queue_ms = Histogram(
            "t5electra_queue_ms", "Time from arrival at a replica to the start of its batch", _MS_BUCKETS, tags
        )
        self.batch_size = Histogram("t5electra_batch_size", "Requests per executed batch", _BATCH_BUCKETS, tags)
        self.tokens = Counter("t5electra_tokens", "Tokens processed", ("model", "direction"))
        for metric in (self.queue_ms, self.batch_size):
            metric.set_default_tags(dict(self._tags))  # Serve adds its tags to the dict it gets

    def batch_started(self, tickets: list[Ticket], started: float) -> None:
        self.batch_size.observe(len(tickets))
        for ticket in tickets:
            self.queue_ms.observe((started - ticket.arrived) * 1000)

    def count_tokens(self, tokens_in: int, tokens_out: int) -> None:
        if tokens_in:
            self.tokens.inc(tokens_in, tags={**self._tags, "direction": "in"})
        if tokens_out:
            self.tokens.inc(tokens_out, tags={**self._tags, "direction": "out"})


def _timing(ticket: Ticket, started: float, batch_size: int) -> BatchTiming:
    now = time.perf_counter()
    return BatchTiming(
        queue_ms=(started - ticket.arrived) * 1000, inference_ms=(now - started) * 1000, batch_size=batch_size
    )


def _batching(settings: ModelDeployment):
    return serve.batch(
        max_batch_size=settings.max_batch_size,
        batch_wait_timeout_s=settings.batch_wait_timeout_s,
        max_concurrent_batches=settings.max_concurrent_batches,
    )


@serve.deployment
class TextGenerator:
    """T5 replica: Generate and GenerateStream requests batch together, each
    batch decoded a token per step."""

    def __init__(self, settings: ModelDeployment, limits: Limits) -> None:
        self._engine = T5Generator(settings.model, device=settings.device, dtype=settings.dtype, limits=limits)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="t5")
        self._metrics = _BatchMetrics(self._engine.name)
        # Applied here rather than as a class decorator so that batch sizes
        # come from settings.
        self._batched = _batching(settings)(self._decode)
        self._decoding = 0
        self._steps = 0

    def info(self) -> dict[str, Any]:
        """Which model this replica serves, where, how many requests its
        batches are decoding right now (cancelled ones leave within a step),
        and how many decoding steps it has run."""
        return {
            "model": self._engine.name,
            "device": str(self._engine.device),
            "dtype": str(self._engine.dtype),
            "decoding": self._decoding,
            "steps": self._steps,
        }

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        ticket = Ticket(self._engine.prepare(request))
        result = None
        try:
            # Iterated to its end (which follows the result at once) so that
            # Serve's batch queue never holds a future nobody awaits.
            async for event in self._batched(ticket):
                if event is not None and event.result is not None:
                    result = event.result
        finally:
            ticket.cancelled = True
        if result is None:
            raise RuntimeError(f"request {request.request_id}: batch ended without a result")
        return result

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[StreamPiece]:
        ticket = Ticket(self._engine.prepare(request, stream=True))
        try:
            async for event in self._batched(ticket):
                if event is not None and event.piece is not None:
                    yield event.piece
        finally:
            # Reached on completion, and also when the caller cancels or
            # disconnects: the session drops the request at its next step.
            ticket.cancelled = True

    async def _decode(self, tickets: list[Ticket]) -> AsyncIterator[list[Any]]:
        """One decoding session per batch; yields, for every ticket and every
        step, its event, or None when it got nothing. A ticket whose result
        came in a step gets StopIteration (Serve's signal to end that caller's
        stream) in an extra yield right after, not one step later."""
        loop = asyncio.get_running_loop()
        session = self._engine.session([t.prepared for t in tickets])
        started = time.perf_counter()
        self._metrics.batch_started(tickets, started)
        finished = [False] * len(tickets)
        self._decoding += len(tickets)
        try:
            while not session.done:
                for index, ticket in enumerate(tickets):
                    if ticket.cancelled and not finished[index]:
                        session.cancel(index)
                        finished[index] = True
                        self._decoding -= 1
                events: list[StepEvent] = await loop.run_in_executor(self._executor, session.step)
                self._steps += 1
                out: list[Any] = [StopIteration if done else None for done in finished]
                ended = False
                for event in events:
                    out[event.index] = self._stamp(event, tickets[event.index], started, len(tickets))
                    if event.result is not None:
                        finished[event.index] = True
                        self._decoding -= 1
                        ended = True
                yield out
                if ended:
                    yield [StopIteration if done else None for done in finished]
        finally:
            self._decoding -= finished.count(False)

    def _stamp(self, event: StepEvent, ticket: Ticket, started: float, batch_size: int) -> StepEvent:
        if event.result is None:
            return event
        timing = _timing(ticket, started, batch_size)
        self._metrics.count_tokens(event.result.input_tokens, event.result.output_tokens)
        piece = replace(event.piece, timing=timing) if event.piece is not None else None
        return replace(event, piece=piece, result=replace(event.result, timing=timing))


@serve.deployment
class Detector:
    """ELECTRA replica: DetectReplacements requests scored a batch per forward pass."""

    def __init__(self, settings: ModelDeployment, limits: Limits) -> None:
        self._engine = ReplacementDetector(settings.model, device=settings.device, dtype=settings.dtype, limits=limits)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="electra")
        self._metrics = _BatchMetrics(self._engine.name)
        self._batched = _batching(settings)(self._score)

    def info(self) -> dict[str, str]:
        return {"model": self._engine.name, "device": str(self._engine.device), "dtype": str(self._engine.dtype)}

    async def detect(self, request: DetectionRequest) -> Detection:
        return await self._batched(Ticket(self._engine.prepare(request)))

    async def _score(self, tickets: list[Ticket]) -> list[Detection]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self._metrics.batch_started(tickets, started)
        prepared: list[PreparedDetection] = [t.prepared for t in tickets]
        detections = await loop.run_in_executor(self._executor, self._engine.detect, prepared)
        self._metrics.count_tokens(sum(d.input_tokens for d in detections), 0)
        return [replace(d, timing=_timing(t, started, len(tickets))) for d, t in zip(detections, tickets, strict=True)]
