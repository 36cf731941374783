"""asyncio client, the same API as :class:`~t5electra.clients.client.Client`
with ``await`` and ``async for``. Requests, results and retry decisions come
from ``core`` and ``options``; this module only does the asyncio I/O."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from t5electra.protocol.v1 import generation_pb2

from . import core
from .options import ClientConfig, RetryPolicy, deadline_after, generate_request, pause_before_retry, remaining
from .results import Detection, Generation, Inference, ModelInfo, StreamEnd, T5ElectraError, Tokenization, _metadata

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
        plain: bool = False,
    ) -> None:
        """``plain``: no project metadata on calls, only their gRPC deadline
        (and the token and application when given), as grpcurl or a client
        of another language sends; the load tester uses it."""
        self.config = ClientConfig(timeout, tls, root_certificates, token, application, retry or RetryPolicy(), plain)
        self.channel = core.open_channel(grpc.aio, address, self.config)
        self.stubs = core.Stubs(self.channel)

    async def generate(
        self, text: str, *, timeout: float | None = None, request_id: str | None = None, **params: Any
    ) -> Generation:
        return await self._unary(core.generate(text, params), timeout, request_id)

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
        """As :meth:`Client.detect_replacements`."""
        call = core.detect(text, threshold, word_scoring, offset_unit, suggestions)
        return await self._unary(call, timeout, request_id)

    async def model_infer(
        self,
        model: str,
        texts: list[str],
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        **parameters: Any,
    ) -> Inference:
        """As :meth:`Client.model_infer`."""
        return await self._unary(core.model_infer(model, texts, parameters), timeout, request_id)

    async def tokenize(
        self, text: str, *, model: str = "t5", timeout: float | None = None, request_id: str | None = None
    ) -> Tokenization:
        return await self._unary(core.tokenize(text, model), timeout, request_id)

    async def model_info(self, *, timeout: float | None = None) -> tuple[ModelInfo, ...]:
        return await self._unary(core.model_info(), timeout, None)

    async def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        try:
            response = await self.stubs.health.Check(
                core.health_request(service), timeout=timeout, metadata=self.config.metadata(None)
            )
        except grpc.RpcError as error:
            raise T5ElectraError.from_rpc_error(error) from None
        return core.health_status(response)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _unary(self, unary: core.Unary[T], timeout: float | None, request_id: str | None) -> T:
        method = unary.method(self.stubs)

        async def call(remaining: float | None) -> T:
            rpc = method(unary.request, timeout=remaining, metadata=self.config.metadata(request_id, remaining))
            response = await rpc
            return unary.result(response, _metadata(await rpc.trailing_metadata()))

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
        # When the first message arrived (time.perf_counter()), text or not.
        self.first_token_at: float | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        message = await self._client._with_retries(self._open, self._timeout)
        self.first_token_at = time.perf_counter()
        reading = core.StreamReading()
        try:
            while message is not None and message is not grpc.aio.EOF:
                piece = reading.add(message)
                if piece:
                    yield piece
                message = await self._call.read()
        except grpc.RpcError as error:
            raise T5ElectraError.from_rpc_error(error) from None
        finally:
            if not reading.finished:
                self.cancel()  # the caller stopped reading: the server stops generating
        if reading.finished:
            self.end = reading.end(_metadata(await self._call.trailing_metadata()))

    async def _open(self, remaining: float | None) -> Any:
        self._call = self._client.stubs.generation.GenerateStream(
            self._request, timeout=remaining, metadata=self._client.config.metadata(self._request_id, remaining)
        )
        return await self._call.read()

    def cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()
