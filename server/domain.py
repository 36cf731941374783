"""The request and result types that travel between the wire, the
deployments and the engines.

They are plain dataclasses, so they pickle cheaply across Ray handles and can
be built in tests without protobuf. ``deployments/wire.py`` is the one place
that converts them to and from protos.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar


class FinishReason(enum.IntEnum):
    """Why a sequence ended; values equal the proto enum's numbers."""

    LENGTH = 1
    EOS_TOKEN = 2
    STOP_SEQUENCE = 3


@dataclass(frozen=True)
class GenerationParameters:
    """Decoding parameters with their defaults filled in.

    ``seed`` stays ``None`` when the caller did not choose one; the engine
    draws one then, so that even unseeded sampling uses a per-request
    generator and is not disturbed by its batch neighbours.
    """

    max_new_tokens: int = 64
    min_new_tokens: int = 0
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1
    seed: int | None = None
    stop_sequences: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def is_beam_search(self) -> bool:
        return self.num_beams > 1


@dataclass(frozen=True)
class GenerationRequest:
    """``deadline`` (``time.time()``, when the caller said) is when the
    answer stops being wanted: decoding stops then even if the caller's
    cancel never arrives."""

    text: str
    parameters: GenerationParameters = field(default_factory=GenerationParameters)
    request_id: str = ""
    deadline: float | None = None


@dataclass(frozen=True)
class TopToken:
    id: int
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token and its log-probability after the request's logits
    processing; ``top`` holds the most probable alternatives when asked."""

    id: int
    token: str
    logprob: float
    top: tuple[TopToken, ...] = ()


@dataclass(frozen=True)
class GeneratedSequence:
    text: str
    finish_reason: FinishReason
    generated_tokens: int
    tokens: tuple[TokenLogprob, ...] = ()
    score: float | None = None


@dataclass(frozen=True)
class BatchTiming:
    """Where a request's time went inside a model replica.

    ``queue_ms`` is from arrival at the replica's batcher to the start of its
    batch (T5: to the step it joined); ``inference_ms`` from that start to the
    request's last token; ``replica_ms`` from the replica method's start to
    its answer, preparation included. ``batch_size`` is the batch's requests
    (T5: the mean rows of the steps that decoded the request); ``steps`` the
    forward passes the request was in (T5: its decoding steps).
    """

    queue_ms: float = 0.0
    inference_ms: float = 0.0
    batch_size: int = 1
    replica_ms: float = 0.0
    steps: int = 1


@dataclass(frozen=True)
class GenerationResult:
    sequences: tuple[GeneratedSequence, ...]
    input_tokens: int

    @property
    def output_tokens(self) -> int:
        return sum(s.generated_tokens for s in self.sequences)


@dataclass(frozen=True)
class StreamPiece:
    """New text of a streamed sequence. The last piece of a stream carries
    the finish reason and the token counts; the others leave them unset."""

    text: str
    generated_tokens: int
    finish_reason: FinishReason | None = None
    input_tokens: int = 0
    tokens: tuple[TokenLogprob, ...] = ()

    @property
    def is_last(self) -> bool:
        return self.finish_reason is not None

    @staticmethod
    def joined(pieces: Sequence[StreamPiece]) -> StreamPiece:
        """Consecutive pieces of one stream as one: their text and tokens,
        and the counts and ending of the last."""
        return replace(
            pieces[-1], text="".join(p.text for p in pieces), tokens=tuple(t for p in pieces for t in p.tokens)
        )


WORD_SCORINGS = ("max", "first", "mean")
OFFSET_UNITS = ("code_point", "utf8_byte", "utf16_code_unit")


@dataclass(frozen=True)
class DetectionRequest:
    text: str
    threshold: float = 0.5
    request_id: str = ""
    word_scoring: str = "max"  # one of WORD_SCORINGS
    offset_unit: str = "code_point"  # one of OFFSET_UNITS
    suggestions: int = 0
    deadline: float | None = None  # as GenerationRequest's


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
    """Offsets of tokens, words and spans count ``offset_unit``s."""

    tokens: tuple[TokenScore, ...]
    replaced_spans: tuple[Span, ...]
    replaced_fraction: float
    input_tokens: int = 0
    words: tuple[Word, ...] = ()
    offset_unit: str = "code_point"

    @property
    def suggestions_made(self) -> int:
        return sum(len(w.suggestions) for w in self.words)


@dataclass(frozen=True)
class TokenPiece:
    """A token as Tokenize reports it; offsets in code points, (0, 0) and
    ``special`` for a token the server adds."""

    id: int
    token: str
    start: int
    end: int
    special: bool


@dataclass(frozen=True)
class Tokenization:
    tokens: tuple[TokenPiece, ...]
    max_tokens: int
    model: str


@dataclass(frozen=True)
class ModelDescription:
    """What GetModelInfo says of a served model."""

    kind: str  # "t5" or "electra"
    name: str
    architecture: str
    parameters: int
    dtype: str
    device: str
    max_input_tokens: int
    max_input_chars: int
    parameters_accepted: dict[str, str]
    suggestion_generator: str = ""


@dataclass(frozen=True)
class Usage:
    """Tokens a request is billed for."""

    input_tokens: int
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        """What several requests together are billed for (one ModelInfer of many texts)."""
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


Payload = TypeVar("Payload")


@dataclass(frozen=True)
class Horizon:
    """A T5 replica's admission as it stood when it answered: seconds until
    a new request could start, a step's time at the load it would join and
    a one-row step's time on an idle replica (the admission margin included
    in both), the steps of a typical answer, and when (``time.time()``).
    While it is fresh, the ingress refuses on it what the replica would
    refuse, without the round trip."""

    start_s: float
    step_s: float
    typical_steps: float | None
    at: float
    alone_step_s: float = 0.0


@dataclass(frozen=True)
class Reply(Generic[Payload]):
    """What a model replica answers: the engine's result and what serving
    knows of it, built once in the replica and read once in the ingress,
    where the trailers, metrics and log line are written (and, for T5, the
    replica's admission horizon, which the ingress refuses by)."""

    payload: Payload
    model: str
    usage: Usage
    timing: BatchTiming
    horizon: Horizon | None = None
