"""The ELECTRA replica, a Serve deployment made of a plain class by
``app.py``: DetectReplacements requests prepared here and scored by the
batcher's threads (``batcher.py``), each answer a :class:`Reply` with its
usage and its batch's timing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from t5electra.server.detector import PreparedDetection, ReplacementDetector
from t5electra.server.domain import Detection, DetectionRequest, ModelDescription, Tokenization
from t5electra.server.limits import Limits

from . import names
from .batcher import Batcher, BatchPlanner
from .deployment_settings import ElectraSettings
from .refusals import DeadlineExceeded
from .replica_common import replica_info, set_threads, since
from .replica_metrics import BatchMetrics
from .replies import BatchTiming, Reply, Usage
from .tracing import Carrier, Tracing


def load_detector(settings: ElectraSettings, limits: Limits) -> ReplacementDetector:
    """The ELECTRA engine a replica serves, as its settings say."""
    return ReplacementDetector(
        settings.model,
        device=settings.device,
        dtype=settings.dtype,
        limits=limits,
        generator=settings.generator_model,
        max_batch_tokens=settings.max_batch_tokens,
        compile=settings.compile,
    )


class DetectorDeployment:
    """ELECTRA replica: DetectReplacements requests scored a batch per
    forward pass. A plain class, made a Serve deployment by ``app.py``;
    ``engine`` builds what it serves (tests give it a fake)."""

    def __init__(
        self,
        settings: ElectraSettings,
        limits: Limits,
        engine: Callable[[ElectraSettings, Limits], ReplacementDetector] = load_detector,
    ) -> None:
        set_threads(settings)
        self._engine = engine(settings, limits)
        self._engine.warm_up()
        self._metrics = BatchMetrics(self._engine.name)
        planner: BatchPlanner[PreparedDetection] = BatchPlanner(
            settings.max_batch_size,
            settings.batch_wait_timeout_s,
            cost=lambda prepared: prepared.tokens,
            max_batch_cost=settings.max_batch_tokens,
        )
        self._batcher = Batcher(
            self._engine.detect,
            planner,
            workers=settings.max_concurrent_batches,
            on_batch=self._metrics.batch,
            on_dropped=self._metrics.dropped,
        )
        self._tracing = Tracing.from_environment(names.DETECTOR)

    def __del__(self) -> None:
        """Serve calls this as the replica stops: spans still buffered are exported."""
        self._tracing.shutdown()

    def info(self) -> dict[str, Any]:
        return replica_info(self._engine)

    def describe(self) -> ModelDescription:
        return self._engine.describe()

    def tokenize(self, text: str) -> Reply[Tokenization]:
        """The text's tokens, billed as input, with the model's name."""
        tokenization = self._engine.tokenize(text)
        return Reply(tokenization, self._engine.name, Usage(len(tokenization.tokens)), BatchTiming())

    async def detect_many(
        self, requests: list[tuple[DetectionRequest, Carrier | None]]
    ) -> list[Reply[Detection] | DeadlineExceeded | Exception]:
        """Each request's answer, or the exception it ended with, for a call
        that carries several (``hop.py``): they join the batcher together."""
        return await asyncio.gather(
            *(self.detect(request, trace) for request, trace in requests), return_exceptions=True
        )

    async def detect(
        self, request: DetectionRequest, trace: Carrier | None = None
    ) -> Reply[Detection] | DeadlineExceeded:
        """Scored with the requests batched beside it; its expiry while
        queued returned rather than raised (see :data:`RETURNED`).
        ``trace``: the ingress's trace context."""
        entered = time.perf_counter()
        with self._tracing.replica(f"{names.DETECTOR}.detect", trace) as span:
            prepared = self._engine.prepare(request)
            span.queued()
            try:
                output = await self._batcher.call(prepared)
            except DeadlineExceeded as late:
                span.refused(str(late))
                return late
            assert output.timing is not None, "a batch's answer carries its timing"
            detection: Detection = output.payload
            usage = Usage(detection.input_tokens)
            self._metrics.count(usage)
            timing = dataclasses.replace(output.timing, replica_ms=since(entered))
            span.answered(timing, "forward", {"batch_size": timing.batch_size, "tokens": prepared.tokens})
            return Reply(detection, self._engine.name, usage, timing)
