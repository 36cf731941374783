"""Two things Ray Serve 2.60's gRPC proxy does not do, added to it from the
inside: it forwards the caller's gRPC deadline, and it stops a stream whose
caller left while a piece was being written.

**Deadline.** grpcio knows each call's deadline (``grpc-timeout``, fresh on
every retried attempt), but the proxy hands the ingress only a snapshot of the
call's metadata, without it. Here the proxy's servicer context is wrapped so
that its metadata carries :data:`DEADLINE_KEY`, the deadline as Unix time in
milliseconds (an absolute time, so it also counts the time spent queued in
the proxy); entries of that name a client sent are dropped.

**A leaving caller.** The proxy streams by yielding pieces to grpcio, which
writes them in its own frame: a cancel that lands during a write never
reaches Serve's generator, which is then parked at its ``yield``, and the
replica goes on decoding (Serve calls ``response.cancel()`` only for a
cancel raised while it awaits the next piece). The stream handler here is a
coroutine that writes with ``context.write``, so the cancel lands in this
frame; it then resumes Serve's generator in a task of its own and cancels it
while it awaits the next piece, so Serve cancels the call to the replica as
it does for any other cancel.

**Direct ingress** (``front: haproxy``): an ingress replica serves gRPC
itself, and its server, too, builds the handler's context from a copy of
the metadata without the deadline, and yields a stream's pieces for
grpcio to write: both are mended the same way, and closing Serve's
generator there is what stops the call.

Installed by the servicer functions Serve calls where a gRPC server starts,
before it serves (``servicers.py``): into Serve's proxy and into an ingress
replica's direct-ingress server, and only on the Ray version it was written
against (checked, and logged, at start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import ray

logger = logging.getLogger("ray.serve")

DEADLINE_KEY = "x-grpc-deadline-unix-ms"
"""Metadata the ingress reads: when the caller's gRPC deadline ends (Unix ms)."""

RAY_VERSIONS = ("2.60.",)
"""Ray releases whose proxy internals this module was written and tested against."""

_INSTALLED = "_t5electra_proxy_extension"
_background: set[asyncio.Task[None]] = set()


class _Finished:
    """Stands in for grpcio's context once its call is over: Serve still
    logs the call then, and ``peer()`` on a finished call crashes the proxy."""

    def __init__(self, peer: str) -> None:
        self._peer = peer
        self._code: Any = None
        self._details = ""

    def peer(self) -> str:
        return self._peer

    def code(self) -> Any:
        return self._code

    def details(self) -> str:
        return self._details

    def set_code(self, code: Any) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class DeadlineContext:
    """grpcio's servicer context with the caller's deadline in its metadata."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._peer = context.peer()
        metadata = [(key, value) for key, value in context.invocation_metadata() or () if key != DEADLINE_KEY]
        remaining = context.time_remaining()  # None when the caller set no deadline
        if remaining is not None:
            metadata.append((DEADLINE_KEY, str(int((time.time() + remaining) * 1000))))
        self._metadata = tuple(metadata)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def finish(self) -> None:
        self._context = _Finished(self._peer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _cancel_upstream(pieces: AsyncIterator[Any]) -> None:
    """Cancels Serve's stream generator while it awaits its next piece, in a
    task of its own: the RPC's task may be cancelled again meanwhile."""

    async def cancel() -> None:
        try:
            step = asyncio.ensure_future(pieces.__anext__())
        except RuntimeError:  # running already: the cancel reached Serve itself
            return
        await asyncio.sleep(0)  # the step now awaits the replica's next piece
        step.cancel()
        for ending in (step, pieces.aclose()):  # type: ignore[attr-defined]
            # CancelledError or StopAsyncIteration: the stream is over either way.
            with contextlib.suppress(BaseException):
                await ending

    task = asyncio.get_running_loop().create_task(cancel())
    _background.add(task)
    task.add_done_callback(_background.discard)


def _proxy_stream(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Serve's proxy streams by yielding pieces for grpcio to write: here
    they are written in this frame, where a cancel during a write lands."""

    async def unary_stream(request: Any, context: Any) -> None:
        wrapped = DeadlineContext(context)
        pieces = handler(request, wrapped)
        try:
            async for piece in pieces:
                await context.write(piece)
        except BaseException:  # the caller left: a cancel, or the failed write
            wrapped.finish()
            _cancel_upstream(pieces)
            raise

    return unary_stream


def _replica_stream(handler: Callable[..., Any]) -> Callable[..., Any]:
    """An ingress replica's own server, as the proxy: written in this
    frame; there closing Serve's generator is what stops the call."""

    async def unary_stream(request: Any, context: Any) -> None:
        async with contextlib.aclosing(handler(request, DeadlineContext(context))) as pieces:
            async for piece in pieces:
                await context.write(piece)

    return unary_stream


def _extended(
    stream: Callable[[Callable[..., Any]], Callable[..., Any]],
    original: Callable[..., Any],
    service_method: str,
    streaming_type: Any,
) -> Callable[..., Any]:
    """The handler ``original`` makes, given the context with the deadline;
    a server-streaming one written as ``stream`` says."""
    from ray.serve._private.proxy_request_response import gRPCStreamingType

    handler = original(service_method=service_method, streaming_type=streaming_type)
    if streaming_type == gRPCStreamingType.UNARY_UNARY:

        async def unary_unary(request: Any, context: Any) -> Any:
            return await handler(request, DeadlineContext(context))

        return unary_unary
    if streaming_type == gRPCStreamingType.UNARY_STREAM:
        return stream(handler)
    return handler


def _stream_for(factory: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]] | None:
    """How the server whose handlers ``factory`` makes streams once
    extended: Serve's proxy, an ingress replica's direct-ingress server, or
    neither (not extended)."""
    from ray.serve._private.proxy import gRPCProxy
    from ray.serve._private.replica import Replica

    owner = getattr(factory, "__self__", None)
    if isinstance(owner, gRPCProxy):
        return _proxy_stream
    if isinstance(owner, Replica):
        return _replica_stream
    return None


def install(server: Any) -> bool:
    """Extends the gRPC server of Serve's proxy, or of an ingress replica
    under direct ingress, ``server`` is; idempotent. Returns whether it did:
    not for any other server, nor on a Ray release it was not written
    against."""
    factory = getattr(server, "service_handler_factory", None)
    stream = _stream_for(factory)
    if getattr(server, _INSTALLED, False) or stream is None:
        return bool(getattr(server, _INSTALLED, False))
    if not ray.__version__.startswith(RAY_VERSIONS):
        logger.warning(
            "t5electra: Ray %s's gRPC proxy is not extended (written for %s): the caller's gRPC deadline "
            "reaches the server only as x-request-timeout-ms, and a stream cancelled during a write may "
            "decode on until its deadline",
            ray.__version__,
            ", ".join(f"{v}*" for v in RAY_VERSIONS),
        )
        return False
    server.service_handler_factory = functools.partial(_extended, stream, factory)
    setattr(server, _INSTALLED, True)
    return True
