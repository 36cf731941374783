"""Tracing's hooks in one process, exported over real OTLP/gRPC to a real
trace receiver: the caller's context continues, spans chain from the RPC to
the replica's queue and engine, the sampler is obeyed, and without an
endpoint nothing is traced. (Through a real Ray Serve: test_tracing_served.py.)"""

from __future__ import annotations

import grpc
import pytest

from t5electra.deployments.replies import BatchTiming
from t5electra.deployments.settings import TracingSettings
from t5electra.deployments.tracing import OFF, Tracing, caller_trace_id
from t5electra.tools.bench.otlp import ReceivedSpan, trace_receiver

pytestmark = pytest.mark.unit

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SAMPLED = [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"), ("tracestate", "vendor=opaque")]


def test_the_callers_trace_id_is_read_for_the_log_line_even_without_tracing() -> None:
    assert caller_trace_id(SAMPLED) == TRACE_ID
    assert caller_trace_id([("x-request-id", "r1")]) == ""
    assert caller_trace_id([("traceparent", "00-" + "0" * 32 + f"-{PARENT_ID}-01")]) == ""
    assert caller_trace_id([("traceparent", "not a traceparent")]) == ""
    with OFF.rpc("t5electra.v1.TextGeneration/Generate", SAMPLED, {}) as traced:
        assert traced.trace_id == TRACE_ID and traced.span is None


def test_without_an_endpoint_every_hook_is_a_no_op() -> None:
    assert Tracing.from_environment("ingress", {"OTEL_SERVICE_NAME": "x"}) is OFF
    with OFF.rpc("s/m", [], {}) as traced, OFF.model_call(traced, "TextGenerator.generate") as carrier:
        assert carrier is None
    with OFF.replica("TextGenerator.generate", {"traceparent": SAMPLED[0][1]}) as span:
        span.queued()
        span.answered(BatchTiming(1.0, 2.0), "decode", {})


def test_settings_become_the_standard_variables_over_the_servers_own() -> None:
    environ = {"OTEL_EXPORTER_OTLP_HEADERS": "x-key=1", "OTEL_SERVICE_NAME": "mesh-name", "PATH": "/bin"}
    settings = TracingSettings(endpoint="http://collector:4317", sampler="parentbased_traceidratio", sampler_arg="0.1")
    assert settings.environment(environ) == {
        "OTEL_EXPORTER_OTLP_HEADERS": "x-key=1",
        "OTEL_SERVICE_NAME": "mesh-name",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
    assert TracingSettings().environment({"PATH": "/bin"}) == {}


def _one_request(ingress: Tracing, replica: Tracing, metadata: list[tuple[str, str]]) -> str:
    """The hooks as the ingress and a T5 replica call them for one Generate."""
    with ingress.rpc("t5electra.v1.TextGeneration/Generate", metadata, {"request_id": "r1"}) as traced:
        with (
            ingress.model_call(traced, "TextGenerator.generate") as carrier,
            replica.replica("TextGenerator.generate", carrier) as span,
        ):
            span.queued()
            span.answered(BatchTiming(queue_ms=5.0, inference_ms=20.0, steps=7), "decode", {"steps": 7})
        Tracing.rpc_outcome(traced, grpc.StatusCode.OK, {"tokens_out": 7})
    return traced.trace_id


def _by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {(s.name if s.name != "TextGenerator.generate" else f"{s.name}/{s.kind}"): s for s in spans}


def test_spans_continue_the_callers_trace_from_the_rpc_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    with trace_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        ingress, replica = Tracing.from_environment("Ingress"), Tracing.from_environment("TextGenerator")
        assert _one_request(ingress, replica, SAMPLED) == TRACE_ID
        ingress.shutdown()
        replica.shutdown()
        spans = _by_name(receiver.wait_for(lambda spans: len(spans) == 5))
    rpc = spans["t5electra.v1.TextGeneration/Generate"]
    client, server = spans["TextGenerator.generate/3"], spans["TextGenerator.generate/2"]  # CLIENT, SERVER
    queue, decode = spans["queue"], spans["decode"]
    assert {s.trace_id for s in spans.values()} == {TRACE_ID}
    assert rpc.parent_span_id == PARENT_ID
    assert client.parent_span_id == rpc.span_id
    assert server.parent_span_id == client.span_id
    assert queue.parent_span_id == decode.parent_span_id == server.span_id
    assert rpc.attributes["rpc.grpc.status_code"] == 0 and rpc.attributes["tokens_out"] == 7
    assert decode.attributes["steps"] == 7
    assert queue.duration_ms == pytest.approx(5.0) and decode.duration_ms == pytest.approx(20.0)
    assert queue.end_ns == decode.start_ns
    assert rpc.resource["service.name"] == "t5electra"
    assert rpc.resource["t5electra.component"] == "Ingress"
    assert server.resource["t5electra.component"] == "TextGenerator"


def test_the_sampler_is_obeyed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that did not sample its trace is not traced (the default
    parent-based sampler); an always_off sampler traces nothing, even a
    request that starts its own trace."""
    unsampled = [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-00")]
    with trace_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        tracing = Tracing.from_environment("Ingress")
        assert _one_request(tracing, tracing, unsampled) == TRACE_ID
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
        off = Tracing.from_environment("Ingress")
        _one_request(off, off, [])
        monkeypatch.delenv("OTEL_TRACES_SAMPLER")
        marker = Tracing.from_environment("Ingress")
        with marker.rpc("marker", [], {}):
            pass
        for provider in (tracing, off, marker):
            provider.shutdown()
        spans = receiver.wait_for(lambda spans: any(s.name == "marker" for s in spans))
    assert [s.name for s in spans] == ["marker"]
