"""Python clients of the t5electra gRPC API.

>>> from t5electra.clients import Client
>>> with Client("localhost:9000") as client:
...     print(client.generate("translate English to German: the cat sleeps").text)
"""

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
