"""What product teams ask of the API, through real gRPC against the session's
Ray Serve application: log-probabilities, words, offsets and suggestions,
Tokenize and GetModelInfo, validation of the new fields, and clients built
from the stubs of release 0.1."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor

from t5electra.clients import T5ElectraError
from t5electra.protocol.v1 import detection_pb2, generation_pb2, models_pb2, models_pb2_grpc
from t5electra.server.detector import ReplacementDetector
from t5electra.server.domain import DetectionRequest, GenerationParameters, GenerationRequest
from t5electra.server.embedded import TINY_ELECTRA, TINY_ELECTRA_GENERATOR
from t5electra.server.generator import T5Generator

from support.serving import ServerUnderTest

pytestmark = pytest.mark.serve

PROMPT = "translate English to German: the small dog sleeps today"
TEXT = "The callable is invoked with a single banana argument for each element of the list. Ünïcödé 😀 ok."


def test_generate_logprobs_equal_the_engine(server: ServerUnderTest, generator: T5Generator) -> None:
    with server.client() as client:
        served = client.generate(PROMPT, logprobs=True, top_logprobs=3)
        stream = client.generate_stream(PROMPT, logprobs=True, top_logprobs=3)
        streamed_text = "".join(stream)
    parameters = GenerationParameters(logprobs=True, top_logprobs=3)
    (expected,) = generator.generate([generator.prepare(GenerationRequest(PROMPT, parameters))])
    (sequence,) = served.sequences
    assert sequence.text == streamed_text == expected.sequences[0].text
    for tokens in (sequence.tokens, stream.end.tokens):
        assert [(t.id, t.token) for t in tokens] == [(t.id, t.token) for t in expected.sequences[0].tokens]
        for mine, theirs in zip(tokens, expected.sequences[0].tokens, strict=True):
            assert mine.logprob == pytest.approx(theirs.logprob, abs=1e-5)
            assert [a.id for a in mine.top] == [a.id for a in theirs.top]
    beams = client_beams(server)
    assert all(s.score is not None for s in beams.sequences) and beams.sequences[0].score >= beams.sequences[1].score


def client_beams(server: ServerUnderTest):
    with server.client() as client:
        return client.generate(PROMPT, num_beams=3, num_return_sequences=2, logprobs=True)


def test_detect_words_offsets_and_suggestions_equal_the_engine(server: ServerUnderTest) -> None:
    with server.client() as client:
        served = client.detect_replacements(
            TEXT, threshold=0.4, word_scoring="mean", offset_unit="utf16_code_unit", suggestions=3
        )
    engine = ReplacementDetector(TINY_ELECTRA, generator=TINY_ELECTRA_GENERATOR)
    request = DetectionRequest(TEXT, 0.4, word_scoring="mean", offset_unit="utf16_code_unit", suggestions=3)
    (expected,) = engine.detect([engine.prepare(request)])
    assert served.offset_unit == "UTF16_CODE_UNIT"
    assert [(w.text, w.start, w.end, w.replaced) for w in served.words] == [
        (w.text, w.start, w.end, w.replaced) for w in expected.words
    ]
    for mine, theirs in zip(served.words, expected.words, strict=True):
        assert mine.score == pytest.approx(theirs.score, abs=1e-5)
        assert [s.text for s in mine.suggestions] == [s.text for s in theirs.suggestions]
    assert any(w.suggestions for w in served.words)
    encoded = TEXT.encode("utf-16-le")
    for word in served.words:
        assert encoded[2 * word.start : 2 * word.end].decode("utf-16-le") == word.text
    assert [(s.start, s.end) for s in served.replaced_spans] == [(s.start, s.end) for s in expected.replaced_spans]


def test_tokenize_and_model_info(server: ServerUnderTest, generator: T5Generator) -> None:
    with server.client() as client:
        t5 = client.tokenize(PROMPT)
        electra = client.tokenize(TEXT, model="electra")
        models = {m.kind: m for m in client.model_info()}
        generation = client.generate(PROMPT)
    assert t5.count == generation.input_tokens == len(generator.prepare(GenerationRequest(PROMPT)).input_ids)
    assert t5.tokens[-1].special and t5.max_tokens == 512
    assert electra.count == len(electra.tokens) and electra.model == "tiny-electra"
    assert set(models) == {"T5", "ELECTRA"}
    assert models["T5"].name == "tiny-t5" and models["T5"].parameters > 0 and models["T5"].device == "cpu"
    assert models["ELECTRA"].suggestion_generator == "tiny-electra-generator"
    assert models["T5"].parameters_accepted["max_new_tokens"] == "1..512"
    with server.client() as client:
        assert client.health("t5electra.v1.Models") == "SERVING"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.generate(PROMPT, logprobs=True, top_logprobs=11), "parameters.top_logprobs"),
        (lambda c: c.generate(PROMPT, top_logprobs=2), "parameters.top_logprobs"),
        (lambda c: c.detect_replacements(TEXT, suggestions=11), "suggestions"),
        (lambda c: c.tokenize("   "), "text"),
    ],
)
def test_new_fields_are_validated(server: ServerUnderTest, call, field: str) -> None:
    with server.client() as client, pytest.raises(T5ElectraError) as raised:
        call(client)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details.startswith(field + ":"), raised.value.details


def test_unknown_enum_numbers_are_invalid(server: ServerUnderTest) -> None:
    with server.channel() as channel:
        detect = server.detection_stub(channel).DetectReplacements
        for request, field in (
            (detection_pb2.DetectReplacementsRequest(text=TEXT, word_scoring=7), "word_scoring"),
            (detection_pb2.DetectReplacementsRequest(text=TEXT, offset_unit=9), "offset_unit"),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                detect(request, timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert raised.value.details().startswith(field + ": value")
        with pytest.raises(grpc.RpcError) as raised:
            models_pb2_grpc.ModelsStub(channel).Tokenize(models_pb2.TokenizeRequest(text="x"), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details() == "model: must be T5 or ELECTRA"


def test_clients_built_from_release_0_1_stubs_keep_working(server: ServerUnderTest) -> None:
    """A separate process imports only the 0.1 stubs (kept verbatim in
    tests/compat), calls every RPC they know and reads every field they know."""
    script = textwrap.dedent(
        f"""
        import grpc
        from stubs_0_1 import detection_pb2, detection_pb2_grpc, generation_pb2, generation_pb2_grpc
        with grpc.insecure_channel({server.address!r}) as channel:
            generation = generation_pb2_grpc.TextGenerationStub(channel)
            request = generation_pb2.GenerateRequest(
                text={PROMPT!r}, parameters=generation_pb2.GenerationParameters(max_new_tokens=12)
            )
            answer = generation.Generate(request, timeout=60)
            pieces = list(generation.GenerateStream(request, timeout=60))
            assert "".join(p.text for p in pieces) == answer.sequences[0].text
            assert pieces[-1].finish_reason == answer.sequences[0].finish_reason != 0
            assert answer.usage.output_tokens == answer.sequences[0].generated_tokens > 0
            detection = detection_pb2_grpc.ReplacementDetectionStub(channel).DetectReplacements(
                detection_pb2.DetectReplacementsRequest(text={TEXT!r}, threshold=0.4), timeout=60
            )
            assert detection.tokens and detection.model == "tiny-electra"
            assert all(0 <= t.start < t.end <= {len(TEXT)} for t in detection.tokens)
            print("ok", len(answer.sequences[0].text), len(detection.tokens), detection.replaced_fraction)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).parent / "compat",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok ")


def test_the_extras_metric_counts_logprobs_and_suggestions(server: ServerUnderTest) -> None:
    """The extras counter reaches Prometheus with logprobs and suggestions."""
    import http.client
    import time
    import urllib.request

    with server.client() as client:
        client.generate(PROMPT, logprobs=True)
        client.detect_replacements(TEXT, threshold=0.3, suggestions=2)
    deadline = time.monotonic() + 120
    lines: list[str] = []
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{server.metrics_port}/metrics"
            text = urllib.request.urlopen(url, timeout=10).read().decode()
        except (OSError, http.client.HTTPException) as error:  # URLError and timeouts are OSErrors
            lines = [f"metrics endpoint unreadable: {error!r}"]  # a busy exporter: ask again
        else:
            lines = [line for line in text.splitlines() if line.startswith("ray_t5electra_extras")]
            if any('kind="logprobs"' in line for line in lines) and any('kind="suggestions"' in line for line in lines):
                return
        time.sleep(2)
    raise AssertionError(f"extras not counted: {lines}")


def test_generation_parameters_proto_still_carries_every_old_field() -> None:
    """Field numbers 1..11 of GenerationParameters and 1..2 of the detection
    request keep their names and types."""
    uint32, uint64, boolean, single, string = (
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_FLOAT,
        FieldDescriptor.TYPE_STRING,
    )
    fields = generation_pb2.GenerationParameters.DESCRIPTOR.fields_by_number
    assert [(fields[n].name, fields[n].type) for n in range(1, 12)] == [
        ("max_new_tokens", uint32),
        ("min_new_tokens", uint32),
        ("num_beams", uint32),
        ("do_sample", boolean),
        ("temperature", single),
        ("top_k", uint32),
        ("top_p", single),
        ("repetition_penalty", single),
        ("num_return_sequences", uint32),
        ("seed", uint64),
        ("stop_sequences", string),
    ]
    assert [n for n in range(1, 12) if fields[n].is_repeated] == [11]
    detection = detection_pb2.DetectReplacementsRequest.DESCRIPTOR.fields_by_number
    assert [(detection[n].name, detection[n].type) for n in (1, 2)] == [("text", string), ("threshold", single)]
