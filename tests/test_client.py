"""The Python clients against a scripted local gRPC server: retries,
deadlines, errors, metadata and TLS."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from t5electra.clients import NO_RETRY, AsyncClient, Client, RetryPolicy, T5ElectraError
from t5electra.protocol.v1 import generation_pb2, generation_pb2_grpc
from t5electra.tools.load.report import percentile

from support.tls_relay import self_signed

pytestmark = pytest.mark.unit

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05)


class ScriptedGeneration(generation_pb2_grpc.TextGenerationServicer):
    """Answers Generate with the next status code of a script (OK when the
    script runs out), recording the metadata of every attempt."""

    def __init__(self) -> None:
        self.script: list[grpc.StatusCode] = []
        self.attempts: list[dict[str, str]] = []
        self.delay = 0.0
        self.stream_cancelled = threading.Event()

    def GenerateStream(self, request, context):
        """One word a message, endlessly, until the caller cancels."""
        context.add_callback(self.stream_cancelled.set)
        while context.is_active():
            yield generation_pb2.GenerateStreamResponse(text="word ")
            time.sleep(0.01)

    def Generate(self, request, context):
        self.attempts.append(dict(context.invocation_metadata()))
        time.sleep(self.delay)
        code = self.script.pop(0) if self.script else grpc.StatusCode.OK
        if code != grpc.StatusCode.OK:
            context.set_trailing_metadata([("retry-after-ms", "1")])
            context.abort(code, f"scripted {code.name}")
        return generation_pb2.GenerateResponse(
            sequences=[
                generation_pb2.GeneratedSequence(text=request.text[::-1], finish_reason=generation_pb2.EOS_TOKEN)
            ]
        )


def _server(credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.Server, ScriptedGeneration, int]:
    servicer = ScriptedGeneration()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    generation_pb2_grpc.add_TextGenerationServicer_to_server(servicer, server)
    address = "localhost:0" if credentials else "127.0.0.1:0"
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    server.start()
    return server, servicer, port


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedGeneration, str]]:
    server, servicer, port = _server()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_retryable_codes_are_retried(scripted, code: grpc.StatusCode) -> None:
    servicer, address = scripted
    servicer.script = [code, code]
    with Client(address, retry=FAST_RETRY) as client:
        assert client.generate("abc").text == "cba"
    assert len(servicer.attempts) == 3


def test_retries_stop_at_the_bound(scripted) -> None:
    servicer, address = scripted
    servicer.script = [grpc.StatusCode.UNAVAILABLE] * 5
    with Client(address, retry=FAST_RETRY) as client, pytest.raises(T5ElectraError) as raised:
        client.generate("abc")
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.metadata["retry-after-ms"] == "1"
    assert len(servicer.attempts) == FAST_RETRY.max_attempts


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL, grpc.StatusCode.PERMISSION_DENIED]
)
def test_other_codes_are_not_retried(scripted, code: grpc.StatusCode) -> None:
    servicer, address = scripted
    servicer.script = [code]
    with Client(address, retry=FAST_RETRY) as client, pytest.raises(T5ElectraError) as raised:
        client.generate("abc")
    assert (raised.value.code, raised.value.details) == (code, f"scripted {code.name}")
    assert len(servicer.attempts) == 1


def test_deadline_bounds_all_attempts(scripted) -> None:
    servicer, address = scripted
    servicer.delay = 0.3
    servicer.script = [grpc.StatusCode.UNAVAILABLE] * 10
    patient = RetryPolicy(max_attempts=10, initial_backoff_s=0.01, max_backoff_s=0.01)
    started = time.monotonic()
    with Client(address, retry=patient) as client, pytest.raises(T5ElectraError) as raised:
        client.generate("abc", timeout=0.5)
    assert raised.value.code in {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE}
    assert len(servicer.attempts) <= 2
    assert time.monotonic() - started < 5


def test_metadata_carries_request_id_application_and_token(scripted) -> None:
    servicer, address = scripted
    with Client(address, application="t5electra", token="s3cret") as client:
        client.generate("abc", request_id="r-1")
    (sent,) = servicer.attempts
    assert sent["x-request-id"] == "r-1"
    assert sent["application"] == "t5electra"
    assert sent["authorization"] == "Bearer s3cret"


def test_unknown_parameter_is_a_type_error(scripted) -> None:
    _, address = scripted
    with Client(address) as client, pytest.raises(TypeError, match="unknown generation parameters: \\['beams'\\]"):
        client.generate("abc", beams=2)


def test_async_client_retries_too(scripted) -> None:
    servicer, address = scripted
    servicer.script = [grpc.StatusCode.UNAVAILABLE]

    async def call() -> str:
        async with AsyncClient(address, retry=FAST_RETRY) as client:
            return (await client.generate("xyz")).text

    assert asyncio.run(call()) == "zyx"
    assert len(servicer.attempts) == 2


def test_tls_channel_to_a_tls_endpoint() -> None:
    certificate, key = self_signed()
    server, _, port = _server(grpc.ssl_server_credentials([(key, certificate)]))
    try:
        with Client(f"localhost:{port}", root_certificates=certificate) as client:
            assert client.generate("tls").text == "slt"
        with Client(f"localhost:{port}", retry=RetryPolicy(max_attempts=1)) as plain:
            # A plaintext client fails at the TLS endpoint's first bytes; the
            # deadline is only there for a machine slow to connect at all.
            with pytest.raises(T5ElectraError) as raised:
                plain.generate("tls", timeout=30)
            assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)


def test_a_stream_the_caller_leaves_is_cancelled(scripted) -> None:
    servicer, address = scripted
    with Client(address, retry=NO_RETRY) as client:
        for number, _ in enumerate(client.generate_stream("endless")):
            if number == 2:
                break
        assert servicer.stream_cancelled.wait(60), "the server saw the call end"

    async def leave_early() -> None:
        servicer.stream_cancelled.clear()
        async with AsyncClient(address, retry=NO_RETRY) as client:
            stream = client.generate_stream("endless").__aiter__()
            await anext(stream)
            await stream.aclose()
            assert await asyncio.to_thread(servicer.stream_cancelled.wait, 60), "the server saw the call end"

    asyncio.run(leave_early())


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50, 90, 99)
    assert percentile([], 50) is None


def test_the_published_service_config_is_the_clients_default_policy() -> None:
    """clients/service_config.json is what Go or Java clients are told to
    use; it must say what the Python client does by default."""
    import json

    from t5electra.clients.options import SERVICE_CONFIG

    assert json.loads(SERVICE_CONFIG.read_text()) == RetryPolicy().service_config()
