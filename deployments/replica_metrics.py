"""What a model replica reports to Prometheus (through Ray's metrics):
queue time, batch size, tokens, and the requests it dropped and why. Kept
apart from the replicas so that their request path reads without it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.serve.metrics import Counter, Histogram

from .records import Request
from .replies import Usage
from .scheduler import StepReport

_MS_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
_BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128]


class BatchMetrics:
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
        self.dropped_requests = Counter(
            "t5electra_dropped",
            "Requests a replica refused at arrival, because of the work ahead (reason=overloaded) or because "
            "their least work alone takes longer than their deadline allows (reason=deadline_too_short), "
            "or dropped when their deadline passed while queued or decoding (reason=expired)",
            ("model", "reason"),
        )
        for metric in (self.queue_ms, self.batch_size):
            metric.set_default_tags(dict(self._tags))  # Serve adds its tags to the dict it gets

    def steps(self, reports: list[StepReport]) -> None:
        """Decoding steps: their rows, and the queue times of requests that joined."""
        for report in reports:
            self.batch_size.observe(report.rows)
            for queue_ms in report.admitted_queue_ms:
                self.queue_ms.observe(queue_ms)

    def batch(self, batch: Sequence[Request[Any]], started: float) -> None:
        self.batch_size.observe(len(batch))
        for request in batch:
            self.queue_ms.observe((started - request.arrived) * 1000)

    def dropped(self, reason: str, count: int) -> None:
        self.dropped_requests.inc(count, tags={**self._tags, "reason": reason})

    def count(self, usage: Usage) -> None:
        if usage.input_tokens:
            self.tokens.inc(usage.input_tokens, tags={**self._tags, "direction": "in"})
        if usage.output_tokens:
            self.tokens.inc(usage.output_tokens, tags={**self._tags, "direction": "out"})
