"""Conversions between the wire's protos and the domain's dataclasses; the
only module on the server side that knows both."""

from __future__ import annotations

from google.protobuf.message import Message

from t5electra.protocol.v1 import detection_pb2, generation_pb2, models_pb2
from t5electra.server.domain import (
    OFFSET_UNITS,
    WORD_SCORINGS,
    Detection,
    DetectionRequest,
    GenerationParameters,
    GenerationRequest,
    GenerationResult,
    ModelDescription,
    StreamPiece,
    Tokenization,
    TokenLogprob,
)
from t5electra.server.errors import InvalidInput

from .replies import Reply, Usage
from .servicers import Undecodable

_DEFAULTS = GenerationParameters()
_SCALARS = (
    "max_new_tokens",
    "min_new_tokens",
    "num_beams",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "num_return_sequences",
    "seed",
    "logprobs",
    "top_logprobs",
)
# Enum numbers on the wire <-> names in the domain; 0 (unset) is the default.
_WORD_SCORINGS = {detection_pb2.WordScoring.Value(name.upper()): name for name in WORD_SCORINGS}
_OFFSET_UNITS = {detection_pb2.OffsetUnit.Value(name.upper()): name for name in OFFSET_UNITS}
_MODEL_KINDS = {models_pb2.T5: "t5", models_pb2.ELECTRA: "electra"}


def _decoded(message: Message | Undecodable) -> None:
    if isinstance(message, Undecodable):
        raise InvalidInput(
            "request", f"{message.size} bytes are not a valid {message.message_type} message ({message.reason})"
        )


def generation_request(
    message: generation_pb2.GenerateRequest | Undecodable, request_id: str, deadline: float | None = None
) -> GenerationRequest:
    """Unset optional fields take the domain's defaults; set ones are kept as
    sent, even when out of range, so that validation can name them."""
    _decoded(message)
    p = message.parameters
    values = {name: getattr(p, name) for name in _SCALARS if p.HasField(name)}
    return GenerationRequest(
        text=message.text,
        parameters=GenerationParameters(**{**vars(_DEFAULTS), **values, "stop_sequences": tuple(p.stop_sequences)}),
        request_id=request_id,
        deadline=deadline,
    )


def detection_request(
    message: detection_pb2.DetectReplacementsRequest | Undecodable, request_id: str, deadline: float | None = None
) -> DetectionRequest:
    _decoded(message)
    threshold = message.threshold if message.HasField("threshold") else DetectionRequest.threshold
    return DetectionRequest(
        text=message.text,
        threshold=threshold,
        request_id=request_id,
        word_scoring=_enum(message.word_scoring, _WORD_SCORINGS, DetectionRequest.word_scoring),
        offset_unit=_enum(message.offset_unit, _OFFSET_UNITS, DetectionRequest.offset_unit),
        suggestions=message.suggestions,
        deadline=deadline,
    )


def _enum(number: int, names: dict[int, str], default: str) -> str:
    """The domain's name for an enum number; an unknown number keeps a name
    that validation refuses, naming the field."""
    if number == 0:
        return default
    return names.get(number, f"value {number}")


def model_info_request(message: models_pb2.GetModelInfoRequest | Undecodable) -> None:
    _decoded(message)


def tokenize_request(message: models_pb2.TokenizeRequest | Undecodable) -> tuple[str, str]:
    """(model kind, text); an unset or unknown model is INVALID_ARGUMENT."""
    _decoded(message)
    if message.model not in _MODEL_KINDS:
        raise InvalidInput("model", "must be T5 or ELECTRA")
    return _MODEL_KINDS[message.model], message.text


def _token_logprobs(tokens: tuple[TokenLogprob, ...]) -> list[generation_pb2.TokenLogprob]:
    return [
        generation_pb2.TokenLogprob(
            id=t.id,
            token=t.token,
            logprob=t.logprob,
            top=[generation_pb2.TopToken(id=a.id, token=a.token, logprob=a.logprob) for a in t.top],
        )
        for t in tokens
    ]


def generate_response(reply: Reply[GenerationResult]) -> generation_pb2.GenerateResponse:
    return generation_pb2.GenerateResponse(
        sequences=[
            generation_pb2.GeneratedSequence(
                text=s.text,
                finish_reason=int(s.finish_reason),
                generated_tokens=s.generated_tokens,
                tokens=_token_logprobs(s.tokens),
                score=s.score,
            )
            for s in reply.payload.sequences
        ],
        usage=_usage(reply.usage),
        model=reply.model,
    )


def _usage(usage: Usage) -> generation_pb2.Usage:
    return generation_pb2.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)


def stream_response(piece: StreamPiece) -> generation_pb2.GenerateStreamResponse:
    """A message of a stream before its last one."""
    return generation_pb2.GenerateStreamResponse(
        text=piece.text, generated_tokens=piece.generated_tokens, tokens=_token_logprobs(piece.tokens)
    )


def last_stream_response(reply: Reply[StreamPiece]) -> generation_pb2.GenerateStreamResponse:
    """A stream's last message: its ending, usage and model."""
    message = stream_response(reply.payload)
    message.finish_reason = int(reply.payload.finish_reason or 0)
    message.usage.CopyFrom(_usage(reply.usage))
    message.model = reply.model
    return message


def detect_response(reply: Reply[Detection]) -> detection_pb2.DetectReplacementsResponse:
    detection = reply.payload
    return detection_pb2.DetectReplacementsResponse(
        tokens=[
            detection_pb2.TokenScore(token=t.token, start=t.start, end=t.end, score=t.score, replaced=t.replaced)
            for t in detection.tokens
        ],
        replaced_spans=[
            detection_pb2.Span(start=s.start, end=s.end, text=s.text, score=s.score) for s in detection.replaced_spans
        ],
        replaced_fraction=detection.replaced_fraction,
        model=reply.model,
        words=[
            detection_pb2.Word(
                text=w.text,
                start=w.start,
                end=w.end,
                score=w.score,
                replaced=w.replaced,
                suggestions=[detection_pb2.Suggestion(text=x.text, probability=x.probability) for x in w.suggestions],
            )
            for w in detection.words
        ],
        offset_unit=detection_pb2.OffsetUnit.Value(detection.offset_unit.upper()),
    )


def tokenize_response(reply: Reply[Tokenization]) -> models_pb2.TokenizeResponse:
    tokenization = reply.payload
    return models_pb2.TokenizeResponse(
        tokens=[
            models_pb2.Token(id=t.id, token=t.token, start=t.start, end=t.end, special=t.special)
            for t in tokenization.tokens
        ],
        count=len(tokenization.tokens),
        max_tokens=tokenization.max_tokens,
        model=reply.model,
    )


def model_info_response(models: list[ModelDescription]) -> models_pb2.GetModelInfoResponse:
    kinds = {name: number for number, name in _MODEL_KINDS.items()}
    return models_pb2.GetModelInfoResponse(
        models=[
            models_pb2.ModelInfo(
                kind=kinds[m.kind],
                name=m.name,
                architecture=m.architecture,
                parameters=m.parameters,
                dtype=m.dtype,
                device=m.device,
                max_input_tokens=m.max_input_tokens,
                max_input_chars=m.max_input_chars,
                parameters_accepted=m.parameters_accepted,
                suggestion_generator=m.suggestion_generator,
            )
            for m in models
        ]
    )
