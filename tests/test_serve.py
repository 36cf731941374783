"""Real gRPC calls against a real Ray Serve application with the embedded
checkpoints: health, reflection, outputs equal to the engines', streaming
and batching (errors and limits: ``test_serve_limits.py``, deadlines and cancels: ``test_serve_deadlines.py``)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from t5electra.clients import T5ElectraError
from t5electra.protocol.v1 import generation_pb2
from t5electra.server.detector import ReplacementDetector
from t5electra.server.domain import DetectionRequest, GenerationParameters, GenerationRequest
from t5electra.server.generator import T5Generator

from support.reference import PROMPTS, SENTENCES
from support.serving import ServerUnderTest

pytestmark = pytest.mark.serve


def in_process(generator: T5Generator, prompt: str, **params) -> list[str]:
    prepared = generator.prepare(GenerationRequest(prompt, GenerationParameters(**params)))
    return [s.text for s in generator.generate([prepared])[0].sequences]


def test_health_is_serving_only_with_models_running(server: ServerUnderTest) -> None:
    """Polled from deployment until SERVING: every SERVING answer came when
    Serve already reported both models running (checked right after it)."""
    assert server.startup_health[-1][0] == "SERVING"
    for status, _, models_running_after in server.startup_health:
        if status == "SERVING":
            assert models_running_after, server.startup_health
    with server.client() as client:
        assert client.health() == "SERVING"
        assert client.health("t5electra.v1.TextGeneration") == "SERVING"
        assert client.health("t5electra.v1.ReplacementDetection") == "SERVING"
        assert client.health("liveness") == "SERVING"
        with pytest.raises(T5ElectraError) as raised:
            client.health("no.such.Service")
        assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_standard_health_stub(server: ServerUnderTest) -> None:
    with server.channel() as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(server: ServerUnderTest) -> None:
    with server.channel() as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"t5electra.v1.TextGeneration", "t5electra.v1.ReplacementDetection", "grpc.health.v1.Health"} <= services


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"max_new_tokens": 3},
        {"num_beams": 3, "num_return_sequences": 2},
        {"do_sample": True, "seed": 11, "temperature": 2.5, "top_k": 20, "num_return_sequences": 2},
        {"repetition_penalty": 1.7, "min_new_tokens": 4},
        {"stop_sequences": ["Hund"]},
    ],
)
def test_generate_equals_in_process_engine(server: ServerUnderTest, generator: T5Generator, params: dict) -> None:
    with server.client() as client:
        generation = client.generate(PROMPTS[2], **params)
    assert [s.text for s in generation.sequences] == in_process(
        generator, PROMPTS[2], **{**params, "stop_sequences": tuple(params.get("stop_sequences", ()))}
    )
    assert generation.model == "tiny-t5"
    assert generation.output_tokens == sum(s.generated_tokens for s in generation.sequences)


def test_trailing_metadata_describes_the_request(server: ServerUnderTest) -> None:
    with server.client() as client:
        generation = client.generate(PROMPTS[0], request_id="req-123")
    metadata = generation.metadata
    assert metadata["x-request-id"] == "req-123"
    assert metadata["model"] == "tiny-t5"
    assert float(metadata["queue-ms"]) >= 0 and float(metadata["inference-ms"]) > 0
    assert int(metadata["batch-size"]) >= 1
    spans = dict(part.strip().split(";dur=") for part in metadata["server-timing"].split(","))
    assert list(spans) == ["ingress", "model-call", "replica", "queue", "inference"]
    assert float(spans["ingress"]) >= float(spans["model-call"]) >= float(spans["replica"]) > 0


def test_stream_joins_to_generate(server: ServerUnderTest) -> None:
    """Its pieces join to Generate's text. (That they arrive in pieces is the
    next test's, on an answer long enough that a lagging replica, which
    joins the pieces made while it lagged, still sends several.)"""
    with server.client() as client:
        expected = client.generate(PROMPTS[4]).text
        stream = client.generate_stream(PROMPTS[4])
        pieces = list(stream)
    assert "".join(pieces) == expected
    assert stream.end is not None and stream.end.text == expected
    assert stream.end.finish_reason == "EOS_TOKEN"
    assert stream.end.metadata["model"] == "tiny-t5" and int(stream.end.metadata["batch-size"]) >= 1
    assert "inference;dur=" in stream.end.metadata["server-timing"]


def test_first_piece_arrives_before_generation_ends(server: ServerUnderTest) -> None:
    request = generation_pb2.GenerateRequest(
        text=PROMPTS[0], parameters=generation_pb2.GenerationParameters(min_new_tokens=200, max_new_tokens=200)
    )
    arrivals = []
    with server.channel() as channel:
        for message in server.generation_stub(channel).GenerateStream(request, timeout=60):
            arrivals.append((time.monotonic(), message))
    assert arrivals[-1][1].finish_reason == generation_pb2.LENGTH
    assert arrivals[-1][1].generated_tokens == 200
    # A replica that lags sends several tokens a message (everything since
    # the caller last asked), so the count of messages depends on speed; the
    # first one, though, never waits for the rest.
    counts = [message.generated_tokens for _, message in arrivals]
    assert 0 < counts[0] < 200, f"the first message came with {counts[0]} of the 200 tokens"
    assert counts == sorted(counts), counts
    assert arrivals[0][0] < arrivals[-1][0]


def test_short_requests_join_a_running_decode_and_leave_before_it_ends(
    server: ServerUnderTest, generator: T5Generator
) -> None:
    """Continuous batching through real gRPC: while a 512-token stream
    decodes, short requests arrive, decode alongside it, and are answered
    long before it ends, with the same text as the engine alone."""
    server.wait_until_idle()
    long = generation_pb2.GenerateRequest(
        text=PROMPTS[0], parameters=generation_pb2.GenerationParameters(min_new_tokens=512, max_new_tokens=512)
    )
    with server.channel() as channel, server.client() as client, ThreadPoolExecutor(5) as pool:
        stream = server.generation_stub(channel).GenerateStream(long, timeout=120)
        first = next(stream)
        # Read as it comes, so that the time its last message arrived is known.
        reading = pool.submit(lambda: [(time.monotonic(), message) for message in stream])
        shorts = list(pool.map(lambda p: client.generate(p), PROMPTS[1:5]))
        shorts_answered = time.monotonic()
        rest = reading.result(timeout=120)
    ended_at, last = rest[-1]
    assert last.generated_tokens == 512 and last.finish_reason == generation_pb2.LENGTH
    assert first.generated_tokens < 512
    assert shorts_answered < ended_at, "the long stream was still decoding when every short answer had arrived"
    for prompt, result in zip(PROMPTS[1:5], shorts, strict=True):
        assert [s.text for s in result.sequences] == in_process(generator, prompt)
        # Its batch-size is the mean rows of the steps it decoded in: the
        # long stream's row was in every one of them.
        assert int(result.metadata["batch-size"]) >= 2, "decoded in company of the long stream"


def test_concurrent_mixed_requests_are_batched_and_unchanged(server: ServerUnderTest, generator: T5Generator) -> None:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(20)]
    params = [{"max_new_tokens": 2 + i} if i % 3 == 0 else {} for i in range(20)]
    with server.client() as client, ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda a: client.generate(a[0], **a[1]), zip(prompts, params, strict=True)))
    for prompt, p, result in zip(prompts, params, results, strict=True):
        assert [s.text for s in result.sequences] == in_process(generator, prompt, **p)
    batch_sizes = [int(r.metadata["batch-size"]) for r in results]
    assert max(batch_sizes) > 1, batch_sizes


def test_detect_equals_in_process_engine(server: ServerUnderTest, detector: ReplacementDetector) -> None:
    with server.client() as client, ThreadPoolExecutor(len(SENTENCES)) as pool:
        served = list(pool.map(lambda t: client.detect_replacements(t, threshold=0.3), SENTENCES))
    for text, detection in zip(SENTENCES, served, strict=True):
        (expected,) = detector.detect([detector.prepare(DetectionRequest(text, 0.3))])
        assert [(t.token, t.start, t.end, t.replaced) for t in detection.tokens] == [
            (t.token, t.start, t.end, t.replaced) for t in expected.tokens
        ]
        for served_token, expected_token in zip(detection.tokens, expected.tokens, strict=True):
            assert served_token.score == pytest.approx(expected_token.score, abs=1e-5)
        assert [(s.start, s.end, s.text) for s in detection.replaced_spans] == [
            (s.start, s.end, s.text) for s in expected.replaced_spans
        ]
        assert detection.replaced_fraction == pytest.approx(expected.replaced_fraction)
