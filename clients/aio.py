"""asyncio client, the same API as :class:`~t5electra.clients.client.Client`
with ``await`` and ``async for``."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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


class AsyncClient:
    """One ``grpc.aio`` channel; create it inside the event loop that uses it."""

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
            grpc.aio.secure_channel(address, credentials, options=self.config.channel_options())
            if credentials
            else grpc.aio.insecure_channel(address, options=self.config.channel_options())
        )
        self.generation = generation_pb2_grpc.TextGenerationStub(self.channel)
        self.detection = detection_pb2_grpc.ReplacementDetectionStub(self.channel)
        self.models = models_pb2_grpc.ModelsStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    async def generate(
        self, text: str, *, timeout: float | None = None, request_id: str | None = None, **params: Any
    ) -> Generation:
        request = generate_request(text, params)
        response, trailing = await self._unary(self.generation.Generate, request, timeout, request_id)
        return Generation.from_proto(response, trailing)

    def generate_stream(
        self, text: str, *, timeout: float | None = None, request_id: str | None = None, **params: Any
    ) -> AsyncGenerationStream:
        return AsyncGenerationStream(self, generate_request(text, params), timeout, request_id)

    async def detect_replacements(
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
        response, trailing = await self._unary(self.detection.DetectReplacements, request, timeout, request_id)
        return Detection.from_proto(response, trailing)

    async def tokenize(
        self, text: str, *, model: str = "t5", timeout: float | None = None, request_id: str | None = None
    ) -> Tokenization:
        """The tokens ``model`` (t5 or electra) would read and bill for ``text``."""
        request = tokenize_request(text, model)
        response, _ = await self._unary(self.models.Tokenize, request, timeout, request_id)
        return Tokenization.from_proto(response)

    async def model_info(self, *, timeout: float | None = None) -> tuple[ModelInfo, ...]:
        """Every served model and the request fields it accepts."""
        request = models_pb2.GetModelInfoRequest()
        response, _ = await self._unary(self.models.GetModelInfo, request, timeout, None)
        return ModelInfo.all_from(response)

    async def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        try:
            response = await self.health_stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout, metadata=self.config.metadata(None)
            )
        except grpc.RpcError as error:
            raise T5ElectraError.from_rpc_error(error) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _unary(
        self, method: Any, request: Any, timeout: float | None, request_id: str | None
    ) -> tuple[Any, dict[str, str]]:
        async def call(remaining: float | None) -> tuple[Any, dict[str, str]]:
            rpc = method(request, timeout=remaining, metadata=self.config.metadata(request_id, remaining))
            response = await rpc
            return response, _metadata(await rpc.trailing_metadata())

        return await self._with_retries(call, timeout)

    async def _with_retries(self, call: Callable[[float | None], Awaitable[T]], timeout: float | None) -> T:
        deadline = deadline_after(timeout if timeout is not None else self.config.timeout)
        for attempt in itertools.count():
            try:
                return await call(remaining(deadline))
            except grpc.RpcError as error:
                failure = T5ElectraError.from_rpc_error(error)
            await asyncio.sleep(pause_before_retry(self.config.own_retries, failure, attempt, deadline))
        raise AssertionError("unreachable")


class AsyncGenerationStream:
    """Async iterator of text pieces; ``end`` describes the finished stream."""

    def __init__(
        self,
        client: AsyncClient,
        request: generation_pb2.GenerateRequest,
        timeout: float | None,
        request_id: str | None,
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

    async def __aiter__(self) -> AsyncIterator[str]:
        first = await self._client._with_retries(self._open, self._timeout)
        self.first_token_at = time.perf_counter()
        text, last, tokens = "", None, []
        try:
            message = first
            while message is not None and message is not grpc.aio.EOF:
                text += message.text
                tokens += TokenLogprob.all_from(message.tokens)
                last = message
                if message.text:
                    yield message.text
                message = await self._call.read()
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
                metadata=_metadata(await self._call.trailing_metadata()),
            )

    async def _open(self, remaining: float | None) -> Any:
        self._call = self._client.generation.GenerateStream(
            self._request, timeout=remaining, metadata=self._client.config.metadata(self._request_id, remaining)
        )
        return await self._call.read()

    def cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()
