"""Dynamic batching for a model replica.

Ray's ``@serve.batch`` forms a batch as soon as its first request has waited
``batch_wait_timeout_s`` and only then queues for one of the
``max_concurrent_batches`` slots. Under steady load that collapses batching:
while a batch runs, every arriving request closes a batch of its own after the
short wait, and those single-request batches then run one after another
(measured with 16 concurrent Generate callers: mean batch size 1.1). This
batcher takes a slot first and only then forms the batch, from everything
queued by that time, so requests that arrive while the model is busy run
together in the next batch. When the model is idle it waits up to
``wait_timeout_s`` for a batch to fill, like ``@serve.batch`` and Triton's
``max_queue_delay``. A batch is cut by a budget in the unit that costs as
well as by a count (text-embeddings-inference's ``max_batch_tokens``): a
request whose cost would take the batch past ``max_batch_cost`` waits for
the next one, unless the batch is empty.

A batch is handled by one coroutine that emits outputs to its requests in any
order and any number of times (one result, or a stream of pieces), so unary
and streaming calls share the same machinery. Requests whose callers went
away before their batch started are dropped; those that leave during a batch
are reported by :meth:`Batch.abandoned` so the handler can stop their work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_END = object()


@dataclass(frozen=True)
class _Failure:
    error: Exception


@dataclass(eq=False)
class _Entry(Generic[T]):
    item: T
    outputs: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    abandoned: bool = False
    ended: bool = False


class Batch(Generic[T]):
    """The requests of one batch, as the handler sees them."""

    def __init__(self, entries: list[_Entry[T]]) -> None:
        self._entries = entries
        self.items: list[T] = [e.item for e in entries]

    def emit(self, index: int, value: Any) -> None:
        """Delivers one output (a result or a stream piece) to request ``index``."""
        entry = self._entries[index]
        if not entry.ended:
            entry.outputs.put_nowait(value)

    def finish(self, index: int) -> None:
        """Ends request ``index``'s outputs; its caller returns at once."""
        self._end(self._entries[index], _END)

    def abandoned(self, index: int) -> bool:
        """Whether request ``index``'s caller has gone (cancelled, deadline,
        disconnect), so its work can stop."""
        return self._entries[index].abandoned

    def close(self, error: Exception | None) -> None:
        """Ends every request the handler left open, with ``error`` if it failed."""
        for entry in self._entries:
            self._end(entry, _END if error is None else _Failure(error))

    @staticmethod
    def _end(entry: _Entry[T], marker: Any) -> None:
        if not entry.ended:
            entry.ended = True
            entry.outputs.put_nowait(marker)


class DynamicBatcher(Generic[T]):
    """Groups concurrent requests into batches of at most ``max_batch_size``
    and runs at most ``max_concurrent_batches`` of them at once."""

    def __init__(
        self,
        handler: Callable[[Batch[T]], Awaitable[None]],
        *,
        max_batch_size: int,
        wait_timeout_s: float,
        max_concurrent_batches: int = 1,
        cost: Callable[[T], int] | None = None,
        max_batch_cost: int | None = None,
    ) -> None:
        self._handler = handler
        self._max_batch_size = max_batch_size
        self._cost = cost
        self._max_batch_cost = max_batch_cost
        self._wait_timeout_s = wait_timeout_s
        self._max_concurrent = max_concurrent_batches
        self._pending: deque[_Entry[T]] = deque()
        self._arrived: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    async def stream(self, item: T) -> AsyncIterator[Any]:
        """Queues ``item`` and yields the outputs its batch emits for it.
        Closing or cancelling the iteration abandons the request."""
        entry = _Entry(item)
        self._enqueue(entry)
        try:
            while True:
                output = await entry.outputs.get()
                if output is _END:
                    return
                if isinstance(output, _Failure):
                    raise output.error
                yield output
        finally:
            entry.abandoned = True

    async def call(self, item: T) -> Any:
        """Queues ``item`` and returns the one output its batch emits for it."""
        outputs = [output async for output in self.stream(item)]
        if len(outputs) != 1:
            raise RuntimeError(f"batch handler emitted {len(outputs)} outputs for a unary request")
        return outputs[0]

    def _enqueue(self, entry: _Entry[T]) -> None:
        if self._loop_task is None:
            # Created on first use: the replica's constructor may run outside
            # the event loop its requests arrive on.
            self._arrived = asyncio.Event()
            self._slots = asyncio.Semaphore(self._max_concurrent)
            self._loop_task = asyncio.get_running_loop().create_task(self._form_batches())
        self._pending.append(entry)
        assert self._arrived is not None
        self._arrived.set()

    async def _form_batches(self) -> None:
        assert self._arrived is not None and self._slots is not None
        while True:
            await self._slots.acquire()
            entries = await self._collect()
            task = asyncio.get_running_loop().create_task(self._run(entries))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _collect(self) -> list[_Entry[T]]:
        """Waits for a first live request, then up to the wait timeout for the
        batch to fill, unless more than a batch is already queued."""
        assert self._arrived is not None
        deadline: float | None = None
        while True:
            self._drop_abandoned()
            fits = self._fits()
            if fits == self._max_batch_size or fits < len(self._pending):
                break  # a full batch is waiting
            if self._pending:
                if deadline is None:
                    deadline = time.monotonic() + self._wait_timeout_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
            else:
                deadline = remaining = None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return [self._pending.popleft() for _ in range(self._fits())]

    def _fits(self) -> int:
        """How many queued requests, from the oldest, the next batch takes:
        at most ``max_batch_size``, and within the cost budget (at least one)."""
        count, spent = 0, 0
        for entry in self._pending:
            if count == self._max_batch_size:
                break
            if self._cost is not None and self._max_batch_cost is not None:
                spent += self._cost(entry.item)
                if count and spent > self._max_batch_cost:
                    break
            count += 1
        return count

    def _drop_abandoned(self) -> None:
        if any(e.abandoned for e in self._pending):
            self._pending = deque(e for e in self._pending if not e.abandoned)

    async def _run(self, entries: list[_Entry[T]]) -> None:
        assert self._slots is not None
        batch = Batch(entries)
        try:
            await self._handler(batch)
        except Exception as error:  # the callers get it; the replica keeps serving
            batch.close(error)
        else:
            batch.close(None)
        finally:
            self._slots.release()
