"""The ingress's RPC methods without Ray: every unary RPC is built by
``calls.unary``, which answers the RPC's empty response when the body
fails (a forgotten ``return`` after the failure used to answer None),
``bounded.together`` fails a call made of several model calls as one, and
``bounded.pieces`` cancels the model's stream when its caller leaves."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest

from t5electra import protocol
from t5electra.deployments import bounded
from t5electra.deployments.calls import Call, unary
from t5electra.deployments.ingress import IngressDeployment
from t5electra.deployments.refusals import DeadlineExceeded, DeadlineTooShort
from t5electra.protocol.v1 import generation_pb2
from t5electra.server.errors import InvalidInput

pytestmark = pytest.mark.unit

PROBES = {"ServerLive", "ServerReady", "Check"}
"""Unary RPCs that answer anyone, without a call record: nothing to fail."""


class Host:
    """What ``unary`` needs of the ingress: an ``_answering`` that swallows
    a failure once its status is set, as the ingress's does."""

    def __init__(self) -> None:
        self.codes: list[grpc.StatusCode] = []

    @asynccontextmanager
    async def _answering(self, rpc: str, grpc_context: object) -> AsyncIterator[Call]:
        call = Call(rpc, "id")
        try:
            yield call
        except InvalidInput:
            call.code = grpc.StatusCode.INVALID_ARGUMENT
        self.codes.append(call.code)

    @unary(generation_pb2.GenerateResponse)
    async def Generate(
        self, call: Call, request: generation_pb2.GenerateRequest, grpc_context: object
    ) -> generation_pb2.GenerateResponse:
        """The body."""
        if not request.text:
            raise InvalidInput("text", "must not be empty")
        return generation_pb2.GenerateResponse(sequences=[generation_pb2.GeneratedSequence(text=request.text)])


def test_a_failed_unary_body_answers_the_rpcs_empty_response() -> None:
    host = Host()
    answered = asyncio.run(host.Generate(generation_pb2.GenerateRequest(text="hi"), grpc_context=None))
    assert answered.sequences[0].text == "hi"
    failed = asyncio.run(host.Generate(generation_pb2.GenerateRequest(), grpc_context=None))
    assert failed == generation_pb2.GenerateResponse()
    assert host.codes == [grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT]
    assert Host.Generate.__name__ == "Generate" and Host.Generate.__doc__ == "The body."


def test_every_unary_rpc_of_the_ingress_is_built_by_unary_with_its_response_type() -> None:
    ingress = IngressDeployment
    services = (*protocol.SERVICES, protocol.INFERENCE)
    for method in (m for s in services for m in s.methods if not m.client_streaming and not m.server_streaming):
        if method.name in PROBES:
            continue
        built = getattr(ingress, method.name)
        assert getattr(built, "unary_response", None) is not None, f"{method.name} is not built by calls.unary"
        assert built.unary_response.DESCRIPTOR.full_name == method.output_type.full_name, method.name


class Response:
    """A Ray response as ``bounded.answer`` awaits it: ``seconds`` then its
    value or error; records whether the call was cancelled."""

    def __init__(self, seconds: float, value: object = None, error: Exception | None = None) -> None:
        self.seconds, self.value, self.error = seconds, value, error
        self.cancelled = False

    def __await__(self):
        return self._answer().__await__()

    async def _answer(self) -> object:
        await asyncio.sleep(self.seconds)
        if self.error is not None:
            raise self.error
        return self.value

    def cancel(self) -> None:
        self.cancelled = True


def test_one_failure_fails_the_call_and_cancels_the_other_model_calls() -> None:
    slow = [Response(60, "late") for _ in range(3)]
    failing = Response(0, error=InvalidInput("text", "too long"))

    async def main() -> None:
        await bounded.together(bounded.answer(r, None) for r in (slow[0], failing, *slow[1:]))

    with pytest.raises(InvalidInput, match="too long"):
        asyncio.run(asyncio.wait_for(main(), 30))
    assert all(r.cancelled for r in slow) and not failing.cancelled


def test_answers_come_back_in_order_when_every_call_succeeds() -> None:
    responses = [Response(0.02, "a"), Response(0, "b"), Response(0.01, "c")]
    answers = asyncio.run(bounded.together(bounded.answer(r, None) for r in responses))
    assert answers == ["a", "b", "c"] and not any(r.cancelled for r in responses)


def test_a_deadline_refusal_a_replica_returns_keeps_its_message() -> None:
    """A replica's DeadlineTooShort is a TimeoutError too: it must not be
    taken for the ingress's own wait running out."""
    refusal = DeadlineTooShort("the request needs about 541 ms of decoding even on an idle replica")
    response = Response(0, refusal)
    with pytest.raises(DeadlineTooShort, match="541 ms of decoding"):
        asyncio.run(bounded.answer(response, None))
    assert not response.cancelled
    late = Response(60, "late")
    with pytest.raises(DeadlineExceeded, match="before the model answered"):
        asyncio.run(bounded.answer(late, time.time() + 0.05))
    assert late.cancelled


class Pieces:
    """A model deployment's stream, as a DeploymentResponseGenerator gives it."""

    def __init__(self, count: int) -> None:
        self.left, self.cancelled = count, False

    def __aiter__(self) -> Pieces:
        return self

    async def __anext__(self) -> str:
        if not self.left:
            raise StopAsyncIteration
        self.left -= 1
        return "piece"

    def cancel(self) -> None:
        self.cancelled = True


def test_a_stream_left_early_cancels_the_model_call_and_one_read_to_its_end_does_not() -> None:
    """Serve's direct ingress closes a leaving caller's stream instead of
    cancelling its task: closing must reach the model call (it decoded on)."""

    async def read(pieces: Pieces, wanted: int) -> None:
        async with contextlib.aclosing(bounded.pieces(pieces, None)) as messages:
            async for _ in messages:
                wanted -= 1
                if not wanted:
                    return

    left = Pieces(10)
    asyncio.run(read(left, 2))
    assert left.cancelled and left.left == 8
    whole = Pieces(3)
    asyncio.run(read(whole, 99))
    assert not whole.cancelled
