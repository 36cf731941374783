"""Dynamic batching for the ELECTRA replica: a pure planner that decides
each batch, and worker threads that run them and answer through the mailbox.

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

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from .mailbox import Letter, Mailbox
from .refusals import DeadlineExceeded


class Batchable(Protocol):
    @property
    def deadline(self) -> float | None:
        """``time.time()`` after which nobody wants the answer, if known."""


T = TypeVar("T", bound=Batchable)


@dataclass(eq=False)
class Waiting(Generic[T]):
    """A queued request: what the caller sent, its way back, its arrival."""

    item: T
    letter: Any
    arrived: float


@dataclass(frozen=True)
class Take(Generic[T]):
    """The planner's answer: run ``batch`` now, fail ``expired`` with their
    deadline, or (``batch`` empty) wait ``wait_s`` seconds (None: no limit)."""

    batch: tuple[Waiting[T], ...] = ()
    expired: tuple[Waiting[T], ...] = ()
    wait_s: float | None = None


@dataclass
class BatchPlanner(Generic[T]):
    """Which queued requests form the next batch. No thread, no clock."""

    max_batch_size: int
    wait_timeout_s: float = 0.0
    cost: Callable[[T], int] | None = None
    max_batch_cost: int | None = None
    queue: deque[Waiting[T]] = field(default_factory=deque)

    def submit(self, waiting: Waiting[T]) -> None:
        self.queue.append(waiting)

    def leave(self, letter: Any) -> None:
        """The caller of ``letter`` left: its request never runs."""
        self.queue = deque(w for w in self.queue if w.letter is not letter)

    def next_batch(self, now: float, wall: float) -> Take[T]:
        """``now``: a monotonic clock, ``wall``: ``time.time()`` for deadlines."""
        expired = tuple(w for w in self.queue if w.item.deadline is not None and wall > w.item.deadline)
        if expired:
            self.queue = deque(w for w in self.queue if w not in expired)
        if not self.queue:
            return Take(expired=expired)
        fits = self._fits()
        full = fits == self.max_batch_size or fits < len(self.queue)
        remaining = self.queue[0].arrived + self.wait_timeout_s - now
        if not full and remaining > 0:
            return Take(expired=expired, wait_s=remaining)
        return Take(tuple(self.queue.popleft() for _ in range(fits)), expired)

    def _fits(self) -> int:
        """How many queued requests, from the oldest, the next batch takes:
        at most ``max_batch_size``, and within the cost budget (at least one)."""
        count, spent = 0, 0
        for waiting in self.queue:
            if count == self.max_batch_size:
                break
            if self.cost is not None and self.max_batch_cost is not None:
                spent += self.cost(waiting.item)
                if count and spent > self.max_batch_cost:
                    break
            count += 1
        return count


class Batcher(Generic[T]):
    """Requests posted from the event loop, batched by the planner, run by
    ``workers`` threads with ``run`` (results in the batch's order)."""

    def __init__(
        self,
        run: Callable[[Sequence[T]], Sequence[Any]],
        planner: BatchPlanner[T],
        *,
        workers: int = 1,
        on_batch: Callable[[Sequence[Waiting[T]], float], None] | None = None,
        on_dropped: Callable[[str, int], None] | None = None,
    ) -> None:
        self._run_batch = run
        self.planner = planner
        self._workers = workers
        self._on_batch = on_batch
        self._on_dropped = on_dropped or (lambda reason, count: None)
        self._mailbox: Mailbox[T] = Mailbox()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    async def call(self, item: T) -> tuple[Any, Waiting[T], float, int]:
        """Queues ``item``; returns its result, its queue entry, when its
        batch started (``time.perf_counter()``) and the batch's size."""
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._work, name=f"batch-{i}", daemon=True) for i in range(self._workers)
            ]
            for thread in self._threads:
                thread.start()
        return await self._mailbox.call(item)

    def _next(self) -> Take[T]:
        """Under the lock: collects the mailbox into the planner and asks it."""
        with self._lock:
            arrived, departed = self._mailbox.collect()
            now = time.perf_counter()
            for letter in arrived:
                self.planner.submit(Waiting(letter.item, letter, now))
            for letter in departed:
                self.planner.leave(letter)
            return self.planner.next_batch(now, time.time())

    def _work(self) -> None:
        while True:
            take = self._next()
            if take.expired:
                self._on_dropped("expired", len(take.expired))
            self._mailbox.send(
                failed=[w.letter for w in take.expired], error=DeadlineExceeded("deadline exceeded while queued")
            )
            if not take.batch:
                self._mailbox.wait(take.wait_s)
                continue
            started = time.perf_counter()
            if self._on_batch is not None:
                self._on_batch(take.batch, started)
            letters: list[Letter[T]] = [w.letter for w in take.batch]
            try:
                results = self._run_batch([w.item for w in take.batch])
            except Exception as error:  # the callers get it; the replica keeps serving
                self._mailbox.send(failed=letters, error=error)
                continue
            size = len(take.batch)
            self._mailbox.send(
                ((w.letter, (result, w, started, size)) for w, result in zip(take.batch, results, strict=True)),
                ended=letters,
            )
