"""A real OTLP/gRPC trace receiver: the collector's TraceService from
``opentelemetry-proto``, keeping every span it is sent. The tests check what
the server exports as a collector (Jaeger, Tempo, the OpenTelemetry
Collector) would receive it; the tracing bench (``overhead.py``) gives the
server somewhere to export to without one, in a process of its own."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


def _value(any_value: common_pb2.AnyValue) -> Any:
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, with the resource it came from."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.changed = threading.Condition()

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any) -> Any:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            status_code=span.status.code,
                            status_message=span.status.message,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            resource=resource,
                        )
                    )
        with self.changed:
            self.spans += received
            self.changed.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()


class TraceReceiver:
    """The receiver's address and what it has received."""

    def __init__(self, collector: _Collector, port: int) -> None:
        self._collector = collector
        self.endpoint = f"http://127.0.0.1:{port}"

    def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 60) -> list[ReceivedSpan]:
        """Every span received once ``done`` holds for them; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._collector.changed:
            while not done(list(self._collector.spans)):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({s.name for s in self._collector.spans})
                    raise TimeoutError(f"spans not all received in {timeout}s; received: {names}")
                self._collector.changed.wait(left)
            return list(self._collector.spans)


@contextmanager
def trace_receiver() -> Iterator[TraceReceiver]:
    """A receiver on a free port of 127.0.0.1, for the block's duration."""
    collector = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield TraceReceiver(collector, port)
    finally:
        server.stop(grace=None)


class _Counter(trace_service_pb2_grpc.TraceServiceServicer):
    """Counts the spans it is sent and keeps nothing."""

    def __init__(self, count: Any) -> None:
        self._count = count

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any) -> Any:
        spans = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self._count.get_lock():
            self._count.value += spans
        return trace_service_pb2.ExportTraceServiceResponse()


def _count_spans(port: int, count: Any, stop: Any) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Counter(count), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop.wait()
    server.stop(grace=None)


@dataclass(frozen=True)
class CountingReceiver:
    endpoint: str
    _count: Any

    @property
    def spans(self) -> int:
        return self._count.value


@contextmanager
def counting_receiver(port: int) -> Iterator[CountingReceiver]:
    """A receiver in a process of its own that only counts spans: a bench
    measuring the server must not give its own process's time (and GIL) to
    decoding them, as a collector elsewhere would not."""
    context = multiprocessing.get_context("spawn")
    count, stop = context.Value("q", 0), context.Event()
    process = context.Process(target=_count_spans, args=(port, count, stop), daemon=True)
    process.start()
    try:
        yield CountingReceiver(f"http://127.0.0.1:{port}", count)
    finally:
        stop.set()
        process.join(timeout=10)
