"""The T5 replica's decoding thread: it steps one session for as long as
there is work, doing what the scheduler (``scheduler.py``) decides, on the
skeleton it shares with ELECTRA's batcher (``model_thread.py``).

The loop runs in a thread of its own rather than as steps handed to an
executor from the event loop: it never waits for the event loop between two
steps, and the event loop only routes outputs (one wake-up per step that
answers someone) and posts arrivals and departures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .admission import Admission, Sized
from .model_thread import ModelThread, Turn
from .records import Request
from .refusals import DeadlineTooShort, Overloaded
from .scheduler import Delivery, Policy, Scheduler, StepReport

_REPORTS_PER_FLUSH = 16


class Session(Protocol):
    """What the loop needs of a decoding session (``server/session.py``)."""

    @property
    def done(self) -> bool: ...

    @property
    def rows(self) -> int: ...

    def add(self, prepared: Any, key: int) -> int: ...

    def cancel(self, key: int) -> None: ...

    def step(self) -> list[Any]: ...


class DecodeLoop(ModelThread[Sized, tuple[Request[Sized], ...]]):
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
        super().__init__("t5-decode", on_dropped=on_dropped)
        self._new_session = new_session
        self._session: Session | None = None
        self.scheduler = Scheduler(max_rows, policy, idle_wait_s)
        self.admission = Admission(admission_margin)
        self._collected = 0
        self._on_steps = on_steps
        self._reports: list[StepReport] = []

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
        self.scheduler.estimator.timed(steps)
        self.admission.publish(self.scheduler.backlog(self._collected))

    def _accept(self, item: Sized) -> None:
        """Raises :class:`Overloaded` or :class:`DeadlineTooShort` at once
        when ``item`` cannot be answered within its deadline (``admission.py``)."""
        try:
            self.admission.admit(item, time.time())
        except Overloaded:
            self._on_dropped("overloaded", 1)
            raise
        except DeadlineTooShort:
            self._on_dropped("deadline_too_short", 1)
            raise

    def _plan(
        self, arrived: list[Request[Sized]], departed: list[Request[Sized]], now: float, wall: float
    ) -> Turn[Sized, tuple[Request[Sized], ...]]:
        session = self._current()
        self._collected += len(arrived)
        for request in arrived:
            self.scheduler.submit(request)
        for request in departed:
            self.scheduler.leave(request)
        plan = self.scheduler.schedule(now, wall, session.rows)
        for key in plan.cancel:
            session.cancel(key)
        return Turn(plan.expired, None if plan.wait else plan.admit, plan.wait_s)

    def _idle(self) -> None:
        self.admission.publish(self.scheduler.backlog(self._collected))
        self._flush_reports()

    def _work(self, admit: tuple[Request[Sized], ...]) -> None:
        """Adds ``admit`` to the session and steps it; a failed step fails
        every live request and the loop goes on with a fresh session."""
        session = self._current()
        for index, request in enumerate(admit):
            try:
                session.add(request.item, request.id)
            except Exception as error:
                self._fail(admit[index:], error)  # taken from the queue, not yet the session's
                raise
            self.scheduler.admitted(request)
        self.admission.publish(self.scheduler.backlog(self._collected))
        if session.done:
            return
        rows = session.rows
        started = time.perf_counter()
        try:
            events = session.step()
        except Exception as error:  # every live caller gets it; the replica keeps serving
            self._fail(self.scheduler.drop_live(), error)
            self._session = self._new_session()
            return
        now = time.perf_counter()
        deliveries, report = self.scheduler.update_from_output(events, rows, now, now - started)
        self._reports.append(report)
        # Metrics go out in bulk, and before a request's last answer, so
        # that a caller who has its answer finds its steps counted.
        if len(self._reports) >= _REPORTS_PER_FLUSH or any(d.output.timing is not None for d in deliveries):
            self._flush_reports()
        self._deliver(deliveries)

    def _recover(self, error: Exception) -> None:
        """Every request, admitted or waiting, gets the fault; the loop
        starts over with a fresh session."""
        with self._lock:
            dropped = self.scheduler.drop_all()
        self._fail(dropped, error)
        self._session = self._new_session()

    def _current(self) -> Session:
        if self._session is None:
            self._session = self._new_session()
        return self._session

    def _deliver(self, deliveries: list[Delivery]) -> None:
        ended = [d.request for d in deliveries if d.output.timing is not None]
        self._answer(((d.request, d.output) for d in deliveries), ended=ended)

    def _flush_reports(self) -> None:
        if self._reports and self._on_steps is not None:
            self._on_steps(self._reports)
        self._reports = []
