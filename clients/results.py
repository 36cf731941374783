"""What the clients return: small frozen dataclasses, each with the proto it
came from in ``.proto`` for callers that want every field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from t5electra.protocol import bytes_tensor
from t5electra.protocol.inference import open_inference_pb2 as oip
from t5electra.protocol.v1 import detection_pb2, generation_pb2, models_pb2


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
class TopToken:
    id: int
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    id: int
    token: str
    logprob: float
    top: tuple[TopToken, ...] = ()

    @classmethod
    def all_from(cls, messages: Any) -> tuple[TokenLogprob, ...]:
        return tuple(
            cls(t.id, t.token, t.logprob, tuple(TopToken(a.id, a.token, a.logprob) for a in t.top)) for t in messages
        )


@dataclass(frozen=True)
class GeneratedText:
    """One sequence of a Generation (several with num_return_sequences)."""

    text: str
    finish_reason: str  # LENGTH, EOS_TOKEN or STOP_SEQUENCE
    generated_tokens: int
    tokens: tuple[TokenLogprob, ...] = ()  # with logprobs=True
    score: float | None = None  # with logprobs=True and beam search


@dataclass(frozen=True)
class Generation:
    sequences: tuple[GeneratedText, ...]
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
                GeneratedText(
                    s.text,
                    generation_pb2.FinishReason.Name(s.finish_reason),
                    s.generated_tokens,
                    TokenLogprob.all_from(s.tokens),
                    s.score if s.HasField("score") else None,
                )
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
    tokens: tuple[TokenLogprob, ...] = ()  # with logprobs=True, every message's


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
class Suggestion:
    text: str
    probability: float


@dataclass(frozen=True)
class Word:
    text: str
    start: int
    end: int
    score: float
    replaced: bool
    suggestions: tuple[Suggestion, ...] = ()


@dataclass(frozen=True)
class Detection:
    tokens: tuple[TokenScore, ...]
    replaced_spans: tuple[Span, ...]
    replaced_fraction: float
    model: str
    metadata: dict[str, str] = field(default_factory=dict)
    proto: detection_pb2.DetectReplacementsResponse | None = field(default=None, repr=False)
    words: tuple[Word, ...] = ()
    offset_unit: str = "CODE_POINT"

    @classmethod
    def from_proto(cls, message: detection_pb2.DetectReplacementsResponse, metadata: dict[str, str]) -> Detection:
        return cls(
            tuple(TokenScore(t.token, t.start, t.end, t.score, t.replaced) for t in message.tokens),
            tuple(Span(s.start, s.end, s.text, s.score) for s in message.replaced_spans),
            message.replaced_fraction,
            message.model,
            metadata,
            message,
            tuple(
                Word(
                    w.text,
                    w.start,
                    w.end,
                    w.score,
                    w.replaced,
                    tuple(Suggestion(x.text, x.probability) for x in w.suggestions),
                )
                for w in message.words
            ),
            detection_pb2.OffsetUnit.Name(message.offset_unit or detection_pb2.CODE_POINT),
        )


@dataclass(frozen=True)
class Token:
    id: int
    token: str
    start: int
    end: int
    special: bool


@dataclass(frozen=True)
class Tokenization:
    tokens: tuple[Token, ...]
    count: int
    max_tokens: int
    model: str

    @classmethod
    def from_proto(cls, message: models_pb2.TokenizeResponse) -> Tokenization:
        tokens = tuple(Token(t.id, t.token, t.start, t.end, t.special) for t in message.tokens)
        return cls(tokens, message.count, message.max_tokens, message.model)


@dataclass(frozen=True)
class ModelInfo:
    kind: str  # T5 or ELECTRA
    name: str
    architecture: str
    parameters: int
    dtype: str
    device: str
    max_input_tokens: int
    max_input_chars: int
    parameters_accepted: dict[str, str]
    suggestion_generator: str

    @classmethod
    def all_from(cls, message: models_pb2.GetModelInfoResponse) -> tuple[ModelInfo, ...]:
        return tuple(
            cls(
                models_pb2.ModelKind.Name(m.kind),
                m.name,
                m.architecture,
                m.parameters,
                m.dtype,
                m.device,
                m.max_input_tokens,
                m.max_input_chars,
                dict(m.parameters_accepted),
                m.suggestion_generator,
            )
            for m in message.models
        )


@dataclass(frozen=True)
class Inference:
    """A ModelInfer answer: each output's datatype, shape and raw contents."""

    model: str
    outputs: dict[str, tuple[str, tuple[int, ...], bytes]]
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, message: oip.ModelInferResponse, metadata: dict[str, str]) -> Inference:
        outputs = {
            output.name: (output.datatype, tuple(output.shape), raw)
            for output, raw in zip(message.outputs, message.raw_output_contents, strict=True)
        }
        return cls(message.model_name, outputs, metadata)

    def texts(self, name: str) -> list[str]:
        """A BYTES output's elements, in row-major order, as text."""
        _, _, raw = self.outputs[name]
        return [element.decode() for element in bytes_tensor.unpack(raw)]
