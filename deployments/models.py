"""Ray Serve deployments that own a model each and batch its requests.

They wrap the engines and know nothing of tokenizers or protos: requests and
results are the domain's dataclasses. Requests come from the ingress, which
checked their fields, so the engines only count tokens. Model work runs on a
thread of its own per replica so that the replica's event loop keeps
accepting requests (and noticing cancellations) while the model computes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from ray import serve
from ray.serve.metrics import Counter, Histogram

from t5electra.deployments import names
from t5electra.deployments.batcher import Batch, DynamicBatcher
from t5electra.deployments.decode_loop import DecodeLoop, StepReport
from t5electra.server.deployment_settings import ElectraSettings, ModelSettings, T5Settings
from t5electra.server.detector import PreparedDetection, ReplacementDetector
from t5electra.server.domain import (
    BatchTiming,
    Detection,
    DetectionRequest,
    GenerationRequest,
    GenerationResult,
    ModelDescription,
    StreamPiece,
    Tokenization,
)
from t5electra.server.generator import T5Generator
from t5electra.server.session import StepEvent
from t5electra.server.settings import Limits

_MS_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
_BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128]


@dataclass
class Ticket:
    """One request's prepared input and arrival time at the replica."""

    prepared: Any
    arrived: float = field(default_factory=time.perf_counter)


class _BatchMetrics:
    """Queue time, batch size and token counts of one model deployment."""

    def __init__(self, model: str) -> None:
        tags = ("model",)
        self._tags = {"model": model}
        self.queue_ms = Histogram(
            "t5electra_queue_ms", "Time from arrival at a replica to the start of its batch", _MS_BUCKETS, tags
        )
        self.batch_size = Histogram(
            "t5electra_batch_size", "Requests per executed batch (T5: rows per decoding step)", _BATCH_BUCKETS, tags
        )
        self.tokens = Counter("t5electra_tokens", "Tokens processed", ("model", "direction"))
        for metric in (self.queue_ms, self.batch_size):
            metric.set_default_tags(dict(self._tags))  # Serve adds its tags to the dict it gets

    def step(self, report: StepReport) -> None:
        """A decoding step: its rows, and the queue time of requests that joined."""
        self.batch_size.observe(report.rows)
        for queue_ms in report.admitted_queue_ms:
            self.queue_ms.observe(queue_ms)

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


def _describe(engine: T5Generator | ReplacementDetector) -> dict[str, Any]:
    """What every replica's ``info()`` reports: model, placement, process."""
    return {
        "model": engine.name,
        "device": str(engine.device),
        "dtype": engine.precision,
        "torch_threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }


def _set_threads(settings: ModelSettings) -> None:
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)


def _batcher(settings: ElectraSettings, handler: Callable[[Batch[Ticket]], Awaitable[None]]) -> DynamicBatcher[Ticket]:
    return DynamicBatcher(
        handler,
        max_batch_size=settings.max_batch_size,
        wait_timeout_s=settings.batch_wait_timeout_s,
        max_concurrent_batches=settings.max_concurrent_batches,
        cost=lambda ticket: ticket.prepared.tokens,
        max_batch_cost=settings.max_batch_tokens,
    )


@serve.deployment(name=names.TEXT_GENERATOR)
class TextGeneratorDeployment:
    """T5 replica: Generate and GenerateStream requests decode together in
    one loop (see ``decode_loop.py``), a token per step."""

    def __init__(self, settings: T5Settings, limits: Limits) -> None:
        _set_threads(settings)
        self._engine = T5Generator(settings.model, device=settings.device, dtype=settings.dtype, limits=limits)
        self._metrics = _BatchMetrics(self._engine.name)
        self._stream_interval_s = settings.stream_interval_s
        self._loop = DecodeLoop(
            self._engine.session,
            max_rows=settings.max_batch_size,
            policy=settings.scheduler,
            idle_wait_s=settings.batch_wait_timeout_s,
            on_step=self._metrics.step,
        )

    def info(self) -> dict[str, Any]:
        """Which model this replica serves, where, in which process, how many
        requests it is decoding right now (cancelled ones leave within a
        step), and how many decoding steps it has run."""
        return {**_describe(self._engine), "decoding": self._loop.decoding, "steps": self._loop.steps}

    def describe(self) -> ModelDescription:
        return self._engine.describe()

    def tokenize(self, text: str) -> Tokenization:
        return self._engine.tokenize(text)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        entered = time.perf_counter()
        event, timing = await self._loop.call(self._engine.prepare(request, checked=True))
        return self._stamp(event, timing, entered).result

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[StreamPiece]:
        # Leaving this generator early (the caller cancelled or disconnected)
        # cancels the request; its row leaves the batch at the next step.
        entered = time.perf_counter()
        held: list[StreamPiece] = []
        sent = None
        async for events in self._loop.stream(self._engine.prepare(request, stream=True, checked=True)):
            held += [self._stamp(event, timing, entered).piece for event, timing in events if event.piece is not None]
            now = time.perf_counter()
            # The first and the last piece leave at once; in between, pieces
            # made within stream_interval_s of the last message (or waiting
            # while the ingress took it) travel together as one message.
            if held and (sent is None or held[-1].is_last or now - sent >= self._stream_interval_s):
                yield StreamPiece.joined(held)
                held, sent = [], now

    def _stamp(self, event: StepEvent, timing: BatchTiming | None, entered: float) -> StepEvent:
        if event.result is None or timing is None:
            return event
        timing = replace(timing, replica_ms=(time.perf_counter() - entered) * 1000)
        self._metrics.count_tokens(event.result.input_tokens, event.result.output_tokens)
        piece = replace(event.piece, timing=timing) if event.piece is not None else None
        return replace(event, piece=piece, result=replace(event.result, timing=timing))


@serve.deployment(name=names.DETECTOR)
class DetectorDeployment:
    """ELECTRA replica: DetectReplacements requests scored a batch per forward pass."""

    def __init__(self, settings: ElectraSettings, limits: Limits) -> None:
        _set_threads(settings)
        self._engine = ReplacementDetector(
            settings.model,
            device=settings.device,
            dtype=settings.dtype,
            limits=limits,
            generator=settings.generator_model,
            max_batch_tokens=settings.max_batch_tokens,
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="electra")
        self._metrics = _BatchMetrics(self._engine.name)
        self._batcher = _batcher(settings, self._score)

    def info(self) -> dict[str, Any]:
        return _describe(self._engine)

    def describe(self) -> ModelDescription:
        return self._engine.describe()

    def tokenize(self, text: str) -> Tokenization:
        return self._engine.tokenize(text)

    async def detect(self, request: DetectionRequest) -> Detection:
        entered = time.perf_counter()
        detection: Detection = await self._batcher.call(Ticket(self._engine.prepare(request, checked=True)))
        return replace(detection, timing=replace(detection.timing, replica_ms=(time.perf_counter() - entered) * 1000))

    async def _score(self, batch: Batch[Ticket]) -> None:
        loop = asyncio.get_running_loop()
        tickets = batch.items
        started = time.perf_counter()
        self._metrics.batch_started(tickets, started)
        prepared: list[PreparedDetection] = [t.prepared for t in tickets]
        detections = await loop.run_in_executor(self._executor, self._engine.detect, prepared)
        self._metrics.count_tokens(sum(d.input_tokens for d in detections), 0)
        for index, (detection, ticket) in enumerate(zip(detections, tickets, strict=True)):
            batch.emit(index, replace(detection, timing=_timing(ticket, started, len(tickets))))
