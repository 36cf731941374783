"""The hand-off between a replica's event loop and the thread that runs its
model, in both directions, for the T5 decoding loop and the ELECTRA batch
loop alike.

The event loop posts a request (its :class:`~.records.Request` record is
made here) and awaits what comes back on it; the model thread collects arrivals and departures (callers that
left), waits for them when it has nothing to do, and sends outputs, ends and
failures back, each batch of them in one wake-up of the event loop: waking
it costs the model thread the GIL for a moment.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .records import Request

T = TypeVar("T")

_END = object()


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class Mailbox(Generic[T]):
    """Requests from the event loop to a model thread, answers back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived: deque[Request[T]] = deque()
        self._departed: deque[Request[T]] = deque()
        self._wake = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # The event loop's side.

    async def stream(self, item: T) -> AsyncIterator[list[Any]]:
        """Posts ``item`` and yields its outputs: each time, everything sent
        since the caller last asked, so a slow caller gets fewer, larger
        answers instead of a backlog. A failure sent for it is raised.
        Leaving the iteration early tells the model thread the caller left."""
        request = self.post(item)
        ended = False
        try:
            while True:
                outputs = [await request.outputs.get()]
                while not request.outputs.empty():
                    outputs.append(request.outputs.get_nowait())
                for output in outputs:
                    if isinstance(output, _Failure):
                        ended = True
                        raise output.error
                ended = outputs[-1] is _END
                values = [o for o in outputs if o is not _END]
                if values:
                    yield values
                if ended:
                    return
        finally:
            if not ended:
                self.depart(request)

    async def call(self, item: T) -> Any:
        """Posts ``item`` and returns its last output."""
        last: list[Any] = []
        async for values in self.stream(item):
            last = values
        if not last:
            raise RuntimeError("the model thread ended a request without an answer")
        return last[-1]

    def post(self, item: T) -> Request[T]:
        if self._loop is None:
            # Known on first use: a replica's constructor may run outside the
            # event loop its requests arrive on.
            self._loop = asyncio.get_running_loop()
        request = Request(item)
        with self._lock:
            self._arrived.append(request)
        self._wake.set()
        return request

    def depart(self, request: Request[T]) -> None:
        with self._lock:
            self._departed.append(request)
        self._wake.set()

    # The model thread's side.

    def collect(self) -> tuple[list[Request[T]], list[Request[T]]]:
        """Requests posted and requests whose callers left, since the last call."""
        with self._lock:
            arrived, departed = list(self._arrived), list(self._departed)
            self._arrived.clear()
            self._departed.clear()
        return arrived, departed

    def wait(self, timeout: float | None) -> None:
        """Until a request arrives or departs, or ``timeout`` seconds (None: no limit)."""
        self._wake.wait(timeout)
        self._wake.clear()

    def send(
        self,
        outputs: Iterable[tuple[Request[T], Any]] = (),
        *,
        ended: Iterable[Request[T]] = (),
        failed: Iterable[Request[T]] = (),
        error: BaseException | None = None,
    ) -> None:
        """Outputs to callers, then the end of ``ended`` requests and
        ``error`` to ``failed`` ones, delivered in one wake-up of the event loop."""
        batch: list[tuple[Request[T], Any]] = list(outputs)
        batch += [(request, _END) for request in ended]
        if error is not None:
            batch += [(request, _Failure(error)) for request in failed]
        if batch:
            assert self._loop is not None, "nothing can be sent before a request arrived"
            self._loop.call_soon_threadsafe(_deliver, batch)


def _deliver(batch: list[tuple[Request[Any], Any]]) -> None:
    for request, value in batch:
        request.outputs.put_nowait(value)
