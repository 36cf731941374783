"""Checks every request field before any model work is spent on it.

Each failure raises :class:`InvalidInput` naming the wire field, the value
received and what is allowed, in the manner of TGI's router validation. Token
counts need a tokenizer and are checked by the engines, with the same error.
"""

from __future__ import annotations

import math
import unicodedata

from .domain import OFFSET_UNITS, WORD_SCORINGS, DetectionRequest, GenerationParameters, GenerationRequest
from .errors import InvalidInput
from .limits import Limits

_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


def check_text(text: str, limits: Limits, field: str = "text") -> None:
    if not text.strip():
        raise InvalidInput(field, "must contain at least one non-whitespace character")
    if len(text) > limits.max_input_chars:
        raise InvalidInput(field, f"has {len(text)} characters; at most {limits.max_input_chars} are allowed")
    for position, char in enumerate(text):
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidInput(
                field,
                f"contains control character U+{ord(char):04X} at position {position}; "
                "only tab, newline and carriage return are allowed",
            )


def _in_range(field: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(field, f"must be a finite number, got {value}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise InvalidInput(field, f"must be in {bracket}{low:g}, {high:g}], got {value:g}")


def check_parameters(p: GenerationParameters, limits: Limits, *, streaming: bool = False) -> None:
    prefix = "parameters."
    _in_range(prefix + "max_new_tokens", p.max_new_tokens, 1, limits.max_new_tokens)
    _in_range(prefix + "min_new_tokens", p.min_new_tokens, 0, p.max_new_tokens)
    _in_range(prefix + "num_beams", p.num_beams, 1, limits.max_num_beams)
    _in_range(prefix + "temperature", p.temperature, 0, 100, low_open=True)
    _in_range(prefix + "top_p", p.top_p, 0, 1, low_open=True)
    _in_range(prefix + "repetition_penalty", p.repetition_penalty, 0, 10, low_open=True)
    _in_range(prefix + "num_return_sequences", p.num_return_sequences, 1, limits.max_num_return_sequences)

    if not p.do_sample:
        neutral = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
        for name, value in neutral.items():
            if getattr(p, name) != value:
                raise InvalidInput(
                    prefix + name,
                    f"{getattr(p, name):g} has no effect without do_sample=true "
                    f"(set do_sample or leave {name} at {value:g})",
                )
        if p.seed is not None:
            raise InvalidInput(prefix + "seed", "has no effect without do_sample=true")
    if p.is_beam_search and p.do_sample:
        raise InvalidInput(prefix + "do_sample", "beam search (num_beams > 1) cannot be combined with sampling")
    if p.is_beam_search and p.num_return_sequences > p.num_beams:
        raise InvalidInput(
            prefix + "num_return_sequences",
            f"{p.num_return_sequences} exceeds num_beams={p.num_beams}; "
            "beam search returns at most num_beams sequences",
        )
    if not p.is_beam_search and not p.do_sample and p.num_return_sequences > 1:
        raise InvalidInput(
            prefix + "num_return_sequences",
            f"{p.num_return_sequences} needs do_sample=true or num_beams >= {p.num_return_sequences}; "
            "greedy decoding has one answer",
        )
    if streaming and p.is_beam_search:
        raise InvalidInput(prefix + "num_beams", f"{p.num_beams}: GenerateStream supports num_beams=1 only")
    if streaming and p.num_return_sequences > 1:
        raise InvalidInput(
            prefix + "num_return_sequences",
            f"{p.num_return_sequences}: GenerateStream streams a single sequence",
        )

    _in_range(prefix + "top_logprobs", p.top_logprobs, 0, limits.max_top_logprobs)
    if p.top_logprobs and not p.logprobs:
        raise InvalidInput(prefix + "top_logprobs", f"{p.top_logprobs} needs logprobs=true")

    if len(p.stop_sequences) > limits.max_stop_sequences:
        raise InvalidInput(
            prefix + "stop_sequences",
            f"has {len(p.stop_sequences)} entries; at most {limits.max_stop_sequences} are allowed",
        )
    for index, stop in enumerate(p.stop_sequences):
        field = f"{prefix}stop_sequences[{index}]"
        if not stop:
            raise InvalidInput(field, "must not be empty")
        if len(stop) > limits.max_stop_sequence_chars:
            raise InvalidInput(
                field, f"has {len(stop)} characters; at most {limits.max_stop_sequence_chars} are allowed"
            )


def check_generation(request: GenerationRequest, limits: Limits, *, streaming: bool = False) -> None:
    check_text(request.text, limits)
    check_parameters(request.parameters, limits, streaming=streaming)


def check_detection(request: DetectionRequest, limits: Limits) -> None:
    check_text(request.text, limits)
    _in_range("threshold", request.threshold, 0, 1)
    _in_range("suggestions", request.suggestions, 0, limits.max_suggestions)
    for field, value, allowed in (
        ("word_scoring", request.word_scoring, WORD_SCORINGS),
        ("offset_unit", request.offset_unit, OFFSET_UNITS),
    ):
        if value not in allowed:
            raise InvalidInput(field, f"{value} is not one of {', '.join(a.upper() for a in allowed)}")


def generation_fields(limits: Limits) -> dict[str, str]:
    """The GenerationParameters fields and the ranges this server accepts,
    as GetModelInfo reports them; the checks above enforce the same."""
    return {
        "max_new_tokens": f"1..{limits.max_new_tokens}",
        "min_new_tokens": "0..max_new_tokens",
        "num_beams": f"1..{limits.max_num_beams}",
        "do_sample": "true|false",
        "temperature": "(0, 100], needs do_sample",
        "top_k": "0 (off) or more, needs do_sample",
        "top_p": "(0, 1], needs do_sample",
        "repetition_penalty": "(0, 10]",
        "num_return_sequences": f"1..{limits.max_num_return_sequences}",
        "seed": "uint64, needs do_sample",
        "stop_sequences": f"at most {limits.max_stop_sequences}, 1..{limits.max_stop_sequence_chars} characters each",
        "logprobs": "true|false",
        "top_logprobs": f"0..{limits.max_top_logprobs}, needs logprobs",
    }


def detection_fields(limits: Limits, *, suggestions: bool) -> dict[str, str]:
    """The DetectReplacementsRequest fields and ranges, as for generation."""
    return {
        "threshold": "[0, 1]",
        "word_scoring": "|".join(s.upper() for s in WORD_SCORINGS),
        "offset_unit": "|".join(u.upper() for u in OFFSET_UNITS),
        "suggestions": f"0..{limits.max_suggestions}" if suggestions else "0 (no generator configured)",
    }
