from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DetectReplacementsRequest(_message.Message):
    __slots__ = ("text", "threshold")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    text: str
    threshold: float
    def __init__(self, text: _Optional[str] = ..., threshold: _Optional[float] = ...) -> None: ...

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

class DetectReplacementsResponse(_message.Message):
    __slots__ = ("tokens", "replaced_spans", "replaced_fraction", "model")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_SPANS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenScore]
    replaced_spans: _containers.RepeatedCompositeFieldContainer[Span]
    replaced_fraction: float
    model: str
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenScore, _Mapping]]] = ..., replaced_spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., replaced_fraction: _Optional[float] = ..., model: _Optional[str] = ...) -> None: ...
