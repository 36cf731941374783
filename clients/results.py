"""What the clients return: small frozen dataclasses, each with the proto it
came from in ``.proto`` for callers that want every field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from .v1 import detection_pb2, generation_pb2


class T5ElectraError(Exception):
    """A failed call: the gRPC status code, the server's message and the
    trailing metadata (``x-request-id``, ``retry-after-ms``)."""

    def __init__(self, code: grpc.StatusCode, details: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.metadata = metadata or {}

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> T5ElectraError:
        trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
        return cls(error.code(), error.details() or "", _metadata(trailing))


def _metadata(pairs: Any) -> dict[str, str]:
    return {key: value for key, value in (pairs or ()) if isinstance(value, str)}


@dataclass(frozen=True)
class Sequence:
    text: str
    finish_reason: str  # LENGTH, EOS_TOKEN or STOP_SEQUENCE
    generated_tokens: int


@dataclass(frozen=True)
class Generation:
    sequences: tuple[Sequence, ...]
    input_tokens: int
    output_tokens: int
    model: str
    metadata: dict[str, str] = field(default_factory=dict)
    proto: generation_pb2.GenerateResponse | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        """The first (for beam search: the best) sequence's text."""
        return self.sequences[0].text

    @classmethod
    def from_proto(cls, message: generation_pb2.GenerateResponse, metadata: dict[str, str]) -> Generation:
        return cls(
            tuple(
                Sequence(s.text, generation_pb2.FinishReason.Name(s.finish_reason), s.generated_tokens)
                for s in message.sequences
            ),
            message.usage.input_tokens,
            message.usage.output_tokens,
            message.model,
            metadata,
            message,
        )


@dataclass(frozen=True)
class StreamEnd:
    """How a stream ended; available once the stream is exhausted."""

    text: str
    finish_reason: str
    generated_tokens: int
    input_tokens: int
    model: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenScore:
    token: str
    start: int
    end: int
    score: float
    replaced: bool


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str
    score: float


@dataclass(frozen=True)
class Detection:
    tokens: tuple[TokenScore, ...]
    replaced_spans: tuple[Span, ...]
    replaced_fraction: float
    model: str
    metadata: dict[str, str] = field(default_factory=dict)
    proto: detection_pb2.DetectReplacementsResponse | None = field(default=None, repr=False)

    @classmethod
    def from_proto(cls, message: detection_pb2.DetectReplacementsResponse, metadata: dict[str, str]) -> Detection:
        return cls(
            tuple(TokenScore(t.token, t.start, t.end, t.score, t.replaced) for t in message.tokens),
            tuple(Span(s.start, s.end, s.text, s.score) for s in message.replaced_spans),
            message.replaced_fraction,
            message.model,
            metadata,
            message,
        )
