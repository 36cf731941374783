"""Dynamic batching for the ELECTRA replica: a pure planner that decides
each batch, and worker threads that run them, on the skeleton the T5
decoding loop shares (``model_thread.py``).

Ray's ``@serve.batch`` forms a batch as soon as its first request has waited
``batch_wait_timeout_s`` and only then queues for one of the
``max_concurrent_batches`` slots. Under steady load that collapses batching:
while a batch runs, every arriving request closes a batch of its own after the
short wait, and those single-request batches then run one after another
(measured with 16 concurrent Generate callers: mean batch size 1.1). Here a
worker takes a batch only when it is free, from everything queued by then,
so requests that arrive while the model is busy run together in the next
batch. When a worker is idle it waits up to ``wait_timeout_s`` after the
first arrival for a batch to fill, like ``@serve.batch`` and Triton's
``max_queue_delay``. A batch is cut by a budget in the unit that costs as
well as by a count (text-embeddings-inference's ``max_batch_tokens``): a
request whose cost would take the batch past ``max_batch_cost`` waits for
the next one, unless the batch is empty. Requests whose callers left or
whose deadlines passed never reach the model.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from .model_thread import ModelThread, Turn
from .records import Output, Request, Status
from .replies import BatchTiming


class Batchable(Protocol):
    @property
    def deadline(self) -> float | None:
        """``time.time()`` after which nobody wants the answer, if known."""


T = TypeVar("T", bound=Batchable)


@dataclass(frozen=True)
class Take(Generic[T]):
    """The planner's answer: run ``batch`` now, fail ``expired`` with their
    deadline, or (``batch`` empty) wait ``wait_s`` seconds (None: no limit)."""

    batch: tuple[Request[T], ...] = ()
    expired: tuple[Request[T], ...] = ()
    wait_s: float | None = None


@dataclass
class BatchPlanner(Generic[T]):
    """Which queued requests form the next batch. No thread, no clock."""

    max_batch_size: int
    wait_timeout_s: float = 0.0
    cost: Callable[[T], int] | None = None
    max_batch_cost: int | None = None
    queue: deque[Request[T]] = field(default_factory=deque)

    def submit(self, request: Request[T]) -> None:
        self.queue.append(request)

    def leave(self, request: Request[T]) -> None:
        """Its caller left: it never runs."""
        if request.status is Status.WAITING:
            self.queue = deque(r for r in self.queue if r.id != request.id)
            request.status = Status.LEFT

    def next_batch(self, now: float, wall: float) -> Take[T]:
        """``now``: a monotonic clock, ``wall``: ``time.time()`` for deadlines."""
        expired = tuple(r for r in self.queue if r.item.deadline is not None and wall > r.item.deadline)
        if expired:
            self.queue = deque(r for r in self.queue if r not in expired)
            for request in expired:
                request.status = Status.EXPIRED
        if not self.queue:
            return Take(expired=expired)
        fits = self._fits()
        full = fits == self.max_batch_size or fits < len(self.queue)
        remaining = self.queue[0].arrived + self.wait_timeout_s - now
        if not full and remaining > 0:
            return Take(expired=expired, wait_s=remaining)
        batch = tuple(self.queue.popleft() for _ in range(fits))
        for request in batch:
            request.status = Status.RUNNING
        return Take(batch, expired)

    def _fits(self) -> int:
        """How many queued requests, from the oldest, the next batch takes:
        at most ``max_batch_size``, and within the cost budget (at least one)."""
        count, spent = 0, 0
        for request in self.queue:
            if count == self.max_batch_size:
                break
            if self.cost is not None and self.max_batch_cost is not None:
                spent += self.cost(request.item)
                if count and spent > self.max_batch_cost:
                    break
            count += 1
        return count


class Batcher(ModelThread[T, tuple[Request[T], ...]]):
    """Requests posted from the event loop, batched by the planner, run by
    ``workers`` threads with ``run`` (results in the batch's order). Each
    answer's timing has its queue time, its batch's run time and size."""

    def __init__(
        self,
        run: Callable[[Sequence[T]], Sequence[Any]],
        planner: BatchPlanner[T],
        *,
        workers: int = 1,
        on_batch: Callable[[Sequence[Request[T]], float], None] | None = None,
        on_dropped: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__("batch", workers=workers, on_dropped=on_dropped)
        self._run_batch = run
        self.planner = planner
        self._on_batch = on_batch

    def _plan(self, arrived: list[Request[T]], departed: list[Request[T]], now: float, wall: float) -> Turn:
        for request in arrived:
            self.planner.submit(request)
        for request in departed:
            self.planner.leave(request)
        take = self.planner.next_batch(now, wall)
        return Turn(take.expired, take.batch or None, take.wait_s)

    def _work(self, batch: tuple[Request[T], ...]) -> None:
        started = time.perf_counter()
        if self._on_batch is not None:
            self._on_batch(batch, started)
        try:
            results = self._run_batch([r.item for r in batch])
        except Exception as error:  # the callers get it; the replica keeps serving
            self._fail(batch, error)
            return
        ran_ms = (time.perf_counter() - started) * 1000
        outputs = [
            (r, Output(result, BatchTiming((started - r.arrived) * 1000, ran_ms, len(batch))))
            for r, result in zip(batch, results, strict=True)
        ]
        self._answer(outputs, ended=batch)

    def _recover(self, error: Exception) -> None:
        """Every queued request gets the fault."""
        with self._lock:
            dropped, self.planner.queue = list(self.planner.queue), deque()
        self._fail(dropped, error)
