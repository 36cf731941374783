"""Python clients of the t5electra gRPC API.

>>> from t5electra.clients import Client
>>> with Client("localhost:9000") as client:
...     print(client.generate("translate English to German: the cat sleeps").text)
"""

from typing import Any

from . import results
from .aio import AsyncClient, AsyncGenerationStream
from .client import Client, GenerationStream
from .options import NO_RETRY, RetryPolicy
from .results import (
    Detection,
    GeneratedText,
    Generation,
    ModelInfo,
    Span,
    StreamEnd,
    Suggestion,
    T5ElectraError,
    Token,
    Tokenization,
    TokenLogprob,
    TokenScore,
    TopToken,
    Word,
)

__all__ = [
    "NO_RETRY",
    "AsyncClient",
    "AsyncGenerationStream",
    "Client",
    "Detection",
    "GeneratedText",
    "Generation",
    "GenerationStream",
    "ModelInfo",
    "RetryPolicy",
    "Span",
    "StreamEnd",
    "Suggestion",
    "T5ElectraError",
    "Token",
    "TokenLogprob",
    "TokenScore",
    "Tokenization",
    "TopToken",
    "Word",
]


def __getattr__(name: str) -> Any:
    """Old names that still import, with a warning (see ``results``)."""
    if name == "Sequence":
        return results.__getattr__(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
