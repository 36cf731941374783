"""``t5electra serve --front haproxy``: Serve's direct ingress behind
HAProxy, no Python proxy on the request path. A plain grpcio client on the
one port gets answers and health; its gRPC deadline reaches admission (the
proxy extension adds it in the ingress replica's own server), so work that
cannot fit is refused at once by the server; and the server stops on
SIGTERM."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from t5electra.clients import Client
from t5electra.protocol.v1 import generation_pb2, generation_pb2_grpc

from support.reference import PROMPTS, SENTENCES
from support.served import Served, serving

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def front() -> Iterator[Served]:
    with serving("--front", "haproxy") as running:
        yield running


def test_a_plain_client_is_answered_through_haproxy(front: Served) -> None:
    with grpc.insecure_channel(front.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    with Client(front.address) as client:
        assert client.generate(PROMPTS[0]).text
        assert client.detect_replacements(SENTENCES[0]).tokens
        assert "".join(client.generate_stream(PROMPTS[1])) == client.generate(PROMPTS[1]).text


def test_a_plain_callers_grpc_deadline_reaches_admission(front: Served) -> None:
    """512 forced tokens, served once without a deadline to time them; then
    a plain gRPC deadline of 0.4 of that time cannot fit them on any
    machine: the server refuses at once, saying what the work needs
    (grpcio's own expiry would say "Deadline Exceeded", and only at the
    deadline)."""
    parameters = generation_pb2.GenerationParameters(min_new_tokens=512, max_new_tokens=512)
    request = generation_pb2.GenerateRequest(text=PROMPTS[0], parameters=parameters)
    with grpc.insecure_channel(front.address) as channel:
        generate = generation_pb2_grpc.TextGenerationStub(channel).Generate
        started = time.monotonic()
        generate(request, timeout=120)
        deadline_s = 0.4 * (time.monotonic() - started)
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                generate(request, timeout=deadline_s)
            assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert refused.value.details().startswith("deadline exceeded: the request needs"), refused.value.details()
        assert time.monotonic() - started < deadline_s


def test_sigterm_stops_it(front: Served) -> None:
    front.process.send_signal(signal.SIGTERM)
    assert front.process.wait(timeout=120) == 0, "".join(front.output[-40:])
