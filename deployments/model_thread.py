"""The skeleton both model loops share, T5's decoding loop
(``decode_loop.py``) and ELECTRA's batcher (``batcher.py``): worker threads
started on first use, the mailbox to the replica's event loop, and each
turn's collect → plan → expire → wait or work. A loop keeps only its own
decisions (:meth:`ModelThread._plan`, which a pure planner makes) and its
own work (:meth:`ModelThread._work`).

The threads never wait for the event loop: it only posts arrivals and
departures and routes answers (one wake-up per batch of answers).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .mailbox import Mailbox
from .records import Output, Request, Status
from .refusals import DeadlineExceeded

T = TypeVar("T")
W = TypeVar("W")


@dataclass(frozen=True)
class Turn(Generic[T, W]):
    """A plan, as the skeleton carries it out: fail ``expired`` with their
    deadline, then do ``work``, or with none wait up to ``wait_s`` seconds
    (None: until something arrives or leaves)."""

    expired: tuple[Request[T], ...] = ()
    work: W | None = None
    wait_s: float | None = None


class ModelThread(ABC, Generic[T, W]):
    """Requests posted from the event loop, planned and worked on by
    ``workers`` threads; ``on_dropped(reason, count)`` counts the requests
    that never got an answer (for metrics), from either side."""

    def __init__(self, name: str, *, workers: int = 1, on_dropped: Callable[[str, int], None] | None = None) -> None:
        self._name, self._workers = name, workers
        self._mailbox: Mailbox[T] = Mailbox()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._on_dropped = on_dropped or (lambda reason, count: None)

    async def stream(self, item: T) -> AsyncIterator[list[Output[Any]]]:
        """Posts ``item`` and yields its outputs, several at a time when the
        caller is slower than the work; the last carries the timing. Leaving
        the iteration early tells the thread the caller left."""
        self._accept(item)
        self._start()
        async for outputs in self._mailbox.stream(item):
            yield outputs

    async def call(self, item: T) -> Output[Any]:
        """Posts ``item`` and returns its last output: its result and timing."""
        self._accept(item)
        self._start()
        return await self._mailbox.call(item)

    def _accept(self, item: T) -> None:
        """Raises to refuse ``item`` before it is posted; takes every one by default."""

    def _start(self) -> None:
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._serve, name=f"{self._name}-{i}", daemon=True)
                for i in range(self._workers)
            ]
            for thread in self._threads:
                thread.start()

    def _serve(self) -> None:
        while True:
            try:
                self._turn()
            except Exception as error:
                # A fault of the loop's own must not leave callers waiting
                # for answers that never come: they get it, and it goes on.
                self._recover(error)

    def _turn(self) -> None:
        with self._lock:
            arrived, departed = self._mailbox.collect()
            now = time.perf_counter()
            for request in arrived:
                request.arrived = now
            turn = self._plan(arrived, departed, now, time.time())
        if turn.expired:
            self._on_dropped("expired", len(turn.expired))
            late = DeadlineExceeded("the deadline passed, or left too little time to finish")
            self._mailbox.send(failed=turn.expired, error=late)
        if turn.work is None:
            self._idle()
            self._mailbox.wait(turn.wait_s)
        else:
            self._work(turn.work)

    @abstractmethod
    def _plan(self, arrived: list[Request[T]], departed: list[Request[T]], now: float, wall: float) -> Turn[T, W]:
        """Under the lock: takes in arrivals and departures and decides the
        turn. ``now``: ``time.perf_counter()``; ``wall``: ``time.time()``,
        for deadlines."""

    @abstractmethod
    def _work(self, work: W) -> None:
        """Carries out a turn's work (outside the lock)."""

    def _idle(self) -> None:
        """Before the thread waits."""

    @abstractmethod
    def _recover(self, error: Exception) -> None:
        """After a fault outside the work itself; fails what the loop holds."""

    def _answer(self, outputs: Iterable[tuple[Request[T], Output[Any]]], ended: Iterable[Request[T]] = ()) -> None:
        ended = list(ended)
        for request in ended:
            request.status = Status.FINISHED
        self._mailbox.send(outputs, ended=ended)

    def _fail(self, requests: Iterable[Request[T]], error: Exception) -> None:
        requests = list(requests)
        for request in requests:
            request.status = Status.FAILED
        self._mailbox.send(failed=requests, error=error)
