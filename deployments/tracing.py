"""OpenTelemetry traces of a request through the server, exported over OTLP/gRPC.

A process traces when OpenTelemetry's standard ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is in its environment; the
replicas get it, with every other ``OTEL_*`` variable, from the settings
(``TracingSettings``). Without one, :data:`OFF` stands in: no provider, no
exporter thread, and every hook below returns at its first line.

The spans of one RPC, each the child of the one before:

- ``<service>/<method>`` (SERVER, in the ingress): the caller's
  ``traceparent`` continues, else a trace starts, sampled per
  ``OTEL_TRACES_SAMPLER``. Status code, request id, model and tokens.
- ``<Deployment>.<method>`` (CLIENT, in the ingress): the call to the model
  deployment, Ray's router and transport included. Its context travels to
  the replica as a W3C carrier, an argument of the call.
- ``<Deployment>.<method>`` (SERVER, in the replica), with two children
  placed by the batcher's own timing: ``queue`` (arrival to the batch or
  decoding step it joined) and ``decode`` (T5: every step the request was
  in, one span with the step count) or ``forward`` (ELECTRA: its batch, with
  the batch size).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, format_trace_id, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .replies import BatchTiming

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

Carrier = dict[str, str]
"""W3C trace context headers (``traceparent``, ``tracestate``), as a request carries them between processes."""

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_DEFAULT_SERVICE = "t5electra"
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def caller_trace_id(metadata: Sequence[tuple[str, Any]]) -> str:
    """The trace id of the caller's ``traceparent``, for the log line even
    when this server does not trace: a mesh's proxies trace on their own."""
    for key, value in metadata:
        if key == "traceparent" and isinstance(value, str) and (match := _TRACEPARENT.match(value.strip())):
            return "" if match.group(1) == "0" * 32 else match.group(1)
    return ""


@dataclass
class RpcSpan:
    """What the ingress learns as an RPC runs that its span reports at the end."""

    span: Span | None = None
    trace_id: str = ""


class Tracing:
    """One process's tracer, or none (:data:`OFF`)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer: Tracer | None = provider.get_tracer("t5electra") if provider is not None else None

    @classmethod
    def from_environment(cls, component: str, environ: Mapping[str, str] = os.environ) -> Tracing:
        """A tracer exporting to the configured OTLP endpoint, or :data:`OFF`
        when none is. ``component`` names the process's part of the server
        (ingress, a model deployment) in the spans' resource."""
        if not any(environ.get(key) for key in _ENDPOINTS):
            return OFF
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes: dict[str, str | int] = {"t5electra.component": component, "process.pid": os.getpid()}
        if not environ.get("OTEL_SERVICE_NAME"):
            attributes[SERVICE_NAME] = _DEFAULT_SERVICE
        provider = TracerProvider(resource=Resource.create(attributes))  # the sampler: OTEL_TRACES_SAMPLER
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def shutdown(self) -> None:
        """Exports what is still buffered; a replica calls it as it stops."""
        if self._provider is not None:
            self._provider.shutdown()

    @contextmanager
    def rpc(self, name: str, metadata: Sequence[tuple[str, Any]], attributes: Mapping[str, Any]) -> Iterator[RpcSpan]:
        """The ingress's span of one RPC, continuing the caller's trace. The
        body sets the outcome with :meth:`rpc_outcome` before it ends."""
        if self._tracer is None:
            yield RpcSpan(trace_id=caller_trace_id(metadata))
            return
        parent = _PROPAGATOR.extract({key: value for key, value in metadata if isinstance(value, str)})
        span = self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=dict(attributes))
        context = span.get_span_context()
        traced = RpcSpan(span, format_trace_id(context.trace_id) if context.is_valid else "")
        try:
            yield traced
        finally:
            span.end()

    @staticmethod
    def rpc_outcome(traced: RpcSpan, code: grpc.StatusCode, attributes: Mapping[str, Any]) -> None:
        """The RPC's status code (an error for anything but OK) and what it used."""
        if traced.span is None or not traced.span.is_recording():
            return
        traced.span.set_attributes({"rpc.grpc.status_code": code.value[0], **attributes})
        if code != grpc.StatusCode.OK:
            traced.span.set_status(Status(StatusCode.ERROR, code.name))

    @contextmanager
    def model_call(self, traced: RpcSpan, name: str) -> Iterator[Carrier | None]:
        """The span of a call to a model deployment; yields the carrier its
        replica continues from (None when not tracing)."""
        if self._tracer is None or traced.span is None:
            yield None
            return
        span = self._tracer.start_span(name, context=set_span_in_context(traced.span), kind=SpanKind.CLIENT)
        carrier: Carrier = {}
        _PROPAGATOR.inject(carrier, context=set_span_in_context(span))
        try:
            yield carrier
        except BaseException as error:
            _failed(span, error)
            raise
        finally:
            span.end()

    @contextmanager
    def replica(self, name: str, carrier: Carrier | None) -> Iterator[ReplicaSpan]:
        """A replica method's span, continuing the ingress's call; requests
        that come without a carrier (from an ingress that does not trace)
        are not traced here either."""
        if self._tracer is None or not carrier:
            yield _UNTRACED
            return
        span = self._tracer.start_span(name, context=_PROPAGATOR.extract(carrier), kind=SpanKind.SERVER)
        try:
            yield ReplicaSpan(self._tracer, span)
        except BaseException as error:
            _failed(span, error)
            raise
        finally:
            span.end()


class ReplicaSpan:
    """A replica's span, to which the batcher's timing adds its children."""

    def __init__(self, tracer: Tracer | None, span: Span | None) -> None:
        self._tracer, self._span = tracer, span
        self._queued_ns = 0

    def queued(self) -> None:
        """The request, prepared, joins the batcher's queue now."""
        if self._span is not None:
            self._queued_ns = time.time_ns()

    def refused(self, reason: str) -> None:
        if self._span is not None:
            self._span.set_status(Status(StatusCode.ERROR, f"refused: {reason}"))

    def answered(self, timing: BatchTiming, engine: str, attributes: Mapping[str, Any]) -> None:
        """``queue`` and ``engine`` spans placed by ``timing``, which the
        batcher measured from the request's arrival in its queue."""
        if self._span is None or self._tracer is None or not self._span.is_recording():
            return
        parent = set_span_in_context(self._span)
        started = self._queued_ns or time.time_ns()
        joined = started + round(timing.queue_ms * 1e6)
        self._tracer.start_span("queue", context=parent, start_time=started).end(end_time=joined)
        work = self._tracer.start_span(engine, context=parent, start_time=joined, attributes=dict(attributes))
        work.end(end_time=joined + round(timing.inference_ms * 1e6))


_UNTRACED = ReplicaSpan(None, None)

OFF = Tracing()
"""No tracing: every hook is a no-op."""


def _failed(span: Span, error: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
