"""Blocking client: ``Client("localhost:9000").generate("summarize: ...")``.
Requests, results and retry decisions come from ``core`` and ``options``;
this module only does the blocking I/O."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from t5electra.protocol.v1 import generation_pb2

from . import core
from .options import ClientConfig, RetryPolicy, deadline_after, generate_request, pause_before_retry, remaining
from .results import Detection, Generation, Inference, ModelInfo, StreamEnd, T5ElectraError, Tokenization, _metadata

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
        self.channel = core.open_channel(grpc, address, self.config)
        self.stubs = core.Stubs(self.channel)

    def generate(
        self, text: str, *, timeout: float | None = None, request_id: str | None = None, **params: Any
    ) -> Generation:
        """Generates; ``params`` are GenerationParameters fields (max_new_tokens=…)."""
        return self._unary(core.generate(text, params), timeout, request_id)

    def generate_stream(
        self, text: str, *, timeout: float | None = None, request_id: str | None = None, **params: Any
    ) -> GenerationStream:
        """Iterates over text pieces as they are generated."""
        return GenerationStream(self, generate_request(text, params), timeout, request_id)

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
        call = core.detect(text, threshold, word_scoring, offset_unit, suggestions)
        return self._unary(call, timeout, request_id)

    def model_infer(
        self,
        model: str,
        texts: list[str],
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        **parameters: Any,
    ) -> Inference:
        """The Open Inference Protocol's ModelInfer: ``texts`` as the input
        ``text`` of ``model`` (t5 or electra, as the server names them), with
        ``parameters`` as in Generate or DetectReplacements (docs/api.md)."""
        return self._unary(core.model_infer(model, texts, parameters), timeout, request_id)

    def tokenize(
        self, text: str, *, model: str = "t5", timeout: float | None = None, request_id: str | None = None
    ) -> Tokenization:
        """The tokens ``model`` (t5 or electra) would read and bill for ``text``."""
        return self._unary(core.tokenize(text, model), timeout, request_id)

    def model_info(self, *, timeout: float | None = None) -> tuple[ModelInfo, ...]:
        """Every served model and the request fields it accepts."""
        return self._unary(core.model_info(), timeout, None)

    def health(self, service: str = "", *, timeout: float | None = 5.0) -> str:
        """SERVING, NOT_SERVING or SERVICE_UNKNOWN; raises on transport errors."""
        try:
            response = self.stubs.health.Check(
                core.health_request(service), timeout=timeout, metadata=self.config.metadata(None)
            )
        except grpc.RpcError as error:
            raise T5ElectraError.from_rpc_error(error) from None
        return core.health_status(response)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unary(self, unary: core.Unary[T], timeout: float | None, request_id: str | None) -> T:
        method = unary.method(self.stubs).with_call

        def call(remaining: float | None) -> T:
            metadata = self.config.metadata(request_id, remaining)
            response, rpc = method(unary.request, timeout=remaining, metadata=metadata)
            return unary.result(response, _metadata(rpc.trailing_metadata()))

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
        first = self._client._with_retries(self._open, self._timeout)
        self.first_token_at = time.perf_counter()
        reading = core.StreamReading()
        messages = () if first is None else itertools.chain((first,), self._call)
        try:
            for message in messages:
                piece = reading.add(message)
                if piece:
                    yield piece
        except grpc.RpcError as error:
            raise T5ElectraError.from_rpc_error(error) from None
        finally:
            if not reading.finished:
                self.cancel()  # the caller stopped reading: the server stops generating
        if reading.finished:
            self.end = reading.end(_metadata(self._call.trailing_metadata()))

    def _open(self, remaining: float | None) -> Any:
        self._call = self._client.stubs.generation.GenerateStream(
            self._request, timeout=remaining, metadata=self._client.config.metadata(self._request_id, remaining)
        )
        # Read the first message here, inside the retry loop.
        return next(self._call, None)

    def cancel(self) -> None:
        """Stops the stream; the server stops generating."""
        if self._call is not None:
            self._call.cancel()
