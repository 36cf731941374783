"""Random and malformed requests through real gRPC (hypothesis): never
INTERNAL or UNKNOWN, every request the in-process engine accepts answered
exactly as the engine answers it in-process, every request it refuses
refused with INVALID_ARGUMENT, and the server healthy afterwards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t5electra.deployments import wire
from t5electra.protocol.v1 import detection_pb2, generation_pb2
from t5electra.server.detector import ReplacementDetector
from t5electra.server.errors import InvalidInput
from t5electra.server.generator import T5Generator

from support.serving import ServerUnderTest

pytestmark = pytest.mark.serve

EXAMPLES = 120
UNARY_METHODS = ("/t5electra.v1.TextGeneration/Generate", "/t5electra.v1.ReplacementDetection/DetectReplacements")
SANE = ["reverse words: apple river stone", "sort numbers: 9 4 7", "count words: a b c", "Short text here."]

texts = st.one_of(
    st.sampled_from(SANE),
    st.text(max_size=300),
    st.binary(max_size=200).map(lambda raw: raw.decode("utf-8", "replace")),
    st.text(alphabet=st.characters(categories=["Cc", "Zs", "Zl"]), max_size=20),
    st.sampled_from(["", " ", "\n\t", "</s><pad><unk>", "[CLS] [SEP] [MASK]", "\u200b" * 5, "é" * 30_000]),
)
floats = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 1.2]),
)
uint32 = st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1))


@st.composite
def plausible_generation_requests(draw: st.DrawFn) -> generation_pb2.GenerateRequest:
    """Mostly valid requests, so that the fuzzing checks answers and not only refusals."""
    max_new = draw(st.integers(1, 12))
    fields: dict = {"max_new_tokens": max_new, "min_new_tokens": draw(st.integers(0, max_new))}
    if draw(st.booleans()):
        fields |= {
            "do_sample": True,
            "temperature": draw(st.floats(0.25, 2.0, width=32)),
            "top_k": draw(st.integers(0, 50)),
            "top_p": draw(st.floats(0.25, 1.0, width=32)),
            "seed": draw(st.integers(0, 2**64 - 1)),
            "num_return_sequences": draw(st.integers(1, 3)),
        }
    else:
        beams = draw(st.integers(1, 3))
        fields |= {"num_beams": beams, "num_return_sequences": draw(st.integers(1, beams)) if beams > 1 else 1}
    fields["repetition_penalty"] = draw(st.floats(0.5, 2.0, width=32))
    stops = draw(st.lists(st.text(min_size=1, max_size=8), max_size=3))
    parameters = generation_pb2.GenerationParameters(**fields, stop_sequences=stops)
    return generation_pb2.GenerateRequest(text=draw(st.sampled_from(SANE)), parameters=parameters)


@st.composite
def wild_generation_requests(draw: st.DrawFn) -> generation_pb2.GenerateRequest:
    fields = {
        "max_new_tokens": st.one_of(st.integers(1, 12), st.integers(0, 2**32 - 1)),
        "min_new_tokens": uint32,
        "num_beams": uint32,
        "do_sample": st.booleans(),
        "temperature": floats,
        "top_k": uint32,
        "top_p": floats,
        "repetition_penalty": floats,
        "num_return_sequences": uint32,
        "seed": st.integers(0, 2**64 - 1),
    }
    chosen = {name: draw(strategy) for name, strategy in fields.items() if draw(st.booleans())}
    stops = draw(st.one_of(st.just([]), st.lists(st.text(max_size=80), max_size=12), st.just(["x"] * 5000)))
    parameters = generation_pb2.GenerationParameters(**chosen, stop_sequences=stops)
    return generation_pb2.GenerateRequest(text=draw(texts), parameters=parameters)


generation_requests = st.one_of(plausible_generation_requests(), wild_generation_requests())


@st.composite
def detection_requests(draw: st.DrawFn) -> detection_pb2.DetectReplacementsRequest:
    plausible = draw(st.booleans())
    text = draw(st.sampled_from(SANE) if plausible else texts)
    request = detection_pb2.DetectReplacementsRequest(text=text)
    if draw(st.booleans()):
        request.threshold = draw(st.floats(0, 1, width=32) if plausible else floats)
    return request


def _call(method, request, **kwargs):
    try:
        return grpc.StatusCode.OK, method(request, timeout=120, **kwargs)
    except grpc.RpcError as error:
        return error.code(), error.details()


# (rpc, "valid" or "invalid") -> cases sent; the last test reports and checks it.
SENT: Counter[tuple[str, str]] = Counter()


def _refused_or_answered(rpc: str, prepare: Callable[[], Any], call: Callable[[], tuple]) -> tuple[Any, Any]:
    """Sends one fuzz case and checks the verdict the in-process engine gives
    it: INVALID_ARGUMENT when the engine refuses it, OK otherwise. Returns the
    engine's prepared request (None when refused) and the server's answer."""
    try:
        prepared = prepare()
    except InvalidInput:
        prepared = None
    code, answer = call()
    SENT[rpc, "invalid" if prepared is None else "valid"] += 1
    expected = grpc.StatusCode.INVALID_ARGUMENT if prepared is None else grpc.StatusCode.OK
    assert code == expected, (code, answer)
    return prepared, answer


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@FUZZ
@given(request=generation_requests)
def test_generate_fuzz(server: ServerUnderTest, generator: T5Generator, request) -> None:
    with server.channel() as channel:
        prepared, answer = _refused_or_answered(
            "Generate",
            lambda: generator.prepare(wire.generation_request(request, "")),
            lambda: _call(server.generation_stub(channel).Generate, request),
        )
    if prepared is None:
        return
    if not prepared.parameters.do_sample or request.parameters.HasField("seed"):
        expected = generator.generate([prepared])[0]
        assert [s.text for s in answer.sequences] == [s.text for s in expected.sequences]


@FUZZ
@given(request=generation_requests)
def test_generate_stream_fuzz(server: ServerUnderTest, generator: T5Generator, request) -> None:
    with server.channel() as channel:
        stream = server.generation_stub(channel).GenerateStream
        _refused_or_answered(
            "GenerateStream",
            lambda: generator.prepare(wire.generation_request(request, ""), stream=True),
            lambda: _call(lambda r, **kw: list(stream(r, **kw)), request),
        )


@FUZZ
@given(request=detection_requests())
def test_detect_fuzz(server: ServerUnderTest, detector: ReplacementDetector, request) -> None:
    with server.channel() as channel:
        prepared, answer = _refused_or_answered(
            "DetectReplacements",
            lambda: detector.prepare(wire.detection_request(request, "")),
            lambda: _call(server.detection_stub(channel).DetectReplacements, request),
        )
    if prepared is None:
        return
    expected = detector.detect([prepared])[0]
    assert [(t.start, t.end) for t in answer.tokens] == [(t.start, t.end) for t in expected.tokens]
    assert [t.score for t in answer.tokens] == pytest.approx([t.score for t in expected.tokens], abs=1e-5)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(payload=st.binary(max_size=512))
def test_random_bytes_are_refused_cleanly(server: ServerUnderTest, payload: bytes) -> None:
    with server.channel() as channel:
        for method in UNARY_METHODS:
            raw = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            code, answer = _call(raw, payload)
            SENT["raw bytes", code.name] += 1
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (method, payload, answer)


def test_request_over_the_size_limit_is_refused_before_it_is_read(server: ServerUnderTest) -> None:
    oversized = "a" * (server.settings.limits.max_request_bytes + 1)
    with server.channel() as channel:
        code, answer = _call(
            server.detection_stub(channel).DetectReplacements, detection_pb2.DetectReplacementsRequest(text=oversized)
        )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, answer)
    with server.client() as client:
        assert client.health() == "SERVING"


def test_server_is_healthy_after_the_fuzzing(server: ServerUnderTest) -> None:
    print("fuzz cases sent:", dict(sorted(SENT.items())), "total", sum(SENT.values()))
    for rpc in ("Generate", "GenerateStream", "DetectReplacements"):
        assert SENT[rpc, "valid"] and SENT[rpc, "invalid"], SENT
    with server.client() as client:
        assert client.health() == "SERVING"
        assert client.generate("reverse words: apple river stone").text == "stone river apple"
