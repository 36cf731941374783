"""Served requests with deadlines a test can rely on: work sized by the
replica's own step times, so that a slower machine gets proportionally
longer deadlines, and a stream that expires while it decodes."""

from __future__ import annotations

import time

import grpc
import pytest

from t5electra.protocol.v1 import generation_pb2

from support.reference import PROMPTS
from support.serving import ServerUnderTest


def forced(text: str, tokens: int) -> generation_pb2.GenerateRequest:
    parameters = generation_pb2.GenerationParameters(min_new_tokens=tokens, max_new_tokens=tokens)
    return generation_pb2.GenerateRequest(text=text, parameters=parameters)


def decoding_takes_s(server: ServerUnderTest, steps: int, rows: int) -> float:
    """How long ``steps`` steps of ``rows`` rows take by the replica's own
    step-time line: deadlines in these tests are fractions of it, so that a
    slower machine gets proportionally longer ones (and its refusals, which
    are slower too, still come in time)."""
    info = server.t5_info()
    return steps * (info["step_ms"] + info["step_ms_per_row"] * rows) / 1000


def expiring_deadline_ms(server: ServerUnderTest) -> int:
    """A deadline that 512 forced tokens of one stream cannot meet: 0.4 of
    the lesser of the replica's step-time line and the same work's served
    time, measured now. The line alone can overestimate a lone row's step
    after long batches (it was fitted on them), and a deadline above the
    real time lets the stream finish."""
    started = time.monotonic()
    with server.channel() as channel:
        server.generation_stub(channel).Generate(forced(PROMPTS[0], 512), timeout=120)
    served_s = time.monotonic() - started
    return round(400 * min(served_s, decoding_takes_s(server, 512, 1)))


def expiring_stream(server: ServerUnderTest, deadline_ms: int) -> tuple[grpc.RpcError, int]:
    """A GenerateStream of 512 forced tokens whose deadline, sent in
    x-request-timeout-ms, is shorter than they take: admitted (its first
    piece fits), it expires while decoding. The gRPC deadline is far later,
    so no cancel ever comes: the server ends it by itself, and the caller
    sees the replica's answer only after the replica is done with it.
    Returns the error and the pieces received."""
    pieces = 0
    with server.channel() as channel, pytest.raises(grpc.RpcError) as raised:
        stream = server.generation_stub(channel).GenerateStream(
            forced(PROMPTS[0], 512), timeout=120, metadata=[("x-request-timeout-ms", str(deadline_ms))]
        )
        for _ in stream:
            pieces += 1
    return raised.value, pieces
