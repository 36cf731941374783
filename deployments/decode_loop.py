"""The T5 replica's decoding loop: one thread that steps one session for as
long as there is work, and the admission policy that feeds it.

``continuous``: waiting requests join the running batch at every step
boundary while it has rows free, and a finished or cancelled request leaves
at once, so a short answer never waits for a long neighbour.
``static``: requests are admitted only when the batch is empty, and the batch
then decodes until its longest request ends (what ``@serve.batch`` gives).
Both run the same session and the same thread, so a benchmark comparing them
compares scheduling and nothing else.

The loop runs in its own thread rather than as steps handed to an executor
from the event loop: it never waits for the event loop between two steps,
and the event loop only routes outputs (delivered in one callback per step)
and notices callers that leave, which the thread turns into cancellations at
the next step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from t5electra.server.domain import BatchTiming

Policy = Literal["continuous", "static"]
_END = object()
_REPORTS_PER_WAKE = 16


class Admissible(Protocol):
    @property
    def rows(self) -> int: ...

    @property
    def deadline(self) -> float | None:
        """``time.time()`` after which nobody wants the answer, if known."""


class Session(Protocol):
    """What the loop needs of a decoding session (see ``server/session.py``)."""

    @property
    def done(self) -> bool: ...

    @property
    def rows(self) -> int: ...

    def add(self, prepared: Any) -> int: ...

    def cancel(self, key: int) -> None: ...

    def step(self) -> list[Any]: ...


@dataclass(frozen=True)
class StepReport:
    """One step, as metrics see it: rows decoded and the queue times of the
    requests admitted before it (milliseconds)."""

    rows: int
    admitted_queue_ms: tuple[float, ...]


@dataclass(eq=False)
class _Entry:
    item: Admissible
    outputs: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    arrived: float = field(default_factory=time.perf_counter)
    admitted: float = 0.0
    steps_at_admission: int = 0
    rows_at_admission: int = 0
    abandoned: bool = False


class DecodeLoop:
    """Feeds requests to a session stepped by a thread of its own."""

    def __init__(
        self,
        new_session: Callable[[], Session],
        *,
        max_rows: int,
        policy: Policy,
        idle_wait_s: float,
        on_step: Callable[[StepReport], None] | None = None,
    ) -> None:
        self._new_session = new_session
        self._max_rows = max_rows
        self._policy = policy
        self._idle_wait_s = idle_wait_s
        self._on_step = on_step
        self._inbox: deque[_Entry] = deque()
        self._wake = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._live: dict[int, _Entry] = {}
        self._waiting: deque[_Entry] = deque()
        self._reports: list[StepReport] = []
        self.steps = 0
        self.rows_stepped = 0

    @property
    def decoding(self) -> int:
        """Requests admitted and not yet answered or dropped."""
        return len(self._live)

    async def stream(self, item: Admissible) -> AsyncIterator[list[tuple[Any, BatchTiming | None]]]:
        """Queues ``item`` and yields the events the session gives it, the
        last one with its timing: each time, every event that arrived since
        the caller last asked, so a caller slower than the steps gets fewer,
        larger answers instead of a growing backlog. Leaving the iteration
        early cancels the request."""
        self._start()
        entry = _Entry(item)
        self._inbox.append(entry)
        self._wake.set()
        try:
            while True:
                outputs = [await entry.outputs.get()]
                while not entry.outputs.empty():
                    outputs.append(entry.outputs.get_nowait())
                for output in outputs:
                    if isinstance(output, BaseException):
                        raise output
                events = [o for o in outputs if o is not _END]
                if events:
                    yield events
                if outputs[-1] is _END:
                    return
        finally:
            entry.abandoned = True
            self._wake.set()

    async def call(self, item: Admissible) -> tuple[Any, BatchTiming | None]:
        """Queues ``item`` and returns its last event (its result)."""
        last = None
        async for events in self.stream(item):
            last = events[-1]
        if last is None:
            raise RuntimeError("the decoding loop ended a request without a result")
        return last

    def _start(self) -> None:
        if self._thread is None:
            # Started on first use: the replica's constructor may run outside
            # the event loop its requests arrive on.
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name="t5-decode", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        session = self._new_session()
        while True:
            try:
                self._decode(session)
            except Exception as error:
                # A fault of the loop's own (not of a step) must not leave
                # callers waiting for answers that never come: all of them
                # get it, and the loop starts over with a fresh session.
                self._fail_all(error)
                session = self._new_session()

    def _decode(self, session: Session) -> None:
        """Steps ``session`` until something fails."""
        waiting = self._waiting
        while True:
            while self._inbox:
                waiting.append(self._inbox.popleft())
            self._expire(list(waiting) + list(self._live.values()))
            if any(e.abandoned for e in waiting):
                kept = [e for e in waiting if not e.abandoned]
                waiting.clear()
                waiting.extend(kept)
            for key in [k for k, e in self._live.items() if e.abandoned]:
                session.cancel(key)
                del self._live[key]
            if session.done and not waiting:
                self._wake.wait()
                self._wake.clear()
                continue
            if session.done and self._idle_wait_s and self._wait_for_company(waiting):
                continue
            admitted = self._admit(session, waiting)
            if session.done:
                continue
            rows = session.rows
            try:
                events = session.step()
            except Exception as error:  # every live caller gets it; the replica keeps serving
                self._fail_live(error)
                session = self._new_session()
                continue
            self.steps += 1
            self.rows_stepped += rows
            self._deliver(events, StepReport(rows, admitted))

    def _expire(self, entries: list[_Entry]) -> None:
        """Requests past their deadline leave as if cancelled, and their
        callers (if still there) get DEADLINE_EXCEEDED: a cancel that Ray's
        proxy lost still ends the work at the deadline."""
        now = time.time()
        expired = [e for e in entries if not e.abandoned and e.item.deadline is not None and now > e.item.deadline]
        if not expired:
            return
        for entry in expired:
            entry.abandoned = True
        self._send(expired, TimeoutError("deadline exceeded while decoding"))

    def _wait_for_company(self, waiting: deque[_Entry]) -> bool:
        """An idle replica waits up to ``idle_wait_s`` after the first arrival
        for a batch to fill; True while that wait is still running."""
        if sum(e.item.rows for e in waiting) >= self._max_rows:
            return False
        remaining = waiting[0].arrived + self._idle_wait_s - time.perf_counter()
        if remaining <= 0:
            return False
        self._wake.wait(remaining)
        self._wake.clear()
        return True

    def _admit(self, session: Session, waiting: deque[_Entry]) -> tuple[float, ...]:
        """Adds waiting requests while rows are free (``static``: only into an
        empty session). A request too big for the limit runs alone."""
        if self._policy == "static" and not session.done:
            return ()
        now = time.perf_counter()
        queued = []
        rows = session.rows
        while waiting and (rows + waiting[0].item.rows <= self._max_rows or rows == 0):
            entry = waiting[0]
            self._live[session.add(entry.item)] = entry
            waiting.popleft()
            rows += entry.item.rows
            entry.admitted = now
            entry.steps_at_admission, entry.rows_at_admission = self.steps, self.rows_stepped
            queued.append((now - entry.arrived) * 1000)
        return tuple(queued)

    def _deliver(self, events: list[Any], report: StepReport) -> None:
        now = time.perf_counter()
        outputs = []
        for event in events:
            entry = self._live.get(event.key)
            if entry is None:
                continue
            timing = None
            if event.result is not None:
                del self._live[event.key]
                steps = self.steps - entry.steps_at_admission
                rows = (self.rows_stepped - entry.rows_at_admission) / max(1, steps)
                timing = BatchTiming(
                    (entry.admitted - entry.arrived) * 1000, (now - entry.admitted) * 1000, round(rows)
                )
            outputs.append((entry, (event, timing)))
        self._reports.append(report)
        # Waking the event loop costs the decoding thread the GIL for a
        # moment: steps that answer nobody only report metrics, in bulk.
        if outputs or len(self._reports) >= _REPORTS_PER_WAKE:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._route, outputs, self._reports)
            self._reports = []

    def _route(self, outputs: list[tuple[_Entry, Any]], reports: list[StepReport]) -> None:
        """On the event loop: hands each output to its caller."""
        for entry, (event, timing) in outputs:
            if entry.abandoned:
                continue
            entry.outputs.put_nowait((event, timing))
            if timing is not None:
                entry.outputs.put_nowait(_END)
        if self._on_step is not None:
            for report in reports:
                self._on_step(report)

    def _fail_live(self, error: Exception) -> None:
        """Admitted callers get ``error``; waiting ones stay queued."""
        entries, self._live = list(self._live.values()), {}
        self._send(entries, error)

    def _fail_all(self, error: Exception) -> None:
        """Admitted and waiting callers get ``error``."""
        while self._inbox:
            self._waiting.append(self._inbox.popleft())
        entries = [*self._live.values(), *self._waiting]
        self._live = {}
        self._waiting.clear()
        self._send(entries, error)

    def _send(self, entries: list[_Entry], error: Exception) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(lambda: [entry.outputs.put_nowait(error) for entry in entries])
