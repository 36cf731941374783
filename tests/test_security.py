"""Who may call: bearer tokens checked at the ingress of a real application,
through real gRPC. A second application with authentication on is deployed
next to the session's open one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from t5electra.clients import NO_RETRY, Client, T5ElectraError
from t5electra.deployments.names import DETECTOR, INGRESS, TEXT_GENERATOR
from t5electra.deployments.settings import Auth
from t5electra.protocol.inference import open_inference_pb2 as oip
from t5electra.protocol.inference import open_inference_pb2_grpc

from support.serving import ServerUnderTest
from support.tls_relay import TlsRelay, self_signed

pytestmark = pytest.mark.serve

BILLING = "billing-token-0123456789"
OPS = "ops-token-0123456789abcdef"
PROMPT = "reverse words: candle forest"


@pytest.fixture(scope="module")
def secured(server: ServerUnderTest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tokens = Path(tmp_path_factory.mktemp("auth")) / "tokens.yaml"
    tokens.write_text(
        "callers:\n"
        f"  - {{name: billing, token: {BILLING}, rpcs: [Generate, GenerateStream]}}\n"
        f"  - {{name: ops, token: {OPS}, rpcs: ['*']}}\n"
    )
    name = server.deploy_variant("secured", (INGRESS, TEXT_GENERATOR, DETECTOR), auth=Auth(tokens_file=tokens))
    try:
        yield name
    finally:
        server.delete_app(name)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(T5ElectraError) as raised:
        call()
    return raised.value.code


def test_calls_without_a_known_token_are_unauthenticated(server: ServerUnderTest, secured: str) -> None:
    with server.client(application=secured, retry=NO_RETRY) as anonymous:
        assert _code(lambda: anonymous.generate(PROMPT)) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: list(anonymous.generate_stream(PROMPT))) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: anonymous.detect_replacements("Some text.")) == grpc.StatusCode.UNAUTHENTICATED
        assert anonymous.health() == "SERVING"  # probes need no token
    with server.client(application=secured, token="forged-token-0123456789", retry=NO_RETRY) as forged:
        with pytest.raises(T5ElectraError) as raised:
            forged.generate(PROMPT)
        assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "forged-token" not in raised.value.details


def test_tokens_allow_only_their_rpcs(server: ServerUnderTest, secured: str) -> None:
    with server.client(application=secured, token=BILLING, retry=NO_RETRY) as billing:
        assert billing.generate(PROMPT).text == "forest candle"
        assert "".join(billing.generate_stream(PROMPT)) == "forest candle"
        with pytest.raises(T5ElectraError) as raised:
            billing.detect_replacements("Some text.")
        assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert "'billing' may not call DetectReplacements" in raised.value.details
    with server.client(application=secured, token=OPS, retry=NO_RETRY) as ops:
        assert ops.detect_replacements("Some text.").tokens
        assert ops.generate(PROMPT).text == "forest candle"


def test_client_tls_through_a_tls_terminating_proxy(server: ServerUnderTest) -> None:
    """The deployment pattern for TLS: the client speaks TLS to a terminating
    proxy (here a local relay; a sidecar or gateway in a mesh), which speaks
    plaintext gRPC to Ray's proxy."""
    certificate, key = self_signed()
    with TlsRelay(server.address, certificate, key) as relay:
        address = f"localhost:{relay.port}"
        with Client(address, root_certificates=certificate, application=server.settings.app_name) as client:
            assert client.health() == "SERVING"
            assert client.generate(PROMPT).text == "forest candle"
            assert "".join(client.generate_stream(PROMPT)) == "forest candle"
        with Client(f"localhost:{relay.port}", retry=NO_RETRY) as wrong_trust:
            # It fails at the relay's first bytes; the deadline is only there
            # for a machine slow to connect at all.
            with pytest.raises(T5ElectraError) as raised:
                wrong_trust.health(timeout=30)
            assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_the_open_application_stays_open(server: ServerUnderTest, secured: str) -> None:
    with server.client(application=server.settings.app_name, retry=NO_RETRY) as client:
        assert client.generate(PROMPT).text == "forest candle"


def test_the_open_inference_protocol_asks_the_same_tokens(server: ServerUnderTest, secured: str) -> None:
    """Probes answer anyone; ModelInfer needs a token that lists it."""
    request = oip.ModelInferRequest(model_name="t5")
    request.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(PROMPT.encode())
    app = ("application", secured)
    with server.channel() as channel:
        stub = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(oip.ServerLiveRequest(), metadata=[app]).live
        assert stub.ModelReady(oip.ModelReadyRequest(name="t5"), metadata=[app]).ready
        for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED), (BILLING, grpc.StatusCode.PERMISSION_DENIED)):
            metadata = [app] if token is None else [app, ("authorization", f"Bearer {token}")]
            with pytest.raises(grpc.RpcError) as raised:
                stub.ModelInfer(request, metadata=metadata, timeout=30)
            assert raised.value.code() == code
        answer = stub.ModelInfer(request, metadata=[app, ("authorization", f"Bearer {OPS}")], timeout=30)
        assert answer.outputs[0].name == "text"
