"""The limit: the engines called directly, no Ray and no gRPC, one batch at a
time, on the same prompts and parameters as the served runs. Preparing a
request (tokenizing, validating) is counted, because a replica does it too."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

from t5electra.server.detector import ReplacementDetector
from t5electra.server.domain import DetectionRequest, GenerationParameters, GenerationRequest
from t5electra.server.generator import T5Generator


@dataclass(frozen=True)
class EnginePoint:
    """Figures of one rpc at one batch size."""

    rpc: str
    batch_size: int
    requests: int
    seconds: float
    tokens_out: int
    latencies: tuple[float, ...]
    ttfts: tuple[float, ...] = ()

    def to_json(self) -> dict[str, Any]:
        from t5electra.tools.load.report import percentile

        figures: dict[str, Any] = {
            "rpc": self.rpc,
            "batch_size": self.batch_size,
            "requests": self.requests,
            "throughput_rps": self.requests / self.seconds,
            "latency_ms": {q: percentile(self.latencies, n) * 1000 for q, n in (("p50", 50), ("p99", 99))},
        }
        if self.rpc != "detect":
            figures["tokens_per_s"] = self.tokens_out / self.seconds
        if self.ttfts:
            figures["ttft_ms"] = {q: percentile(self.ttfts, n) * 1000 for q, n in (("p50", 50), ("p99", 99))}
        return figures


def measure_generation(
    generator: T5Generator,
    prompts: Sequence[str],
    parameters: GenerationParameters,
    batch_size: int,
    duration: float,
    *,
    stream: bool,
) -> EnginePoint:
    """Runs batches of ``batch_size`` back to back for about ``duration``
    seconds (at least one batch). A request's latency ends at the step that
    completes it, as it does for a served request; for streams the time to
    its first non-empty piece too, as the load tester measures it."""
    texts = cycle(prompts)
    latencies: list[float] = []
    ttfts: list[float] = []
    tokens = requests = 0
    started = time.perf_counter()
    while requests == 0 or time.perf_counter() - started < duration:
        sent = time.perf_counter()
        batch = [
            generator.prepare(GenerationRequest(text, parameters), stream=stream) for text in islice(texts, batch_size)
        ]
        session = generator.session(batch)
        first: dict[int, float] = {}
        while not session.done:
            events = session.step()
            now = time.perf_counter()
            for event in events:
                if event.piece is not None and event.piece.text and event.key not in first:
                    first[event.key] = now - sent
                if event.result is not None:
                    latencies.append(now - sent)
                    tokens += event.result.output_tokens
        ttfts.extend(first.values())
        requests += batch_size
    seconds = time.perf_counter() - started
    rpc = "generate-stream" if stream else "generate"
    return EnginePoint(rpc, batch_size, requests, seconds, tokens, tuple(latencies), tuple(ttfts))


def measure_detection(
    detector: ReplacementDetector, texts: Sequence[str], batch_size: int, duration: float
) -> EnginePoint:
    """Scores batches of ``batch_size`` back to back for about ``duration`` seconds."""
    source = cycle(texts)
    latencies: list[float] = []
    requests = 0
    started = time.perf_counter()
    while requests == 0 or time.perf_counter() - started < duration:
        sent = time.perf_counter()
        detector.detect([detector.prepare(DetectionRequest(text)) for text in islice(source, batch_size)])
        latencies.extend([time.perf_counter() - sent] * batch_size)
        requests += batch_size
    return EnginePoint("detect", batch_size, requests, time.perf_counter() - started, 0, tuple(latencies))
