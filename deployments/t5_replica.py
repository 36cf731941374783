"""The T5 replica, a Serve deployment made of a plain class by ``app.py``.

It wraps the engine and knows nothing of tokenizers or protos: requests are
the domain's dataclasses, and every answer is a :class:`Reply` that carries
the engine's result with its usage and timing. The replica prepares
(validates and tokenizes) each request itself. Decoding runs on a thread of
its own (``decode_loop.py``) so that the replica's event loop keeps
accepting requests, and noticing callers that leave, while the model
computes.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from t5electra.server.domain import GenerationRequest, GenerationResult, ModelDescription, StreamPiece, Tokenization
from t5electra.server.generator import T5Generator
from t5electra.server.limits import Limits
from t5electra.server.session import StepEvent

from . import names
from .decode_loop import DecodeLoop
from .deployment_settings import T5Settings
from .records import Output
from .refusals import RETURNED, DeadlineExceeded, Overloaded
from .replica_common import replica_info, set_threads, since
from .replica_metrics import BatchMetrics
from .replies import BatchTiming, Reply, Usage
from .tracing import Carrier, ReplicaSpan, Tracing

_GIL_SWITCH_INTERVAL_S = 0.0005
"""The T5 replica's decoding thread shares the GIL with the replica's event
loop. At Python's default of 5 ms, each of a step's hundreds of torch calls
that releases the GIL can wait that long to take it back while the event
loop is busy, as it is when it refuses most arrivals under overload. Measured
in docs/operations.md's overload scenario (its loadtest command at 25.2/s,
run with this constant and with Python's default): answered within the
deadline 7.8 -> 10.0 requests/s, closed-loop capacity unchanged within the
noise of one run."""


def _decoding(timing: BatchTiming) -> dict[str, int]:
    """A T5 request's decoding span: its steps, and the mean rows they decoded."""
    return {"steps": timing.steps, "mean_rows": timing.batch_size}


def load_generator(settings: T5Settings, limits: Limits) -> T5Generator:
    """The T5 engine a replica serves, as its settings say."""
    return T5Generator(
        settings.model, device=settings.device, dtype=settings.dtype, limits=limits, compile=settings.compile
    )


class TextGeneratorDeployment:
    """T5 replica: Generate and GenerateStream requests decode together in
    one loop (see ``decode_loop.py``), a token per step. A plain class,
    made a Serve deployment by ``app.py``; ``engine`` builds what it serves
    (tests give it a fake)."""

    def __init__(
        self,
        settings: T5Settings,
        limits: Limits,
        engine: Callable[[T5Settings, Limits], T5Generator] = load_generator,
    ) -> None:
        set_threads(settings)
        sys.setswitchinterval(_GIL_SWITCH_INTERVAL_S)
        self._engine = engine(settings, limits)
        self._metrics = BatchMetrics(self._engine.name)
        self._stream_interval_s = settings.stream_interval_s
        self._loop = DecodeLoop(
            self._engine.session,
            max_rows=settings.max_batch_size,
            policy=settings.scheduler,
            idle_wait_s=settings.batch_wait_timeout_s,
            admission_margin=settings.admission_margin,
            on_steps=self._metrics.steps,
            on_dropped=self._metrics.dropped,
        )
        self._loop.prime([(1, seconds) for seconds in self._engine.warm_up()])
        self._tracing = Tracing.from_environment(names.TEXT_GENERATOR)

    def __del__(self) -> None:
        """Serve calls this as the replica stops: spans still buffered are exported."""
        self._tracing.shutdown()

    def info(self) -> dict[str, Any]:
        """Which model this replica serves, where, in which process, how many
        requests it is decoding right now (cancelled ones leave within a
        step), how many decoding steps it has run, and the step time and
        answer length admission estimates with."""
        return {
            **replica_info(self._engine),
            "decoding": self._loop.decoding,
            "steps": self._loop.steps,
            **self._loop.load(),
        }

    def describe(self) -> ModelDescription:
        return self._engine.describe()

    def tokenize(self, text: str) -> Reply[Tokenization]:
        """The text's tokens, billed as input, with the model's name."""
        tokenization = self._engine.tokenize(text)
        return Reply(tokenization, self._engine.name, Usage(len(tokenization.tokens)), BatchTiming())

    async def generate(
        self, request: GenerationRequest, trace: Carrier | None = None
    ) -> Reply[GenerationResult] | Overloaded | DeadlineExceeded:
        """The answer; or the refusal of a request that cannot be answered
        in time (``admission.py``), or its expiry while queued or decoding,
        returned rather than raised (see :data:`RETURNED`: this process
        shares the GIL with the decoding thread). ``trace``: the ingress's
        trace context."""
        entered = time.perf_counter()
        with self._tracing.replica(f"{names.TEXT_GENERATOR}.generate", trace) as span:
            prepared = self._engine.prepare(request)
            span.queued()
            try:
                output = await self._loop.call(prepared)
            except RETURNED as failure:
                span.refused(str(failure))
                return failure
            assert output.timing is not None, "a request's last output carries its timing"
            result = output.payload.result
            reply = self._reply(result, result, output.timing, entered)
            span.answered(reply.timing, "decode", _decoding(reply.timing))
            return reply

    async def generate_stream(
        self, request: GenerationRequest, trace: Carrier | None = None
    ) -> AsyncIterator[StreamPiece | Reply[StreamPiece] | Overloaded | DeadlineExceeded]:
        """Pieces of text, the last one as a :class:`Reply`; a refusal or
        an expiry as the last message (as :meth:`generate` returns them).
        Leaving this generator early (the caller cancelled or disconnected)
        cancels the request; its row leaves the batch at the next step."""
        entered = time.perf_counter()
        with self._tracing.replica(f"{names.TEXT_GENERATOR}.generate_stream", trace) as span:
            prepared = self._engine.prepare(request, stream=True)
            pieces = self._loop.stream(prepared)
            span.queued()
            try:
                async for message in self._coalesced(pieces, entered, span):
                    yield message
            except RETURNED as failure:
                span.refused(str(failure))
                yield failure
            finally:
                await pieces.aclose()  # a caller that left leaves the batch now, not when collected

    async def _coalesced(
        self, pieces: AsyncIterator[list[Output[StepEvent]]], entered: float, span: ReplicaSpan
    ) -> AsyncIterator[StreamPiece | Reply[StreamPiece]]:
        """The decoding loop's outputs as messages: the first piece at once,
        later ones made within ``stream_interval_s`` of the last message
        (or while the ingress took it) together, the last as a Reply."""
        held: list[StreamPiece] = []
        sent = None
        async for outputs in pieces:
            held += [o.payload.piece for o in outputs if o.payload.piece is not None]
            last = outputs[-1]
            if last.timing is not None:
                reply = self._reply(StreamPiece.joined(held), last.payload.result, last.timing, entered)
                span.answered(reply.timing, "decode", _decoding(reply.timing))
                yield reply
                return
            now = time.perf_counter()
            if held and (sent is None or now - sent >= self._stream_interval_s):
                yield StreamPiece.joined(held)
                held, sent = [], now

    def _reply(self, payload: Any, result: GenerationResult, timing: BatchTiming, entered: float) -> Reply[Any]:
        usage = Usage(result.input_tokens, result.output_tokens)
        self._metrics.count(usage)
        timing = dataclasses.replace(timing, replica_ms=since(entered))
        return Reply(payload, self._engine.name, usage, timing, self._loop.admission.horizon(time.time()))
