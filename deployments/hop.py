"""One Ray call for many requests on the ingress → model hop.

Every Ray actor call costs both ends CPU of their own (the router choosing a
replica, pickling, the core worker's RPC, the replica receiving and
answering it): with one call a request, most of the ingress's and the
ELECTRA replica's CPU outside the engine (``serving_cost.py --profile``;
the figures in docs/benchmarks.md), more than the model's work on one text
at batch 16. The ingress can instead keep at most ``calls_in_flight`` calls out to a
deployment, each carrying every request that arrived while the others were
out (up to ``max_requests``): a lone caller's request leaves at once, alone,
and under load a batch shares the hop's cost, which the replica's own
batcher then scores together.

A caller that leaves stops waiting at once. Its request is not sent if it
had not been; once sent, it stays in the call the others share (the
replica's batcher drops it when its deadline passes), and a call whose
callers all left is cancelled.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ray.serve.exceptions import BackPressureError

T = TypeVar("T")


class Response(Protocol):
    """A call's answer as ``send`` returns it: awaitable and cancellable,
    as Ray's ``DeploymentResponse`` is."""

    def __await__(self) -> Any: ...

    def cancel(self) -> Any: ...


@dataclass(eq=False)
class _Waiting(Generic[T]):
    request: T
    answer: asyncio.Future
    left: bool = False
    call: _Call | None = None


@dataclass(eq=False)
class _Call:
    waiting: list[_Waiting] = field(default_factory=list)
    response: Response | None = None

    def abandoned(self) -> bool:
        return all(waiting.left for waiting in self.waiting)

    def fail(self, error: BaseException) -> None:
        for waiting in self.waiting:
            if not waiting.left:
                waiting.answer.set_exception(error)


class Hop(Generic[T]):
    """Coalesces the requests bound for one method of one deployment.

    ``send`` makes the call for a list of requests; its answer is a list of
    the same length with each request's answer, which may be the exception
    that request ended with (a replica returns them rather than failing the
    others). ``calls_in_flight`` is asked before each call, so that it can
    follow the deployment's replica count."""

    def __init__(
        self,
        send: Callable[[list[T]], Response],
        calls_in_flight: Callable[[], int],
        max_requests: int,
        max_waiting: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._send = send
        self._calls_in_flight = calls_in_flight
        self._max_requests = max_requests
        self._max_waiting = max_waiting
        self._queue: deque[_Waiting[T]] = deque()
        self._out = 0
        self._tasks: set[asyncio.Task] = set()

    async def call(self, request: T) -> Any:
        """``request``'s answer, as the deployment gave it; refused at once
        with Ray's own :class:`BackPressureError` when ``max_waiting``
        requests already wait (Ray's router refuses so when its queue is
        full: the caller sees the same RESOURCE_EXHAUSTED either way)."""
        limit = self._max_waiting()
        if limit is not None and len(self._queue) >= limit:
            raise BackPressureError(len(self._queue), limit)
        waiting = _Waiting(request, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        self._pump()
        try:
            return await asyncio.shield(waiting.answer)
        except asyncio.CancelledError:
            self._leave(waiting)
            raise

    def _leave(self, waiting: _Waiting[T]) -> None:
        waiting.left = True
        if waiting.call is None:
            self._queue.remove(waiting)
        elif waiting.call.response is not None and waiting.call.abandoned():
            waiting.call.response.cancel()

    def _pump(self) -> None:
        """Sends what waits while fewer calls than allowed are out; the Ray
        call is made here, at once, and only its answer is awaited apart."""
        while self._queue and self._out < max(1, self._calls_in_flight()):
            call = _Call([self._queue.popleft() for _ in range(min(self._max_requests, len(self._queue)))])
            for waiting in call.waiting:
                waiting.call = call
            try:
                call.response = self._send([waiting.request for waiting in call.waiting])
            except Exception as error:
                call.fail(error)
                continue
            self._out += 1
            task = asyncio.get_running_loop().create_task(self._answer(call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, call: _Call) -> None:
        try:
            answers = await call.response
        except BaseException as error:  # the call failed as a whole: so does each of its requests
            call.fail(error)
            if not isinstance(error, Exception):
                raise
            return
        finally:
            self._out -= 1
            self._pump()
        for waiting, answer in zip(call.waiting, answers, strict=True):
            if not waiting.left:
                waiting.answer.set_result(answer)
