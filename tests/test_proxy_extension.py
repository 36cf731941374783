"""The proxy extension's parts that need no proxy: the deadline it adds to
a call's metadata, and where it refuses to install. Its effect through
Ray's real proxy is tested end to end in ``test_serve_deadlines.py`` (a plain
client's deadline refused at once; streams cancelled mid-write)."""

from __future__ import annotations

import time

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


def test_only_serves_proxy_is_extended() -> None:
    class ReplicaServer:  # a direct-ingress replica's server: its factory is not the proxy's
        service_handler_factory = staticmethod(lambda **kwargs: None)

    server = ReplicaServer()
    assert proxy_extension.install(server) is False
    assert server.service_handler_factory is ReplicaServer.service_handler_factory
