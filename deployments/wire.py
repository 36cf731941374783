"""Conversions between the wire's protos and the domain's dataclasses; the
only module on the server side that knows both."""

from __future__ import annotations

from google.protobuf.message import Message

from t5electra.clients.v1 import detection_pb2, generation_pb2
from t5electra.server.domain import (
    Detection,
    DetectionRequest,
    GenerationParameters,
    GenerationRequest,
    GenerationResult,
    StreamPiece,
)
from t5electra.server.errors import InvalidInput

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
)


def _decoded(message: Message | Undecodable) -> None:
    if isinstance(message, Undecodable):
        raise InvalidInput(
            "request", f"{message.size} bytes are not a valid {message.message_type} message ({message.reason})"
        )


def generation_request(message: generation_pb2.GenerateRequest | Undecodable, request_id: str) -> GenerationRequest:
    """Unset optional fields take the domain's defaults; set ones are kept as
    sent, even when out of range, so that validation can name them."""
    _decoded(message)
    p = message.parameters
    values = {name: getattr(p, name) for name in _SCALARS if p.HasField(name)}
    return GenerationRequest(
        text=message.text,
        parameters=GenerationParameters(**{**vars(_DEFAULTS), **values, "stop_sequences": tuple(p.stop_sequences)}),
        request_id=request_id,
    )


def detection_request(
    message: detection_pb2.DetectReplacementsRequest | Undecodable, request_id: str
) -> DetectionRequest:
    _decoded(message)
    threshold = message.threshold if message.HasField("threshold") else DetectionRequest.threshold
    return DetectionRequest(text=message.text, threshold=threshold, request_id=request_id)


def generate_response(result: GenerationResult) -> generation_pb2.GenerateResponse:
    return generation_pb2.GenerateResponse(
        sequences=[
            generation_pb2.GeneratedSequence(
                text=s.text, finish_reason=int(s.finish_reason), generated_tokens=s.generated_tokens
            )
            for s in result.sequences
        ],
        usage=generation_pb2.Usage(input_tokens=result.input_tokens, output_tokens=result.output_tokens),
        model=result.model,
    )


def stream_response(piece: StreamPiece) -> generation_pb2.GenerateStreamResponse:
    message = generation_pb2.GenerateStreamResponse(text=piece.text, generated_tokens=piece.generated_tokens)
    if piece.is_last:
        message.finish_reason = int(piece.finish_reason)
        message.usage.input_tokens = piece.input_tokens
        message.usage.output_tokens = piece.generated_tokens
        message.model = piece.model
    return message


def detect_response(detection: Detection) -> detection_pb2.DetectReplacementsResponse:
    return detection_pb2.DetectReplacementsResponse(
        tokens=[
            detection_pb2.TokenScore(token=t.token, start=t.start, end=t.end, score=t.score, replaced=t.replaced)
            for t in detection.tokens
        ],
        replaced_spans=[
            detection_pb2.Span(start=s.start, end=s.end, text=s.text, score=s.score) for s in detection.replaced_spans
        ],
        replaced_fraction=detection.replaced_fraction,
        model=detection.model,
    )
