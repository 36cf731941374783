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
class PreparedGeneration:
    """A validated request with its prompt tokenized and its seed fixed."""

    request: GenerationRequest
    input_ids: tuple[int, ...]
    seed: int
    stream: bool = False

    @property
    def parameters(self) -> GenerationParameters:
        return self.request.parameters

    @property
    def rows(self) -> int:
        """Rows of a decoding batch this request occupies."""
        return self.parameters.num_return_sequences

    @property
    def min_steps(self) -> int:
        """Decoding steps it takes at least: its forced length."""
        return self.parameters.min_new_tokens

    @property
    def max_steps(self) -> int:
        return self.parameters.max_new_tokens

    @property
    def deadline(self) -> float | None:
        return self.request.deadline


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
