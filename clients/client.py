"""Blocking client: ``Client("localhost:9000").generate("summarize: ...")``."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .options import (
    ClientConfig,
    RetryPolicy,
    deadline_after,
    detect_request,
    generate_request,
    pause_before_retry,
    remaining,
    tokenize_request,
)
from .results import (
    Detection,
    Generation,
    ModelInfo,
    StreamEnd,
    T5ElectraError,
    Tokenization,
    TokenLogprob,
    _metadata,
)
from .v1 import detection_pb2_grpc, generation_pb2, generation_pb2_grpc, models_pb2, models_pb2_grpc

T = TypeVar("T")


class Client:
    """One channel to a t5electra server, safe to share between threads.

    ``timeout`` is each call's deadline in seconds, retries included;
    ``tls=True`` (or ``root_certificates``) talks TLS to a TLS-terminating
    gateway or sidecar; ``token`` is sent as ``authorization: Bearer``;
    ``application`` selects a Serve application when several run.
    """

    def __init__(
        self,
        address: str = "localhost:9000",
        *,
        timeout: float | None = 30.0,
        tls: bool = False,
        root_certificates: bytes | None = None,
        token: str | None = None,
        application: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = ClientConfig(timeout, tls, root_certificates, token, application, retry or RetryPolicy())
        credentials = self.config.credentials()
        self.channel = (
            grpc.secure_channel(address, credentials, options=self.config.channel_options())
            if credentials
            else grpc.insecure_channel(address, options=self.config.channel_options())
        )
        self.generation = generation_pb2_grpc.TextGenerationStub(self.channel)
        self.detection = detection_pb2_grpc.ReplacementDetectionStub(self.channel)
        self.models = models_pb2_grpc.ModelsStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def generate(
        self, text: str, *, timeout: float | None = None, request_id: str | None = None, **params: Any
    ) -> Generation:
        """Generates; ``params`` are GenerationParameters fields (max_new_tokens=…)."""
        request = generate_request(text, params)
        response, trailing = self._unary(self.generation.Generate.with_call, request, timeout, request_id)
        return Generation.from_proto(response, trailing)

    def generate_stream(
        self, text: str, *, timeout: float | None = None, request_id: str | None = None, **params: Any
    ) -> GenerationStream:
        """Iterates over text pieces as they are generated."""
        request = generate_request(text, params)
        return GenerationStream(self, request, timeout, request_id)

    def detect_replacements(
        self,
        text: str,
        *,
        threshold: float | None = None,
        word_scoring: str | None = None,
        offset_unit: str | None = None,
        suggestions: int | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> Detection:
        """``word_scoring``: max, first or mean; ``offset_unit``: code_point,
        utf8_byte or utf16_code_unit; ``suggestions``: originals per replaced
        word (needs a server with a generator)."""
        request = detect_request(text, threshold, word_scoring, offset_unit, suggestions)
        response, trailing = self._unary(self.detection.DetectReplacements.with_call, request, timeout, request_id)
        return Detection.from_proto(response, trailing)

    def tokenize(
        self, text: str, *, model: str = "t5", timeout: float | None = None, request_id: str | None = None
    ) -> Tokenization:
        """The tokens ``model`` (t5 or electra) would read and bill for ``text``."""
        request = tokenize_request(text, model)
        response, _ = self._unary(self.models.Tokenize.with_call, request, timeout, request_id)
        return Tokenization.from_proto(response)

    def model_info(self, *, timeout: float | None = None) -> tuple[ModelInfo, ...]:
        """Every served model and the request fields it accepts."""
        request = models_pb2.GetModelInfoRequest()
        response, _ = self._unary(self.models.GetModelInfo.with_call, request, timeout, None)
        return ModelInfo.all_from(response)

    def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        """SERVING, NOT_SERVING or SERVICE_UNKNOWN; raises on transport errors."""
        try:
            response = self.health_stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout, metadata=self.config.metadata(None)
            )
        except grpc.RpcError as error:
            raise T5ElectraError.from_rpc_error(error) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unary(
        self, method: Callable[..., Any], request: Any, timeout: float | None, request_id: str | None
    ) -> tuple[Any, dict[str, str]]:
        def call(remaining: float | None) -> tuple[Any, dict[str, str]]:
            response, rpc = method(request, timeout=remaining, metadata=self.config.metadata(request_id, remaining))
            return response, _metadata(rpc.trailing_metadata())

        return self._with_retries(call, timeout)

    def _with_retries(self, call: Callable[[float | None], T], timeout: float | None) -> T:
        deadline = deadline_after(timeout if timeout is not None else self.config.timeout)
        for attempt in itertools.count():
            try:
                return call(remaining(deadline))
            except grpc.RpcError as error:
                failure = T5ElectraError.from_rpc_error(error)
            time.sleep(pause_before_retry(self.config.own_retries, failure, attempt, deadline))
        raise AssertionError("unreachable")


class GenerationStream:
    """Iterator of text pieces; ``end`` describes the finished stream.

    A stream is retried only while no piece has arrived: after that the
    caller has seen text, and a retry could not continue it seamlessly.
    """

    def __init__(
        self, client: Client, request: generation_pb2.GenerateRequest, timeout: float | None, request_id: str | None
    ) -> None:
        self._client = client
        self._request = request
        self._timeout = timeout
        self._request_id = request_id
        self._call: Any = None
        self.end: StreamEnd | None = None
        # When the first message arrived (time.perf_counter()), text or not:
        # the time to first token, for a model whose first tokens print nothing.
        self.first_token_at: float | None = None

    def __iter__(self) -> Iterator[str]:
        first, rest = self._client._with_retries(self._open, self._timeout)
        self.first_token_at = time.perf_counter()
        text, last, tokens = "", None, []
        try:
            for message in _chain(first, rest):
                text += message.text
                tokens += TokenLogprob.all_from(message.tokens)
                last = message
                if message.text:
                    yield message.text
        except grpc.RpcError as error:
            raise T5ElectraError.from_rpc_error(error) from None
        if last is not None and last.finish_reason:
            self.end = StreamEnd(
                text,
                generation_pb2.FinishReason.Name(last.finish_reason),
                last.generated_tokens,
                last.usage.input_tokens,
                last.model,
                tokens=tuple(tokens),
                metadata=_metadata(self._call.trailing_metadata()),
            )

    def _open(self, remaining: float | None) -> tuple[Any, Any]:
        self._call = self._client.generation.GenerateStream(
            self._request, timeout=remaining, metadata=self._client.config.metadata(self._request_id, remaining)
        )
        # Read the first message here, inside the retry loop.
        first = next(self._call, None)
        return first, self._call

    def cancel(self) -> None:
        """Stops the stream; the server stops generating."""
        if self._call is not None:
            self._call.cancel()


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    if first is not None:
        yield first
        yield from rest
