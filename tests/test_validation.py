"""Every request field is checked with a message naming the field, the value
and what is allowed."""

from __future__ import annotations

import math

import pytest

from t5electra.server.domain import DetectionRequest, GenerationParameters, GenerationRequest
from t5electra.server.errors import InvalidInput
from t5electra.server.limits import Limits
from t5electra.server.validation import check_detection, check_generation

pytestmark = pytest.mark.unit

LIMITS = Limits()


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"max_new_tokens": 0}, "parameters.max_new_tokens", r"must be in \[1, 512\], got 0"),
        ({"max_new_tokens": 513}, "parameters.max_new_tokens", r"must be in \[1, 512\], got 513"),
        ({"min_new_tokens": 70}, "parameters.min_new_tokens", r"must be in \[0, 64\], got 70"),
        ({"num_beams": 0}, "parameters.num_beams", r"must be in \[1, 8\]"),
        ({"num_beams": 9}, "parameters.num_beams", r"must be in \[1, 8\], got 9"),
        ({"do_sample": True, "temperature": 0.0}, "parameters.temperature", r"must be in \(0, 100\], got 0"),
        ({"do_sample": True, "temperature": math.nan}, "parameters.temperature", "must be a finite number, got nan"),
        ({"do_sample": True, "temperature": math.inf}, "parameters.temperature", "must be a finite number, got inf"),
        ({"do_sample": True, "top_p": 0.0}, "parameters.top_p", r"must be in \(0, 1\], got 0"),
        ({"do_sample": True, "top_p": 1.5}, "parameters.top_p", r"must be in \(0, 1\], got 1.5"),
        ({"repetition_penalty": 0.0}, "parameters.repetition_penalty", r"must be in \(0, 10\]"),
        ({"repetition_penalty": -math.inf}, "parameters.repetition_penalty", "finite"),
        ({"num_return_sequences": 0}, "parameters.num_return_sequences", r"must be in \[1, 8\]"),
        ({"num_return_sequences": 2}, "parameters.num_return_sequences", "needs do_sample=true or num_beams >= 2"),
        ({"num_beams": 2, "num_return_sequences": 3}, "parameters.num_return_sequences", "exceeds num_beams=2"),
        ({"num_beams": 2, "do_sample": True}, "parameters.do_sample", "cannot be combined with sampling"),
        ({"temperature": 0.7}, "parameters.temperature", "no effect without do_sample=true"),
        ({"top_k": 5}, "parameters.top_k", "no effect without do_sample=true"),
        ({"top_p": 0.9}, "parameters.top_p", "no effect without do_sample=true"),
        ({"seed": 3}, "parameters.seed", "no effect without do_sample=true"),
        ({"stop_sequences": ("",)}, r"parameters.stop_sequences\[0\]", "must not be empty"),
        ({"stop_sequences": ("x" * 65,)}, r"parameters.stop_sequences\[0\]", "at most 64 are allowed"),
        ({"stop_sequences": tuple("abcdefghi")}, "parameters.stop_sequences", "has 9 entries; at most 8"),
        ({"logprobs": True, "top_logprobs": 11}, "parameters.top_logprobs", r"must be in \[0, 10\], got 11"),
        ({"top_logprobs": 3}, "parameters.top_logprobs", "3 needs logprobs=true"),
    ],
)
def test_invalid_generation_parameters(params: dict, field: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}: .*{message}") as raised:
        check_generation(GenerationRequest("reverse words: a b", GenerationParameters(**params)), LIMITS)
    assert raised.value.field == field.replace("\\", "")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"num_beams": 2}, "parameters.num_beams"),
        ({"do_sample": True, "num_return_sequences": 2}, "parameters.num_return_sequences"),
    ],
)
def test_stream_refuses_what_it_cannot_stream(params: dict, field: str) -> None:
    request = GenerationRequest("x", GenerationParameters(**params))
    check_generation(request, LIMITS)
    with pytest.raises(InvalidInput, match=f"^{field}: .*GenerateStream"):
        check_generation(request, LIMITS, streaming=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one non-whitespace character"),
        (" \n\t ", "at least one non-whitespace character"),
        ("a\x00b", "control character U\\+0000 at position 1"),
        ("bell\x07", "control character U\\+0007 at position 4"),
        ("x" * 20_001, "has 20001 characters; at most 20000"),
    ],
)
def test_invalid_text(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=f"^text: .*{message}"):
        check_generation(GenerationRequest(text), LIMITS)
    with pytest.raises(InvalidInput, match=f"^text: .*{message}"):
        check_detection(DetectionRequest(text), LIMITS)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"suggestions": 11}, "suggestions", r"must be in \[0, 10\], got 11"),
        ({"word_scoring": "median"}, "word_scoring", "median is not one of MAX, FIRST, MEAN"),
        ({"offset_unit": "value 9"}, "offset_unit", "value 9 is not one of CODE_POINT, UTF8_BYTE, UTF16_CODE_UNIT"),
    ],
)
def test_invalid_detection_options(fields: dict, field: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{field}: {message}"):
        check_detection(DetectionRequest("some text", **fields), LIMITS)


@pytest.mark.parametrize("threshold", [-0.1, 1.01, math.nan])
def test_invalid_threshold(threshold: float) -> None:
    with pytest.raises(InvalidInput, match=r"^threshold: "):
        check_detection(DetectionRequest("some text", threshold), LIMITS)


def test_valid_requests_pass() -> None:
    check_generation(GenerationRequest("line one\nline two\ttab"), LIMITS)
    check_generation(
        GenerationRequest(
            "x",
            GenerationParameters(
                do_sample=True,
                temperature=0.5,
                top_k=10,
                top_p=0.9,
                seed=1,
                num_return_sequences=4,
                stop_sequences=("a",),
            ),
        ),
        LIMITS,
    )
    check_generation(GenerationRequest("x", GenerationParameters(num_beams=4, num_return_sequences=4)), LIMITS)
    check_detection(DetectionRequest("text", 0.0), LIMITS)
    check_detection(DetectionRequest("text", 1.0), LIMITS)


def test_error_survives_pickling() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(InvalidInput("parameters.top_p", "must be in (0, 1], got 2")))
    assert (error.field, str(error)) == ("parameters.top_p", "parameters.top_p: must be in (0, 1], got 2")
