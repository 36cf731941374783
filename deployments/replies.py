"""What a model replica answers the ingress: the engine's result wrapped
with what serving knows of it (:class:`Reply`): the model, the tokens it is
billed for, where its time went in the replica, and for T5 the replica's
admission horizon. Serving's vocabulary, not the engines': the engines
return results and know nothing of replicas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar


@dataclass(frozen=True)
class BatchTiming:
    """Where a request's time went inside a model replica.

    ``queue_ms`` is from arrival at the replica's batcher to the start of its
    batch (T5: to the step it joined); ``inference_ms`` from that start to the
    request's last token; ``replica_ms`` from the replica method's start to
    its answer, preparation included. ``batch_size`` is the batch's requests
    (T5: the mean rows of the steps that decoded the request); ``steps`` the
    forward passes the request was in (T5: its decoding steps).
    """

    queue_ms: float = 0.0
    inference_ms: float = 0.0
    batch_size: int = 1
    replica_ms: float = 0.0
    steps: int = 1


@dataclass(frozen=True)
class Usage:
    """Tokens a request is billed for."""

    input_tokens: int
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        """What several requests together are billed for (one ModelInfer of many texts)."""
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


Payload = TypeVar("Payload")


@dataclass(frozen=True)
class Horizon:
    """A T5 replica's admission as it stood when it answered: seconds until
    a new request could start, a step's time at the load it would join and
    a one-row step's time on an idle replica (the admission margin included
    in both), the steps of a typical answer, and when (``time.time()``).
    While it is fresh, the ingress refuses on it what the replica would
    refuse, without the round trip."""

    start_s: float
    step_s: float
    typical_steps: float | None
    at: float
    alone_step_s: float = 0.0


@dataclass(frozen=True)
class Reply(Generic[Payload]):
    """What a model replica answers: the engine's result and what serving
    knows of it, built once in the replica and read once in the ingress,
    where the trailers, metrics and log line are written (and, for T5, the
    replica's admission horizon, which the ingress refuses by)."""

    payload: Payload
    model: str
    usage: Usage
    timing: BatchTiming
    horizon: Horizon | None = None
