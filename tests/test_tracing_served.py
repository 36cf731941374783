"""Traces through a real Ray Serve: an application with tracing on exports
every hop of Generate, GenerateStream and DetectReplacements over OTLP/gRPC
to a real trace receiver, continuing the caller's trace across the proxy,
the ingress and the model replica's process."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from t5electra.clients.options import infer_request
from t5electra.deployments.names import DETECTOR, INGRESS, TEXT_GENERATOR
from t5electra.deployments.settings import TracingSettings
from t5electra.protocol.inference import open_inference_pb2_grpc
from t5electra.protocol.v1 import detection_pb2, generation_pb2
from t5electra.tools.bench.otlp import ReceivedSpan, TraceReceiver, trace_receiver

from support.serving import ServerUnderTest

pytestmark = pytest.mark.serve

PROMPT = "reverse words: candle forest"
CLIENT, SERVER = 3, 2  # OTLP's SpanKind numbers
INFER_TRACE = "0000000000000000000000000000000a"
TOLERANCE_NS = 2_000_000
"""Spans of different processes are placed by their own clocks (one host,
the same wall clock), and the batcher's children by durations measured from
the moment the request joined its queue: containment is checked within 2 ms."""


@pytest.fixture(scope="module")
def traced(server: ServerUnderTest) -> Iterator[tuple[str, TraceReceiver]]:
    with trace_receiver() as receiver, pytest.MonkeyPatch.context() as patch:
        # The server's own OTEL_* variables reach the replicas with the
        # settings: export every 200 ms instead of every 5 s.
        patch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
        name = server.deploy_variant(
            "traced", (INGRESS, TEXT_GENERATOR, DETECTOR), tracing=TracingSettings(endpoint=receiver.endpoint)
        )
        patch.delenv("OTEL_BSP_SCHEDULE_DELAY")
        try:
            yield name, receiver
        finally:
            server.delete_app(name)


def _parent(trace_id: str, span_id: str) -> tuple[str, str]:
    return ("traceparent", f"00-{trace_id}-{span_id}-01")


def _trace(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.trace_id == trace_id]


def _check_chain(spans: list[ReceivedSpan], rpc_name: str, model_call: str, engine: str, parent: str) -> ReceivedSpan:
    """The five spans of one RPC, each inside its parent; returns the RPC's."""
    (rpc,) = [s for s in spans if s.name == rpc_name]
    (client,) = [s for s in spans if s.name == model_call and s.kind == CLIENT]
    (server,) = [s for s in spans if s.name == model_call and s.kind == SERVER]
    (queue,) = [s for s in spans if s.name == "queue"]
    (work,) = [s for s in spans if s.name == engine]
    assert len(spans) == 5, [s.name for s in spans]
    assert rpc.parent_span_id == parent
    assert client.parent_span_id == rpc.span_id
    assert server.parent_span_id == client.span_id
    assert queue.parent_span_id == work.parent_span_id == server.span_id
    for inner, outer in ((client, rpc), (server, client), (queue, server), (work, server)):
        assert outer.start_ns - TOLERANCE_NS <= inner.start_ns, (inner.name, outer.name)
        assert inner.end_ns <= outer.end_ns + TOLERANCE_NS, (inner.name, outer.name)
    assert queue.end_ns <= work.start_ns + TOLERANCE_NS
    assert rpc.attributes["rpc.grpc.status_code"] == 0 and rpc.status_code != 2  # 2: STATUS_CODE_ERROR
    assert rpc.resource["t5electra.component"] == INGRESS
    assert server.resource["t5electra.component"] in (TEXT_GENERATOR, DETECTOR)
    return rpc


def _check_model_infer(infer_spans: list[ReceivedSpan], parent: str) -> None:
    """ModelInfer of two texts: one call span, a replica span (with its
    queue and decode) for each text."""
    (rpc,) = [s for s in infer_spans if s.name == "inference.GRPCInferenceService/ModelInfer"]
    (client,) = [s for s in infer_spans if s.kind == CLIENT]
    replicas = [s for s in infer_spans if s.kind == SERVER and s.parent_span_id == client.span_id]
    assert rpc.parent_span_id == parent and client.parent_span_id == rpc.span_id and len(replicas) == 2
    assert sorted(s.name for s in infer_spans if s.parent_span_id in {r.span_id for r in replicas}) == [
        "decode",
        "decode",
        "queue",
        "queue",
    ]


def test_every_hop_continues_the_callers_trace(server: ServerUnderTest, traced: tuple[str, TraceReceiver]) -> None:
    name, receiver = traced
    ids = {rpc: f"{index + 1:032x}" for index, rpc in enumerate(("Generate", "GenerateStream", "DetectReplacements"))}
    parent = "00f067aa0ba902b7"
    latency_ms = {}
    with server.channel() as channel:
        generation, detection = server.generation_stub(channel), server.detection_stub(channel)
        request = generation_pb2.GenerateRequest(text=PROMPT)

        def timed(rpc: str, call) -> None:
            started = time.perf_counter()
            call([("application", name), _parent(ids[rpc], parent)])
            latency_ms[rpc] = (time.perf_counter() - started) * 1000

        timed("Generate", lambda metadata: generation.Generate(request, metadata=metadata, timeout=60))
        timed(
            "GenerateStream", lambda metadata: list(generation.GenerateStream(request, metadata=metadata, timeout=60))
        )
        timed(
            "DetectReplacements",
            lambda metadata: detection.DetectReplacements(
                detection_pb2.DetectReplacementsRequest(text="The cat sat on the mat."), metadata=metadata, timeout=60
            ),
        )
        inference = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        infer = infer_request("t5", [PROMPT, "sort numbers: 3 1 2"], {"max_new_tokens": 8})
        inference.ModelInfer(infer, metadata=[("application", name), _parent(INFER_TRACE, parent)], timeout=60)
        untraced = generation.Generate(request, metadata=[("application", name)], timeout=60)
        assert untraced.sequences[0].text == "forest candle"

    def complete(spans: list[ReceivedSpan]) -> bool:
        started = [s for s in spans if s.name.endswith("/Generate") and not s.parent_span_id]
        return (
            all(len(_trace(spans, t)) == 5 for t in ids.values())
            and bool(started)
            and (len(_trace(spans, started[0].trace_id)) == 5)
        )

    spans = receiver.wait_for(complete)
    for rpc, (model_call, engine) in {
        "Generate": ("TextGenerator.generate", "decode"),
        "GenerateStream": ("TextGenerator.generate_stream", "decode"),
        "DetectReplacements": ("Detector.detect", "forward"),
    }.items():
        service = "ReplacementDetection" if rpc == "DetectReplacements" else "TextGeneration"
        span = _check_chain(_trace(spans, ids[rpc]), f"t5electra.v1.{service}/{rpc}", model_call, engine, parent)
        assert span.duration_ms <= latency_ms[rpc], (rpc, span.duration_ms, latency_ms[rpc])
        assert span.attributes["rpc.method"] == rpc and span.attributes["request_id"]
    generate = _trace(spans, ids["Generate"])
    assert next(s for s in generate if s.name == "decode").attributes["steps"] >= 2
    assert (
        next(s for s in _trace(spans, ids["DetectReplacements"]) if s.name == "forward").attributes["batch_size"] >= 1
    )
    _check_model_infer(_trace(spans, INFER_TRACE), parent)
    # Without a caller's traceparent, the ingress starts a trace of its own.
    (started,) = [s for s in spans if s.name.endswith("/Generate") and not s.parent_span_id]
    _check_chain(_trace(spans, started.trace_id), started.name, "TextGenerator.generate", "decode", "")
