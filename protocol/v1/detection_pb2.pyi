from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WordScoring(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORD_SCORING_UNSPECIFIED: _ClassVar[WordScoring]
    MAX: _ClassVar[WordScoring]
    FIRST: _ClassVar[WordScoring]
    MEAN: _ClassVar[WordScoring]

class OffsetUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFSET_UNIT_UNSPECIFIED: _ClassVar[OffsetUnit]
    CODE_POINT: _ClassVar[OffsetUnit]
    UTF8_BYTE: _ClassVar[OffsetUnit]
    UTF16_CODE_UNIT: _ClassVar[OffsetUnit]
WORD_SCORING_UNSPECIFIED: WordScoring
MAX: WordScoring
FIRST: WordScoring
MEAN: WordScoring
OFFSET_UNIT_UNSPECIFIED: OffsetUnit
CODE_POINT: OffsetUnit
UTF8_BYTE: OffsetUnit
UTF16_CODE_UNIT: OffsetUnit

class DetectReplacementsRequest(_message.Message):
    __slots__ = ("text", "threshold", "word_scoring", "offset_unit", "suggestions")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WORD_SCORING_FIELD_NUMBER: _ClassVar[int]
    OFFSET_UNIT_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    text: str
    threshold: float
    word_scoring: WordScoring
    offset_unit: OffsetUnit
    suggestions: int
    def __init__(self, text: _Optional[str] = ..., threshold: _Optional[float] = ..., word_scoring: _Optional[_Union[WordScoring, str]] = ..., offset_unit: _Optional[_Union[OffsetUnit, str]] = ..., suggestions: _Optional[int] = ...) -> None: ...

class TokenScore(_message.Message):
    __slots__ = ("token", "start", "end", "score", "replaced")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    token: str
    start: int
    end: int
    score: float
    replaced: bool
    def __init__(self, token: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., score: _Optional[float] = ..., replaced: _Optional[bool] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("start", "end", "text", "score")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    text: str
    score: float
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., text: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("text", "start", "end", "score", "replaced", "suggestions")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    text: str
    start: int
    end: int
    score: float
    replaced: bool
    suggestions: _containers.RepeatedCompositeFieldContainer[Suggestion]
    def __init__(self, text: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., score: _Optional[float] = ..., replaced: _Optional[bool] = ..., suggestions: _Optional[_Iterable[_Union[Suggestion, _Mapping]]] = ...) -> None: ...

class Suggestion(_message.Message):
    __slots__ = ("text", "probability")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    text: str
    probability: float
    def __init__(self, text: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class DetectReplacementsResponse(_message.Message):
    __slots__ = ("tokens", "replaced_spans", "replaced_fraction", "model", "words", "offset_unit")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_SPANS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_UNIT_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenScore]
    replaced_spans: _containers.RepeatedCompositeFieldContainer[Span]
    replaced_fraction: float
    model: str
    words: _containers.RepeatedCompositeFieldContainer[Word]
    offset_unit: OffsetUnit
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenScore, _Mapping]]] = ..., replaced_spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., replaced_fraction: _Optional[float] = ..., model: _Optional[str] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., offset_unit: _Optional[_Union[OffsetUnit, str]] = ...) -> None: ...
