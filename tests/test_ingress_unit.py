"""The ingress as a plain class, without Ray: model handles that answer
what the test chose, Serve's status fixed, a recording gRPC context. What
a caller meets at the first hop: the proto's answer, the status code each
failure maps to with its pushback, admission learnt from a replica's
refusal (the next request refused at the ingress, never reaching the
model), and UNAVAILABLE while a model has no running replica."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import Any

import grpc
import pytest

from t5electra.deployments.health import Snapshot
from t5electra.deployments.ingress import IngressDeployment
from t5electra.deployments.names import DETECTOR, TEXT_GENERATOR
from t5electra.deployments.refusals import Overloaded
from t5electra.deployments.replies import BatchTiming, Horizon, Reply, Usage
from t5electra.deployments.servicers import DETECTION_SERVICE, GENERATION_SERVICE
from t5electra.deployments.settings import Settings
from t5electra.protocol.v1 import generation_pb2
from t5electra.server.domain import FinishReason, GeneratedSequence, GenerationRequest, GenerationResult
from t5electra.server.errors import InvalidInput

pytestmark = pytest.mark.unit

SERVICES = {GENERATION_SERVICE: TEXT_GENERATOR, DETECTION_SERVICE: DETECTOR}


class Answered:
    """A Ray response as the ingress awaits it, already answered."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, Any]:
        yield from asyncio.sleep(0).__await__()
        if isinstance(self._value, InvalidInput):  # raised in the replica, as Ray raises it here
            raise self._value
        return self._value

    def cancel(self) -> None:
        """Nothing runs behind it."""


class Method:
    def __init__(self, answer: Callable[[GenerationRequest], Any]) -> None:
        self._answer = answer
        self.calls: list[GenerationRequest] = []

    def remote(self, request: GenerationRequest, trace: object = None) -> Answered:
        self.calls.append(request)
        return Answered(self._answer(request))


class Handle:
    """A model deployment's handle whose methods answer with ``answer``."""

    def __init__(self, answer: Callable[[GenerationRequest], Any]) -> None:
        self.generate = self.detect_many = Method(answer)

    def options(self, **_: Any) -> Handle:
        return self


class Context:
    """What the ingress uses of Ray's gRPC context, recorded."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._metadata = metadata
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: dict[str, str] = {}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, metadata: list[tuple[str, str]]) -> None:
        self.trailers.update(metadata)


def _echo(request: GenerationRequest) -> Reply[GenerationResult]:
    sequence = GeneratedSequence(request.text.upper(), FinishReason.EOS_TOKEN, 2)
    return Reply(GenerationResult((sequence,), 3), "fake-t5", Usage(3, 2), BatchTiming(1.0, 2.0, 1, 3.0, 2))


def _ingress(answer: Callable[[GenerationRequest], Any], replicas: int = 1) -> tuple[IngressDeployment, Handle]:
    t5 = Handle(answer)
    running = Snapshot(True, {TEXT_GENERATOR: replicas, DETECTOR: replicas}, SERVICES)
    return IngressDeployment(t5, Handle(_echo), Settings.load(), read_status=lambda: running), t5  # type: ignore[arg-type]


def _generate(
    ingress: IngressDeployment, text: str, parameters: dict[str, Any] | None = None, timeout_ms: int | None = None
) -> tuple[generation_pb2.GenerateResponse, Context]:
    request = generation_pb2.GenerateRequest(text=text, parameters=parameters or {})
    context = Context((("x-request-timeout-ms", str(timeout_ms)),) if timeout_ms else ())
    return asyncio.run(ingress.Generate(request, grpc_context=context)), context


def test_an_answer_comes_back_as_the_proto_with_its_usage_and_timing_trailers() -> None:
    ingress, t5 = _ingress(_echo)
    response, context = _generate(ingress, "hallo welt")
    assert response.sequences[0].text == "HALLO WELT" and response.model == "fake-t5"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3, 2)
    assert context.code is None or context.code == grpc.StatusCode.OK
    assert "server-timing" in context.trailers and [r.text for r in t5.generate.calls] == ["hallo welt"]


def test_a_field_the_replica_refuses_is_invalid_argument_naming_it_with_an_empty_answer() -> None:
    def validate(request: GenerationRequest) -> Reply[GenerationResult] | InvalidInput:
        if request.parameters.temperature < 0:
            return InvalidInput("parameters.temperature", "must be > 0")
        return _echo(request)

    ingress, _ = _ingress(validate)
    response, context = _generate(ingress, "hallo", {"temperature": -1.0})
    assert response == generation_pb2.GenerateResponse()
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "parameters.temperature" in context.details


def test_a_replicas_refusal_is_resource_exhausted_with_pushback_and_the_ingress_learns_from_it() -> None:
    def refuse(request: GenerationRequest) -> Overloaded:
        # It could start in 60 s: no deadline under that can wait. Stamped a
        # minute ahead (a replica clock ahead of the ingress's), so that the
        # horizon is still fresh however slowly this machine reaches the
        # second request.
        return Overloaded("the work queued ahead", 60_000, Horizon(60.0, 0.01, 8.0, time.time() + 60, 0.01))

    ingress, t5 = _ingress(refuse)
    _, first = _generate(ingress, "hallo", timeout_ms=5_000)
    assert first.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert first.trailers["grpc-retry-pushback-ms"] and first.trailers["retry-after-ms"]
    _, second = _generate(ingress, "hallo", timeout_ms=5_000)
    assert second.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(t5.generate.calls) == 1, "the second request was refused on the learnt horizon"


def test_a_model_with_no_running_replica_is_unavailable_at_once() -> None:
    ingress, t5 = _ingress(_echo, replicas=0)
    _, context = _generate(ingress, "hallo")
    assert context.code == grpc.StatusCode.UNAVAILABLE and "no running replica" in context.details
    assert t5.generate.calls == []
