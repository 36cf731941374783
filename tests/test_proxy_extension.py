"""The proxy extension's parts that need no proxy: the deadline it adds to
a call's metadata (in the proxy and in an ingress replica's own server),
and where it refuses to install. Its effect through
Ray's real proxy is tested end to end in ``test_serve_deadlines.py`` (a plain
client's deadline refused at once; streams cancelled mid-write)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from t5electra.deployments import proxy_extension
from t5electra.deployments.proxy_extension import DEADLINE_KEY, DeadlineContext

pytestmark = pytest.mark.unit


class GrpcContext:
    """What the extension reads of grpcio's servicer context."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], remaining: float | None) -> None:
        self._metadata, self._remaining = metadata, remaining
        self.codes: list[object] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return self._remaining

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"

    def set_code(self, code: object) -> None:
        self.codes.append(code)


def test_the_callers_deadline_joins_the_metadata_and_a_forged_one_is_dropped() -> None:
    before = time.time()
    context = DeadlineContext(GrpcContext((("x-request-id", "r1"), (DEADLINE_KEY, "1")), remaining=2.0))
    metadata = dict(context.invocation_metadata())
    assert metadata["x-request-id"] == "r1"
    assert before + 1.999 <= int(metadata[DEADLINE_KEY]) / 1000 <= time.time() + 2.0  # whole milliseconds
    assert [key for key, _ in context.invocation_metadata()].count(DEADLINE_KEY) == 1


def test_a_call_without_a_deadline_gets_none_and_the_context_still_delegates() -> None:
    grpc_context = GrpcContext((("x-request-id", "r2"),), remaining=None)
    context = DeadlineContext(grpc_context)
    assert DEADLINE_KEY not in dict(context.invocation_metadata())
    context.set_code("OK")
    assert grpc_context.codes == ["OK"]
    context.finish()  # the call is over: nothing reaches grpcio's context any more
    context.set_code("LATE")
    assert grpc_context.codes == ["OK"] and context.peer() == "ipv4:127.0.0.1:5000"


def test_only_serves_proxy_and_an_ingress_replicas_own_server_are_extended() -> None:
    class OtherServer:  # a gRPC server whose handlers neither Serve's proxy nor a replica makes
        service_handler_factory = staticmethod(lambda **kwargs: None)

    server = OtherServer()
    assert proxy_extension.install(server) is False
    assert server.service_handler_factory is OtherServer.service_handler_factory


def _direct(streaming_type: object, handler: object) -> object:
    """The extended handler an ingress replica's server would get."""
    make = proxy_extension._replica_stream
    return proxy_extension._extended(make, lambda **kwargs: handler, "/pkg.Service/Method", streaming_type)


def test_an_ingress_replicas_own_handlers_see_the_callers_deadline() -> None:
    from ray.serve._private.proxy_request_response import gRPCStreamingType

    seen = []

    async def unary(request: str, context: object) -> str:
        seen.append(dict(context.invocation_metadata()))
        return request.upper()

    answer = asyncio.run(_direct(gRPCStreamingType.UNARY_UNARY, unary)("hi", GrpcContext((), remaining=1.5)))
    assert answer == "HI" and DEADLINE_KEY in seen[0]


def test_an_ingress_replicas_stream_stops_when_a_cancel_lands_during_a_write() -> None:
    """A cancel that lands while grpcio writes a piece reaches the handler's
    frame, and Serve's generator is closed at once (which is what stops the
    call), not when it is collected."""
    from ray.serve._private.proxy_request_response import gRPCStreamingType

    closed = []

    async def pieces(request: str, context: object) -> AsyncIterator[str]:
        try:
            for n in range(100):
                yield f"{request}{n}"
        finally:
            closed.append(dict(context.invocation_metadata()))

    class Writing(GrpcContext):
        def __init__(self) -> None:
            super().__init__((), remaining=3.0)
            self.written: list[str] = []

        async def write(self, piece: str) -> None:
            if len(self.written) == 2:
                raise asyncio.CancelledError  # the caller left during this write
            self.written.append(piece)

    context = Writing()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_direct(gRPCStreamingType.UNARY_STREAM, pieces)("p", context))
    assert context.written == ["p0", "p1"]
    assert len(closed) == 1 and DEADLINE_KEY in closed[0]
