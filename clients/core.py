"""What the blocking and the asyncio client share, so that each keeps only
its I/O: the channel and its stubs, each RPC's request and how its answer
becomes a result, and how a stream's messages add up to its end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from grpc_health.v1 import health_pb2, health_pb2_grpc

from t5electra.protocol.inference import open_inference_pb2_grpc
from t5electra.protocol.v1 import detection_pb2_grpc, generation_pb2, generation_pb2_grpc, models_pb2, models_pb2_grpc

from .options import ClientConfig, detect_request, generate_request, infer_request, tokenize_request
from .results import Detection, Generation, Inference, ModelInfo, StreamEnd, Tokenization, TokenLogprob

R = TypeVar("R")


def open_channel(grpc_module: Any, address: str, config: ClientConfig) -> Any:
    """A channel from ``grpc`` or ``grpc.aio`` (same signatures), TLS when
    the config asks for it."""
    credentials = config.credentials()
    if credentials:
        return grpc_module.secure_channel(address, credentials, options=config.channel_options())
    return grpc_module.insecure_channel(address, options=config.channel_options())


class Stubs:
    """The service stubs on one channel."""

    def __init__(self, channel: Any) -> None:
        self.generation = generation_pb2_grpc.TextGenerationStub(channel)
        self.detection = detection_pb2_grpc.ReplacementDetectionStub(channel)
        self.models = models_pb2_grpc.ModelsStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.inference = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)


@dataclass(frozen=True)
class Unary(Generic[R]):
    """One unary call: which stub method, with what request, and how its
    response (and trailing metadata) becomes the result."""

    method: Callable[[Stubs], Any]
    request: Any
    result: Callable[[Any, dict[str, str]], R]


def generate(text: str, params: dict[str, Any]) -> Unary[Generation]:
    return Unary(lambda s: s.generation.Generate, generate_request(text, params), Generation.from_proto)


def detect(
    text: str, threshold: float | None, word_scoring: str | None, offset_unit: str | None, suggestions: int | None
) -> Unary[Detection]:
    request = detect_request(text, threshold, word_scoring, offset_unit, suggestions)
    return Unary(lambda s: s.detection.DetectReplacements, request, Detection.from_proto)


def model_infer(model: str, texts: list[str], parameters: dict[str, Any]) -> Unary[Inference]:
    return Unary(lambda s: s.inference.ModelInfer, infer_request(model, texts, parameters), Inference.from_proto)


def tokenize(text: str, model: str) -> Unary[Tokenization]:
    return Unary(lambda s: s.models.Tokenize, tokenize_request(text, model), lambda r, _: Tokenization.from_proto(r))


def model_info() -> Unary[tuple[ModelInfo, ...]]:
    return Unary(lambda s: s.models.GetModelInfo, models_pb2.GetModelInfoRequest(), lambda r, _: ModelInfo.all_from(r))


def health_request(service: str) -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=service)


def health_status(response: health_pb2.HealthCheckResponse) -> str:
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


class StreamReading:
    """A GenerateStream's messages as they arrive: the text so far, the
    tokens' log-probabilities, and the end once the last message came."""

    def __init__(self) -> None:
        self.text = ""
        self._tokens: list[TokenLogprob] = []
        self._last: Any = None

    def add(self, message: Any) -> str:
        """Takes one message; returns its text piece ('' for none)."""
        self.text += message.text
        self._tokens += TokenLogprob.all_from(message.tokens)
        self._last = message
        return message.text

    @property
    def finished(self) -> bool:
        """True once the message that ends the stream (with its finish reason) came."""
        return self._last is not None and bool(self._last.finish_reason)

    def end(self, trailing: dict[str, str]) -> StreamEnd:
        """The finished stream, with the call's trailing metadata."""
        last = self._last
        return StreamEnd(
            self.text,
            generation_pb2.FinishReason.Name(last.finish_reason),
            last.generated_tokens,
            last.usage.input_tokens,
            last.model,
            tokens=tuple(self._tokens),
            metadata=trailing,
        )
