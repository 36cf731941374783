"""Every decision of the T5 decoding loop, with no thread, no queue and no
clock of its own: which waiting requests join the session before the next
step, which leave because their callers left or their deadlines passed,
whether to wait for company, and what each step gave whom.

The loop (``decode_loop.py``) asks :meth:`Scheduler.schedule` what to do,
does it, steps the session, and hands the step's events to
:meth:`Scheduler.update_from_output`, as vLLM's scheduler is driven; its
tests drive the same two calls with made-up events and times.

``continuous``: waiting requests join the running batch at every step
boundary while it has rows free, and a finished or cancelled request leaves
at once, so a short answer never waits for a long neighbour. ``static``:
requests are admitted only when the batch is empty, and the batch then
decodes until its longest request ends (what ``@serve.batch`` gives). Both
make the same session step the same way, so a benchmark comparing them
compares scheduling and nothing else.
"""

from __future__ import annotations

import heapq
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .admission import Backlog, Sized, StepTimes, expected_steps, place
from .replies import BatchTiming

Policy = Literal["continuous", "static"]


_RECENT = 31
"""Answers whose median length admission expects (a median: a few very
long or very short answers move it little)."""

_TIMED_STEPS = 64
"""Recent steps the step-time line is fitted to."""

_REFIT_EVERY = 8
"""Steps between two fits of the line."""


class Event(Protocol):
    """What the scheduler needs of a session's step event."""

    @property
    def key(self) -> int: ...

    @property
    def result(self) -> Any: ...


@dataclass(eq=False)
class Ticket:
    """One request's life in the scheduler. ``letter`` is whatever the loop
    uses to answer its caller; the scheduler only hands it back."""

    item: Sized
    letter: Any
    arrived: float
    key: int | None = None
    admitted: float = 0.0
    steps_at_admission: int = 0
    rows_at_admission: int = 0


@dataclass(frozen=True)
class StepReport:
    """One step, as metrics see it: rows decoded and the queue times of the
    requests admitted before it (milliseconds)."""

    rows: int
    admitted_queue_ms: tuple[float, ...]


@dataclass(frozen=True)
class Plan:
    """What the loop does before its next step, in this order: cancel the
    session keys of callers that left or expired, tell ``expired`` callers
    their deadline passed, then either wait (``wait_s``: seconds, or None
    for no limit) or add ``admit`` to the session and step."""

    cancel: tuple[int, ...] = ()
    expired: tuple[Ticket, ...] = ()
    admit: tuple[Ticket, ...] = ()
    wait: bool = False
    wait_s: float | None = None


@dataclass(frozen=True)
class Delivery:
    """What one step gave one caller: its event, and its timing when the
    request is complete (it then leaves)."""

    ticket: Ticket
    event: Any
    timing: BatchTiming | None = None


def _past(ticket: Ticket, wall: float) -> bool:
    return ticket.item.deadline is not None and wall > ticket.item.deadline


@dataclass
class _Recent:
    """The median of the last :data:`_RECENT` observations."""

    values: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT))

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


@dataclass
class Scheduler:
    """Admission and accounting for one session of at most ``max_rows`` rows."""

    max_rows: int
    policy: Policy
    idle_wait_s: float = 0.0
    waiting: deque[Ticket] = field(default_factory=deque)
    live: dict[int, Ticket] = field(default_factory=dict)
    steps: int = 0
    rows_stepped: int = 0
    _steps_timed: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=_TIMED_STEPS))
    step_times: StepTimes | None = None
    _answer_steps: _Recent = field(default_factory=_Recent)
    _left: list[Ticket] = field(default_factory=list)

    @property
    def decoding(self) -> int:
        """Requests admitted and not yet answered or dropped."""
        return len(self.live)

    def submit(self, ticket: Ticket) -> None:
        self.waiting.append(ticket)

    def leave(self, ticket: Ticket) -> None:
        """Its caller left: it leaves the queue now, or the session at the
        next :meth:`schedule`."""
        if ticket.key is None:
            if ticket in self.waiting:
                self.waiting.remove(ticket)
        elif self.live.get(ticket.key) is ticket:
            self._left.append(ticket)

    def schedule(self, now: float, wall: float, session_rows: int) -> Plan:
        """``now``: a monotonic clock (seconds), ``wall``: ``time.time()``,
        to compare with deadlines; ``session_rows``: rows the session runs.
        A waiting request that could not answer by its deadline even if it
        started now (at the recent step time: its fewest steps, or for a
        stream one step) expires instead of taking a row from work that can."""
        step_s = None if self.step_times is None else self.step_times.at(max(1, min(self.max_rows, self.busy_rows)))
        expired = tuple(
            t for t in (*self.waiting, *self.live.values()) if _past(t, wall) or self._hopeless(t, wall, step_s)
        )
        for ticket in expired:
            if ticket.key is None:
                self.waiting.remove(ticket)
        leaving = [*self._left, *(t for t in expired if t.key is not None)]
        self._left = []
        cancel: list[int] = []
        for ticket in leaving:
            if ticket.key is not None and self.live.get(ticket.key) is ticket:
                del self.live[ticket.key]
                cancel.append(ticket.key)
                session_rows -= ticket.item.rows
        if not self.live and not self.waiting:
            return Plan(tuple(cancel), expired, wait=True)
        if not self.live and self.idle_wait_s and (remaining := self._company_wait(now)) > 0:
            return Plan(tuple(cancel), expired, wait=True, wait_s=remaining)
        return Plan(tuple(cancel), expired, tuple(self._admit(now, max(0, session_rows))))

    @staticmethod
    def _hopeless(ticket: Ticket, wall: float, step_s: float | None) -> bool:
        if ticket.key is not None or ticket.item.deadline is None or step_s is None:
            return False
        needed = 1 if ticket.item.stream else max(1, ticket.item.min_steps)  # a stream's first piece is worth having
        return wall + needed * step_s > ticket.item.deadline

    @property
    def busy_rows(self) -> int:
        """Rows live or waiting."""
        return sum(t.item.rows for t in (*self.live.values(), *self.waiting))

    @property
    def typical_steps(self) -> float | None:
        """Steps a recent answer took."""
        return self._answer_steps.median

    def backlog(self, collected: int) -> Backlog:
        """What admission needs (see ``admission.py``): when each row frees,
        live rows after their expected remaining steps and the waiting
        queue placed behind them; ``collected``: requests taken in so far."""
        slots = [0.0] * max(0, self.max_rows - sum(t.item.rows for t in self.live.values()))
        for ticket in self.live.values():
            done = self.steps - ticket.steps_at_admission
            left = min(ticket.item.max_steps, max(expected_steps(ticket.item, self.typical_steps), done + 1)) - done
            slots += [float(max(1, left))] * ticket.item.rows
        heapq.heapify(slots)
        for ticket in self.waiting:
            place(slots, ticket.item.rows, expected_steps(ticket.item, self.typical_steps))
        return Backlog(tuple(slots), self.busy_rows, self.step_times, self.typical_steps, collected)

    def admitted(self, ticket: Ticket, key: int) -> None:
        """The session took ``ticket`` under ``key``."""
        ticket.key = key
        self.live[key] = ticket

    def _company_wait(self, now: float) -> float:
        """How long an idle replica still waits for a batch to fill: up to
        ``idle_wait_s`` after the first arrival, unless it is full already."""
        if sum(t.item.rows for t in self.waiting) >= self.max_rows:
            return 0.0
        return self.waiting[0].arrived + self.idle_wait_s - now

    def _admit(self, now: float, rows: int) -> list[Ticket]:
        """Waiting requests while rows are free (``static``: only into an
        empty session). A request too big for the limit runs alone."""
        if self.policy == "static" and self.live:
            return []
        chosen = []
        while self.waiting and (rows + self.waiting[0].item.rows <= self.max_rows or rows == 0):
            ticket = self.waiting.popleft()
            rows += ticket.item.rows
            ticket.admitted = now
            ticket.steps_at_admission, ticket.rows_at_admission = self.steps, self.rows_stepped
            chosen.append(ticket)
        return chosen

    def timed(self, steps: Sequence[tuple[int, float]]) -> None:
        """(rows, seconds) of steps run outside the loop (a warm-up), so that
        admission knows a step's time before the first request's steps."""
        self._steps_timed.extend(steps)
        self.step_times = StepTimes.fit(self._steps_timed)

    def update_from_output(
        self, events: list[Event], rows: int, now: float, took_s: float | None = None
    ) -> tuple[list[Delivery], StepReport]:
        """What a step of ``rows`` rows, which took ``took_s`` seconds, gave
        whom; complete requests leave."""
        if took_s is not None:
            self._steps_timed.append((rows, took_s))
            if self.steps % _REFIT_EVERY == 0 or self.step_times is None:
                self.step_times = StepTimes.fit(self._steps_timed)
        queued = tuple(
            (t.admitted - t.arrived) * 1000 for t in self.live.values() if t.steps_at_admission == self.steps
        )
        self.steps += 1
        self.rows_stepped += rows
        deliveries = []
        for event in events:
            ticket = self.live.get(event.key)
            if ticket is None:
                continue
            timing = None
            if event.result is not None:
                del self.live[event.key]
                steps = self.steps - ticket.steps_at_admission
                self._answer_steps.add(steps)
                mean_rows = (self.rows_stepped - ticket.rows_at_admission) / max(1, steps)
                timing = BatchTiming(
                    (ticket.admitted - ticket.arrived) * 1000,
                    (now - ticket.admitted) * 1000,
                    round(mean_rows),
                    steps=steps,
                )
            deliveries.append(Delivery(ticket, event, timing))
        return deliveries, StepReport(rows, queued)

    def drop_live(self) -> list[Ticket]:
        """Every admitted request, which a failed step took with it."""
        dropped, self.live = list(self.live.values()), {}
        return dropped

    def drop_all(self) -> list[Ticket]:
        """Every request, admitted or waiting: the loop starts over."""
        dropped = self.drop_live() + list(self.waiting)
        self.waiting.clear()
        self._left = []
        return dropped
