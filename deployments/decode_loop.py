"""The T5 replica's decoding thread: it steps one session for as long as
there is work, doing what the scheduler (``scheduler.py``) decides, and
answers callers through the mailbox (``mailbox.py``).

The loop runs in a thread of its own rather than as steps handed to an
executor from the event loop: it never waits for the event loop between two
steps, and the event loop only routes outputs (one wake-up per step that
answers someone) and posts arrivals and departures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from .admission import Admission, Sized
from .mailbox import Letter, Mailbox
from .refusals import DeadlineExceeded, DeadlineTooShort, Overloaded
from .replies import BatchTiming
from .scheduler import Delivery, Policy, Scheduler, StepReport, Ticket

_REPORTS_PER_FLUSH = 16


class Session(Protocol):
    """What the loop needs of a decoding session (``server/session.py``)."""

    @property
    def done(self) -> bool: ...

    @property
    def rows(self) -> int: ...

    def add(self, prepared: Any) -> int: ...

    def cancel(self, key: int) -> None: ...

    def step(self) -> list[Any]: ...


class DecodeLoop:
    """Feeds requests to a session stepped by a thread of its own."""

    def __init__(
        self,
        new_session: Callable[[], Session],
        *,
        max_rows: int,
        policy: Policy,
        idle_wait_s: float,
        admission_margin: float = 1.0,
        on_steps: Callable[[list[StepReport]], None] | None = None,
        on_dropped: Callable[[str, int], None] | None = None,
    ) -> None:
        """``on_dropped(reason, count)``: requests refused at arrival because
        of the work ahead (``overloaded``) or of their own size
        (``deadline_too_short``), or whose deadlines passed while queued or
        decoding (``expired``), for metrics; called on either thread."""
        self._new_session = new_session
        self.scheduler = Scheduler(max_rows, policy, idle_wait_s)
        self.admission = Admission(admission_margin)
        self._collected = 0
        self._mailbox: Mailbox[Sized] = Mailbox()
        self._on_steps = on_steps
        self._on_dropped = on_dropped or (lambda reason, count: None)
        self._reports: list[StepReport] = []
        self._tickets: dict[Letter[Sized], Ticket] = {}
        self._thread: threading.Thread | None = None

    @property
    def decoding(self) -> int:
        return self.scheduler.decoding

    @property
    def steps(self) -> int:
        return self.scheduler.steps

    def load(self) -> dict[str, Any]:
        """What admission currently assumes: a step's time and an answer's steps."""
        backlog = self.admission.backlog
        return {
            "step_ms": None if backlog.step_times is None else round(backlog.step_times.base_s * 1000, 3),
            "step_ms_per_row": None if backlog.step_times is None else round(backlog.step_times.per_row_s * 1000, 3),
            "typical_steps": backlog.typical_steps,
        }

    def prime(self, steps: Sequence[tuple[int, float]]) -> None:
        """Step times (rows, seconds) measured before the loop runs, e.g. by
        the engine's warm-up: admission estimates with them from the first
        request on, instead of letting it run to a deadline it cannot meet.
        Call before the first request."""
        self.scheduler.timed(steps)
        self.admission.publish(self.scheduler.backlog(self._collected))

    async def stream(self, item: Sized) -> AsyncIterator[list[tuple[Any, BatchTiming | None]]]:
        """Queues ``item`` and yields its (event, timing) pairs, the last one
        with its timing, several at a time when the caller is slower than
        the steps. Leaving the iteration early cancels the request. Raises
        :class:`Overloaded` or :class:`DeadlineTooShort` at once when ``item``
        cannot be answered within its deadline (``admission.py``)."""
        self._admit(item)
        self._start()
        async for outputs in self._mailbox.stream(item):
            yield outputs

    async def call(self, item: Sized) -> tuple[Any, BatchTiming | None]:
        """Queues ``item`` and returns its last (event, timing): its result.
        Refuses it at once as :meth:`stream` does."""
        self._admit(item)
        self._start()
        return await self._mailbox.call(item)

    def _admit(self, item: Sized) -> None:
        try:
            self.admission.admit(item, time.time())
        except Overloaded:
            self._on_dropped("overloaded", 1)
            raise
        except DeadlineTooShort:
            self._on_dropped("deadline_too_short", 1)
            raise

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="t5-decode", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        session = self._new_session()
        while True:
            try:
                session = self._decode(session)
            except Exception as error:
                # A fault of the loop's own (not of a step) must not leave
                # callers waiting for answers that never come: all of them
                # get it, and the loop starts over with a fresh session.
                self._fail(self.scheduler.drop_all(), error)
                session = self._new_session()

    def _decode(self, session: Session) -> Session:
        """Steps ``session`` until something fails; returns a fresh session
        after a failed step."""
        while True:
            arrived, departed = self._mailbox.collect()
            now = time.perf_counter()
            self._collected += len(arrived)
            for letter in arrived:
                self._tickets[letter] = ticket = Ticket(letter.item, letter, now)
                self.scheduler.submit(ticket)
            for letter in departed:
                if (ticket := self._tickets.pop(letter, None)) is not None:
                    self.scheduler.leave(ticket)
            plan = self.scheduler.schedule(now, time.time(), session.rows)
            for key in plan.cancel:
                session.cancel(key)
            if plan.expired:
                self._on_dropped("expired", len(plan.expired))
                late = DeadlineExceeded("the deadline passed, or left too little time to finish")
                self._fail(list(plan.expired), late)
            if plan.wait:
                self.admission.publish(self.scheduler.backlog(self._collected))
                self._flush_reports()
                self._mailbox.wait(plan.wait_s)
                continue
            for index, ticket in enumerate(plan.admit):
                try:
                    self.scheduler.admitted(ticket, session.add(ticket.item))
                except Exception as error:
                    self._fail(list(plan.admit[index:]), error)  # taken from the queue, not yet the session's
                    raise
            self.admission.publish(self.scheduler.backlog(self._collected))
            if session.done:
                continue
            rows = session.rows
            started = time.perf_counter()
            try:
                events = session.step()
            except Exception as error:  # every live caller gets it; the replica keeps serving
                self._fail(self.scheduler.drop_live(), error)
                return self._new_session()
            now = time.perf_counter()
            deliveries, report = self.scheduler.update_from_output(events, rows, now, now - started)
            self._reports.append(report)
            # Metrics go out in bulk, and before a request's last answer, so
            # that a caller who has its answer finds its steps counted.
            if len(self._reports) >= _REPORTS_PER_FLUSH or any(d.timing is not None for d in deliveries):
                self._flush_reports()
            self._answer(deliveries)

    def _answer(self, deliveries: list[Delivery]) -> None:
        ended = [d.ticket.letter for d in deliveries if d.timing is not None]
        for letter in ended:
            self._tickets.pop(letter, None)
        self._mailbox.send(((d.ticket.letter, (d.event, d.timing)) for d in deliveries), ended=ended)

    def _fail(self, tickets: list[Ticket], error: Exception) -> None:
        for ticket in tickets:
            self._tickets.pop(ticket.letter, None)
        self._mailbox.send(failed=[t.letter for t in tickets], error=error)

    def _flush_reports(self) -> None:
        if self._reports and self._on_steps is not None:
            self._on_steps(self._reports)
        self._reports = []
