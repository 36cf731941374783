"""Served deadlines and cancellation, through real gRPC: work that cannot
fit its deadline is refused at once with what it needs, a short deadline
behind a full batch is refused without disturbing it, cancelled and expired
streams leave the batch, and the replica logs no traceback for them."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from t5electra.deployments.names import TEXT_GENERATOR
from t5electra.protocol.v1 import generation_pb2

from support.deadlines import decoding_takes_s, expiring_deadline_ms, expiring_stream, forced
from support.reference import PROMPTS
from support.serving import ServerUnderTest
from support.waiting import wait_for

pytestmark = pytest.mark.serve


def test_work_that_cannot_fit_its_grpc_deadline_on_an_idle_server_is_deadline_exceeded_at_once(
    server: ServerUnderTest,
) -> None:
    """A plain gRPC caller (no project metadata) whose deadline is half the
    time 512 forced tokens take on an idle server: the proxy forwards the
    deadline and the replica refuses it before a step, as DEADLINE_EXCEEDED
    with a message saying what the work needs: not "overloaded", and no
    pushback, which would send the caller's retries into a loop. Every call
    after the first is refused so, by the replica or by the ingress's gate."""
    server.wait_until_idle()
    with server.client() as client:
        client.generate(PROMPTS[1])  # a step timed: the replica knows its step time
    # 0.8 of the work's time: it cannot fit (admission holds it to 1.2x,
    # its margin), and the refusal's way back has most of the deadline.
    deadline_s = 0.8 * decoding_takes_s(server, 512, 1)
    steps_before = server.t5_info()["steps"]
    with server.channel() as channel:
        stub = server.generation_stub(channel)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as raised:
                stub.Generate(forced(PROMPTS[0], 512), timeout=deadline_s)
            details = raised.value.details()
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, details
            assert "even on an idle replica (512 steps)" in details and "overloaded" not in details
            trailers = dict(raised.value.trailing_metadata() or ())
            assert "grpc-retry-pushback-ms" not in trailers and "retry-after-ms" not in trailers
    assert server.t5_info()["steps"] == steps_before


def test_a_short_deadline_behind_a_full_batch_is_refused_and_the_batch_is_not_disturbed(
    server: ServerUnderTest,
) -> None:
    """Every row busy with 512 forced tokens; a caller whose gRPC deadline
    is half the batch's time (about 600 ms on two cores) wants 8
    tokens: it could not start in time, so it is refused at once
    (RESOURCE_EXHAUSTED), not held until its deadline; a caller with time
    to wait is served after the batch."""
    server.wait_until_idle()
    rows = server.settings.t5.max_batch_size
    with server.channel() as channel:
        stub = server.generation_stub(channel)
        busy = [stub.Generate.future(forced(PROMPTS[i % len(PROMPTS)], 512), timeout=120) for i in range(rows)]
        wait_for(lambda: server.t5_info()["decoding"] >= rows, what="every row decoding", timeout=120)
        deadline_s = 0.5 * decoding_takes_s(server, 512, rows)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Generate(forced(PROMPTS[0], 8), timeout=deadline_s)
        patient = stub.Generate(forced(PROMPTS[0], 8), timeout=120)
        assert all(call.result().sequences for call in busy)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, raised.value.details()
    assert "overloaded" in raised.value.details()
    # The pushback is when it could start: after the batch, past the whole deadline.
    assert int(dict(raised.value.trailing_metadata())["grpc-retry-pushback-ms"]) >= deadline_s * 1000
    assert patient.sequences[0].generated_tokens == 8


def test_cancelled_stream_stops_generating(server: ServerUnderTest) -> None:
    """The client cancels a 512-token stream while the model is busy with a
    long beam search in a concurrent batch, so the proxy is waiting for the
    stream's next piece: the cancel Ray's proxy propagates by itself (one that
    lands while it writes a piece needs the proxy extension: see the
    random-moments test below)."""
    server.wait_until_idle()
    steps_before = server.t5_info()["steps"]
    long = generation_pb2.GenerationParameters(min_new_tokens=512, max_new_tokens=512)
    beam = generation_pb2.GenerationParameters(num_beams=8, min_new_tokens=400, max_new_tokens=400)
    with server.channel() as channel:
        stub = server.generation_stub(channel)
        stream = stub.GenerateStream(generation_pb2.GenerateRequest(text=PROMPTS[0], parameters=long), timeout=120)
        next(stream)
        busy = stub.Generate.future(generation_pb2.GenerateRequest(text=PROMPTS[1], parameters=beam), timeout=120)
        wait_for(lambda: server.t5_info()["decoding"] >= 2, what="the beam search to join the stream's batch")
        stream.cancel()
        busy.result()
    server.wait_until_idle()
    assert server.t5_info()["steps"] - steps_before < 512


def test_streams_cancelled_at_random_moments_all_leave_the_batch(server: ServerUnderTest) -> None:
    """200 GenerateStreams of 512 forced tokens, in rounds of 20 at once,
    each cancelled after a random number of pieces and a random pause, so
    that many cancels land while Ray's proxy writes a piece (the moment the
    proxy extension exists for). Every row leaves: each round runs fewer
    steps than one stream left alone would, and the replica ends up idle."""
    rng = random.Random(20)
    request = forced(PROMPTS[0], 512)
    freed_after: list[float] = []
    with server.channel() as channel:
        stub = server.generation_stub(channel)

        def cancel_one(pieces: int, pause: float) -> None:
            stream = stub.GenerateStream(request, timeout=120)
            for _, _ in zip(range(pieces), stream, strict=False):
                pass
            time.sleep(pause)
            stream.cancel()

        for _ in range(10):
            server.wait_until_idle()
            steps_before = server.t5_info()["steps"]
            plan = [(rng.randint(1, 6), rng.uniform(0, 0.02)) for _ in range(20)]
            with ThreadPoolExecutor(20) as pool:
                list(pool.map(lambda p: cancel_one(*p), plan))
            cancelled = time.monotonic()
            server.wait_until_idle()
            freed_after.append(time.monotonic() - cancelled)
            assert server.t5_info()["decoding"] == 0
            assert server.t5_info()["steps"] - steps_before < 512
    print(f"\n200 cancelled streams: rows freed {max(freed_after):.2f} s at most after a round's last cancel")


def test_a_stream_ends_at_the_callers_deadline_even_if_no_cancel_arrives(server: ServerUnderTest) -> None:
    """The deadline the client sends in x-request-timeout-ms ends the work
    on the server by itself (this is what bounds a stream whose cancel is
    lost where the proxy is not extended: README, Known limits). The
    caller's deadline is the caller's choice: the replica counts the expiry
    and answers it, and logs no ERROR with a traceback for it (Ray's path
    for a raised error)."""
    server.wait_until_idle()
    with server.client() as client:
        client.generate(PROMPTS[1])  # a step timed: the replica knows its step time
    deadline_ms = expiring_deadline_ms(server)
    steps_before = server.t5_info()["steps"]
    logged_before = server.replica_log(TEXT_GENERATOR).count("DeadlineExceeded")
    error, pieces = expiring_stream(server, deadline_ms)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details().startswith("deadline exceeded:"), error.details()  # the server's, not the client's
    wait_for(lambda: server.t5_info()["decoding"] == 0, what="the expired row to leave the batch")
    assert pieces > 0 and server.t5_info()["steps"] - steps_before < 512
    assert server.replica_log(TEXT_GENERATOR).count("DeadlineExceeded") == logged_before
