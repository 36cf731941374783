"""One RPC as the ingress sees it: what the caller sent in its metadata
(request id, deadline, token), what the call records as it runs, and what
goes back in the trailers of a successful answer and in its log line."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from ray.serve.grpc_util import RayServegRPCContext

from .proxy_extension import DEADLINE_KEY
from .replies import BatchTiming, Reply, Usage
from .tracing import RpcSpan


@dataclass
class Call:
    """What the per-request log line, metrics and trailers need to know
    about one RPC, filled in as it runs."""

    rpc: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    code: grpc.StatusCode = grpc.StatusCode.OK
    usage: Usage = field(default_factory=lambda: Usage(0))
    model: str = ""
    timing: BatchTiming | None = None
    caller: str = ""
    model_call_ms: float = 0.0
    logprobs: int = 0
    suggestions: int = 0
    trace: RpcSpan = field(default_factory=RpcSpan)

    def record(self, reply: Reply[object], *, logprobs: int = 0, suggestions: int = 0) -> None:
        """What a model replica answered, for the trailers and the log line.
        A call answered by several replies (ModelInfer of N texts, a
        ModelStreamInfer of several requests) adds up their tokens, log-
        probabilities and suggestions, and reports the timing of the reply
        that took longest in its replica: the one the caller waited for."""
        self.model = reply.model
        self.usage = self.usage + reply.usage
        if self.timing is None or reply.timing.replica_ms >= self.timing.replica_ms:
            self.timing = reply.timing
        self.logprobs += logprobs
        self.suggestions += suggestions

    @contextmanager
    def model_call(self) -> Iterator[None]:
        """Times the wait on a model deployment (Ray's router, the call to
        the replica, the replica's work and the way back)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.model_call_ms += (time.perf_counter() - started) * 1000

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    @property
    def batch_timing(self) -> BatchTiming:
        """The model's timing, or zeros for a call that never reached a batch."""
        return self.timing or BatchTiming(batch_size=0)

    def span_attributes(self) -> dict[str, str | int]:
        """What the RPC's trace span reports of the answer."""
        return {
            "model": self.model,
            "caller": self.caller,
            "tokens_in": self.usage.input_tokens,
            "tokens_out": self.usage.output_tokens,
            "batch_size": self.batch_timing.batch_size,
        }

    def log_record(self, elapsed_ms: float) -> dict[str, object]:
        """The request's one log line, as JSON fields."""
        timing = self.batch_timing
        return {
            "request_id": self.request_id,
            "trace_id": self.trace.trace_id,
            "rpc": self.rpc,
            "caller": self.caller,
            "status": self.code.name,
            "tokens_in": self.usage.input_tokens,
            "tokens_out": self.usage.output_tokens,
            "logprobs": self.logprobs,
            "suggestions": self.suggestions,
            "queue_ms": round(timing.queue_ms, 2),
            "inference_ms": round(timing.inference_ms, 2),
            "batch_size": timing.batch_size,
            "latency_ms": round(elapsed_ms, 2),
        }


def answered(call: Call, grpc_context: RayServegRPCContext, elapsed_ms: float) -> None:
    """The trailing metadata of a successful call."""
    timing = call.batch_timing
    grpc_context.set_trailing_metadata(
        [
            ("x-request-id", call.request_id),
            ("model", call.model),
            ("queue-ms", f"{timing.queue_ms:.2f}"),
            ("inference-ms", f"{timing.inference_ms:.2f}"),
            ("batch-size", str(timing.batch_size)),
            ("server-timing", _server_timing(call, elapsed_ms, timing)),
        ]
    )


def _server_timing(call: Call, elapsed_ms: float, timing: BatchTiming) -> str:
    """Where the request's time went, in the W3C Server-Timing syntax:
    ``ingress`` is all of it inside the ingress, ``model-call`` the wait on
    the model deployment within that (for a stream, also the time the proxy
    takes each piece), ``replica`` the model replica's part of
    that wait, and ``queue`` plus ``inference`` the batcher's part of that.
    A client subtracts its neighbours to get each hop (``t5electra bench``)."""
    spans = {
        "ingress": elapsed_ms,
        "model-call": call.model_call_ms,
        "replica": timing.replica_ms,
        "queue": timing.queue_ms,
        "inference": timing.inference_ms,
    }
    return ", ".join(f"{name};dur={value:.2f}" for name, value in spans.items())


def metadata_value(grpc_context: RayServegRPCContext, name: str) -> str | None:
    return next((value for key, value in grpc_context.invocation_metadata() if key == name and value), None)


def deadline(grpc_context: RayServegRPCContext) -> float | None:
    """When the caller stops waiting (``time.time()``): the earlier of its
    gRPC deadline, which the extended proxy forwards (``proxy_extension.py``)
    fresh for every attempt, and ``x-request-timeout-ms`` from now, which the
    project's clients also send (the budget a caller that sets no gRPC
    deadline can still give)."""
    ends = []
    forwarded = metadata_value(grpc_context, DEADLINE_KEY)
    if forwarded is not None and forwarded.isascii() and forwarded.isdigit():
        ends.append(int(forwarded) / 1000)
    given = metadata_value(grpc_context, "x-request-timeout-ms")
    if given is not None and given.isascii() and given.isdigit():
        ends.append(time.time() + int(given) / 1000)
    return min(ends, default=None)


def request_id(grpc_context: RayServegRPCContext) -> str:
    """The caller's ``x-request-id`` when it sent one (meshes propagate it),
    else a fresh one."""
    given = metadata_value(grpc_context, "x-request-id")
    return given[:128] if given else uuid.uuid4().hex


Response = TypeVar("Response", bound=Message)
Body = Callable[[Any, Call, Any, RayServegRPCContext], Awaitable[Response]]


def unary(response: type[Response]) -> Callable[[Body[Response]], Callable[..., Awaitable[Response]]]:
    """Makes ``body(self, call, request, grpc_context)`` the ingress's method
    for the unary RPC of the same name. The body runs inside the ingress's
    ``_answering`` (status codes, trailers, metrics, the log line), which
    swallows a failure once its status is set; the empty ``response`` the
    RPC then answers is built here, so that no method can fall through to
    None by forgetting it."""

    def wrap(body: Body[Response]) -> Callable[..., Awaitable[Response]]:
        async def method(self: Any, request: Any, grpc_context: RayServegRPCContext) -> Response:
            async with self._answering(body.__name__, grpc_context) as call:
                return await body(self, call, request, grpc_context)
            return response()

        method.__name__ = method.__qualname__ = body.__name__
        method.__doc__ = body.__doc__
        method.unary_response = response  # type: ignore[attr-defined]
        return method

    return wrap
