"""The served application at its limits, through real gRPC: invalid input,
deadlines, cancellation, overload, autoscaling, a model without replicas,
and the metrics that show it all."""

from __future__ import annotations

import random
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from t5electra.clients import NO_RETRY, T5ElectraError
from t5electra.clients.v1 import detection_pb2, generation_pb2
from t5electra.deployments.names import DETECTOR, TEXT_GENERATOR

from support.reference import PROMPTS, SENTENCES
from support.serving import T5_QUEUE, ServerUnderTest
from support.waiting import wait_for

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


def _generate(text: str, tokens: int) -> generation_pb2.GenerateRequest:
    parameters = generation_pb2.GenerationParameters(min_new_tokens=tokens, max_new_tokens=tokens)
    return generation_pb2.GenerateRequest(text=text, parameters=parameters)


def _decoding_takes_s(server: ServerUnderTest, steps: int, rows: int) -> float:
    """How long ``steps`` steps of ``rows`` rows take by the replica's own
    step-time line: deadlines in these tests are fractions of it, so that a
    slower machine gets proportionally longer ones (and its refusals, which
    are slower too, still come in time)."""
    info = server.t5_info()
    return steps * (info["step_ms"] + info["step_ms_per_row"] * rows) / 1000


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
    deadline_s = 0.8 * _decoding_takes_s(server, 512, 1)
    steps_before = server.t5_info()["steps"]
    with server.channel() as channel:
        stub = server.generation_stub(channel)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as raised:
                stub.Generate(_generate(PROMPTS[0], 512), timeout=deadline_s)
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
        busy = [stub.Generate.future(_generate(PROMPTS[i % len(PROMPTS)], 512), timeout=120) for i in range(rows)]
        wait_for(lambda: server.t5_info()["decoding"] >= rows, what="every row decoding", timeout=120)
        deadline_s = 0.5 * _decoding_takes_s(server, 512, rows)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Generate(_generate(PROMPTS[0], 8), timeout=deadline_s)
        patient = stub.Generate(_generate(PROMPTS[0], 8), timeout=120)
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
    request = _generate(PROMPTS[0], 512)
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


def _expiring_stream(server: ServerUnderTest) -> tuple[grpc.RpcError, int]:
    """A GenerateStream of 512 forced tokens whose deadline, sent in
    x-request-timeout-ms, is half the time they take: admitted (its first
    piece fits), it expires while decoding. The gRPC deadline is far later,
    so no cancel ever comes: the server ends it by itself, and the caller
    sees the replica's answer only after the replica is done with it.
    Returns the error and the pieces received."""
    deadline_ms = round(500 * _decoding_takes_s(server, 512, 1))
    pieces = 0
    with server.channel() as channel, pytest.raises(grpc.RpcError) as raised:
        stream = server.generation_stub(channel).GenerateStream(
            _generate(PROMPTS[0], 512), timeout=120, metadata=[("x-request-timeout-ms", str(deadline_ms))]
        )
        for _ in stream:
            pieces += 1
    return raised.value, pieces


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
    steps_before = server.t5_info()["steps"]
    logged_before = server.replica_log(TEXT_GENERATOR).count("DeadlineExceeded")
    error, pieces = _expiring_stream(server)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details().startswith("deadline exceeded:"), error.details()  # the server's, not the client's
    wait_for(lambda: server.t5_info()["decoding"] == 0, what="the expired row to leave the batch")
    assert pieces > 0 and server.t5_info()["steps"] - steps_before < 512
    assert server.replica_log(TEXT_GENERATOR).count("DeadlineExceeded") == logged_before


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
    _expiring_stream(server)  # counted as dropped, reason="expired"
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
