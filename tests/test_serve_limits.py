"""The served application at its limits, through real gRPC: invalid input,
deadlines, cancellation, overload, autoscaling, a model without replicas,
and the metrics that show it all."""

from __future__ import annotations

import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from t5electra.clients import NO_RETRY, T5ElectraError
from t5electra.deployments.names import DETECTOR
from t5electra.protocol.v1 import detection_pb2, generation_pb2

from support.deadlines import expiring_deadline_ms, expiring_stream
from support.reference import PROMPTS, SENTENCES
from support.serving import T5_QUEUE, ServerUnderTest

pytestmark = pytest.mark.serve


INVALID_GENERATIONS = [
    ({"text": ""}, "text"),
    ({"text": "a\x00b"}, "text"),
    ({"text": "x", "parameters": {"max_new_tokens": 0}}, "parameters.max_new_tokens"),
    ({"text": "x", "parameters": {"max_new_tokens": 100000}}, "parameters.max_new_tokens"),
    ({"text": "x", "parameters": {"num_beams": 99}}, "parameters.num_beams"),
    ({"text": "x", "parameters": {"do_sample": True, "temperature": float("nan")}}, "parameters.temperature"),
    ({"text": "x", "parameters": {"do_sample": True, "top_p": 2.0}}, "parameters.top_p"),
    ({"text": "x", "parameters": {"temperature": 0.5}}, "parameters.temperature"),
    ({"text": "x", "parameters": {"repetition_penalty": -1.0}}, "parameters.repetition_penalty"),
    ({"text": "x", "parameters": {"num_return_sequences": 3}}, "parameters.num_return_sequences"),
    ({"text": "x", "parameters": {"num_beams": 2, "do_sample": True}}, "parameters.do_sample"),
    ({"text": "x", "parameters": {"stop_sequences": [""]}}, "parameters.stop_sequences[0]"),
    ({"text": "reverse words: " + "apple " * 2000}, "text"),
]


@pytest.mark.parametrize(("fields", "field"), INVALID_GENERATIONS)
def test_invalid_generate_fields_are_invalid_argument(server: ServerUnderTest, fields: dict, field: str) -> None:
    request = generation_pb2.GenerateRequest(
        text=fields["text"], parameters=generation_pb2.GenerationParameters(**fields.get("parameters", {}))
    )
    with server.channel() as channel:
        stub = server.generation_stub(channel)
        for call in (stub.Generate, lambda r, timeout: list(stub.GenerateStream(r, timeout=timeout))):
            with pytest.raises(grpc.RpcError) as raised:
                call(request, timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert raised.value.details().startswith(field + ":"), raised.value.details()
    with server.client() as client:
        assert client.health() == "SERVING"


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"text": " "}, "text"),
        ({"text": "ok", "threshold": 1.5}, "threshold"),
        ({"text": "ok", "threshold": float("nan")}, "threshold"),
    ],
)
def test_invalid_detect_fields_are_invalid_argument(server: ServerUnderTest, request_fields: dict, field: str) -> None:
    with server.channel() as channel, pytest.raises(grpc.RpcError) as raised:
        server.detection_stub(channel).DetectReplacements(
            detection_pb2.DetectReplacementsRequest(**request_fields), timeout=30
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(field + ":")


def test_beam_search_is_refused_on_the_stream(server: ServerUnderTest) -> None:
    with server.client() as client, pytest.raises(T5ElectraError) as raised:
        list(client.generate_stream(PROMPTS[0], num_beams=2))
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "GenerateStream supports num_beams=1 only" in raised.value.details


def test_overload_is_resource_exhausted_and_recovers(server: ServerUnderTest) -> None:
    server.wait_until_idle()
    request = generation_pb2.GenerateRequest(
        text=PROMPTS[0], parameters=generation_pb2.GenerationParameters(min_new_tokens=300, max_new_tokens=300)
    )
    capacity = server.settings.t5.ongoing_limit() + T5_QUEUE
    with server.channel() as channel:
        stub = server.generation_stub(channel)
        calls = [stub.Generate.future(request, timeout=120) for _ in range(capacity + 24)]
        codes = []
        for call in calls:
            try:
                call.result(timeout=0 if codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) else 120)
                codes.append(grpc.StatusCode.OK)
            except grpc.FutureTimeoutError:
                codes.append(None)
            except grpc.RpcError as error:
                codes.append(error.code())
        for call in calls:
            call.cancel()
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert not {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN} & set(codes)
    server.wait_until_idle()
    with server.client() as client:
        assert client.generate(PROMPTS[3]).text
        assert client.health() == "SERVING"


def test_detector_autoscales_up_under_load_and_back_down(server: ServerUnderTest) -> None:
    # Earlier tests' load may have scaled it up already: start from one replica.
    settle = time.monotonic() + 120
    while server.replicas(DETECTOR) != 1 and time.monotonic() < settle:
        time.sleep(0.5)
    assert server.replicas(DETECTOR) == 1
    long_text = " ".join(SENTENCES * 20)
    scaled_up = threading.Event()
    give_up = time.monotonic() + 120

    def load() -> None:
        with server.client() as client:
            while not scaled_up.is_set() and time.monotonic() < give_up:
                client.detect_replacements(long_text)

    with ThreadPoolExecutor(8) as pool:
        workers = [pool.submit(load) for _ in range(8)]
        while time.monotonic() < give_up and not scaled_up.is_set():
            time.sleep(0.5)
            if server.replicas(DETECTOR) == 2:
                scaled_up.set()
        for worker in workers:
            worker.result()
    assert scaled_up.is_set(), "Detector did not scale up to 2 replicas under load"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.replicas(DETECTOR) > 1:
        time.sleep(0.5)
    assert server.replicas(DETECTOR) == 1, "Detector did not scale back down after the load"


def test_metrics_reach_the_prometheus_endpoint(server: ServerUnderTest) -> None:
    with server.client() as client:
        client.generate(PROMPTS[0])
        client.detect_replacements(SENTENCES[0])
    expiring_stream(server, expiring_deadline_ms(server))  # counted as dropped, reason="expired"
    wanted = [
        "t5electra_requests",
        "t5electra_latency_ms",
        "t5electra_queue_ms",
        "t5electra_batch_size",
        "t5electra_tokens",
        "t5electra_dropped",
    ]
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
        except OSError:  # a scrape slower than its timeout: try again
            continue
        if all(name in text for name in wanted) and 'rpc="Generate"' in text and 'reason="expired"' in text:
            break
        time.sleep(2)
    missing = [name for name in wanted if name not in text]
    assert not missing, f"metrics missing from the endpoint: {missing}"
    assert 'reason="expired"' in text
    requests = [
        line for line in text.splitlines() if line.startswith("ray_t5electra_requests") and 'rpc="Generate"' in line
    ]
    assert any('code="OK"' in line for line in requests), requests


def test_model_without_replica_is_not_serving_and_unavailable(server: ServerUnderTest) -> None:
    """A second application whose T5 checkpoint cannot load: its ingress and
    ELECTRA come up, T5 never does. Health says so per service, and Generate
    fails fast with UNAVAILABLE instead of waiting for the deadline."""
    broken = server.deploy_broken_t5("broken")
    try:
        with server.client(application=broken, retry=NO_RETRY) as client:
            assert client.health() == "NOT_SERVING"
            assert client.health("t5electra.v1.TextGeneration") == "NOT_SERVING"
            assert client.health("t5electra.v1.ReplacementDetection") == "SERVING"
            # Liveness does not depend on models: restarting the pod would not help.
            assert client.health("liveness") == "SERVING"
            with pytest.raises(T5ElectraError) as raised:
                client.generate(PROMPTS[0], timeout=30)
            assert raised.value.code == grpc.StatusCode.UNAVAILABLE
            assert "TextGenerator has no running replica" in raised.value.details
            hint = raised.value.metadata.get("grpc-retry-pushback-ms")
            assert hint is not None and raised.value.metadata.get("retry-after-ms") == hint
            assert 2500 <= int(hint) <= 3750, "a jittered wait from 2.5 s: no replica comes back sooner"
            assert client.detect_replacements(SENTENCES[0]).tokens
            with pytest.raises(T5ElectraError) as refused:
                client.detect_replacements(SENTENCES[0], suggestions=2)
            assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert refused.value.details.startswith(
                "suggestions: this server has no generator; set electra.generator_model"
            )
    finally:
        server.delete_app(broken)
    with server.client() as client:
        assert client.health() == "SERVING"
