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
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .admission import Backlog, Estimator, Sized, expected_steps, place
from .records import Output, Request, Status
from .replies import BatchTiming

Policy = Literal["continuous", "static"]


class Event(Protocol):
    """What the scheduler needs of a session's step event."""

    @property
    def key(self) -> int: ...

    @property
    def result(self) -> Any: ...


@dataclass(frozen=True)
class StepReport:
    """One step, as metrics see it: rows decoded and the queue times of the
    requests admitted before it (milliseconds)."""

    rows: int
    admitted_queue_ms: tuple[float, ...]


@dataclass(frozen=True)
class Plan:
    """What the loop does before its next step, in this order: cancel the
    requests (by id, the session's key) whose callers left or expired, tell
    ``expired`` callers their deadline passed, then either wait (``wait_s``:
    seconds, or None for no limit) or add ``admit`` to the session and step."""

    cancel: tuple[int, ...] = ()
    expired: tuple[Request[Sized], ...] = ()
    admit: tuple[Request[Sized], ...] = ()
    wait: bool = False
    wait_s: float | None = None


@dataclass(frozen=True)
class Delivery:
    """What one step gave one request: its event, with its timing when the
    request is complete (it then leaves)."""

    request: Request[Sized]
    output: Output[Any]


def _past(request: Request[Sized], wall: float) -> bool:
    return request.item.deadline is not None and wall > request.item.deadline


@dataclass
class Scheduler:
    """Admission and accounting for one session of at most ``max_rows``
    rows; what admission estimates with (``estimator``) it feeds each step's
    report and reads back."""

    max_rows: int
    policy: Policy
    idle_wait_s: float = 0.0
    waiting: deque[Request[Sized]] = field(default_factory=deque)
    live: dict[int, Request[Sized]] = field(default_factory=dict)
    steps: int = 0
    rows_stepped: int = 0
    estimator: Estimator = field(default_factory=Estimator)
    _left: list[Request[Sized]] = field(default_factory=list)

    @property
    def decoding(self) -> int:
        """Requests admitted and not yet answered or dropped."""
        return len(self.live)

    def submit(self, request: Request[Sized]) -> None:
        self.waiting.append(request)

    def leave(self, request: Request[Sized]) -> None:
        """Its caller left: it leaves the queue now, or the session at the
        next :meth:`schedule`."""
        if request.status is Status.WAITING and request in self.waiting:
            self.waiting.remove(request)
            request.status = Status.LEFT
        elif request.status is Status.RUNNING and self.live.get(request.id) is request:
            self._left.append(request)

    def schedule(self, now: float, wall: float, session_rows: int) -> Plan:
        """``now``: a monotonic clock (seconds), ``wall``: ``time.time()``,
        to compare with deadlines; ``session_rows``: rows the session runs.
        A waiting request that could not answer by its deadline even if it
        started now (at the recent step time: its fewest steps, or for a
        stream one step) expires instead of taking a row from work that can."""
        step_times = self.estimator.step_times
        step_s = None if step_times is None else step_times.at(max(1, min(self.max_rows, self.busy_rows)))
        expired = tuple(
            r for r in (*self.waiting, *self.live.values()) if _past(r, wall) or self._hopeless(r, wall, step_s)
        )
        for request in expired:
            if request.status is Status.WAITING:
                self.waiting.remove(request)
        leaving = [*self._left, *(r for r in expired if r.status is Status.RUNNING)]
        self._left = []
        cancel: list[int] = []
        for request in leaving:
            if self.live.get(request.id) is request:
                del self.live[request.id]
                cancel.append(request.id)
                session_rows -= request.item.rows
            if request.status is Status.RUNNING:
                request.status = Status.LEFT
        for request in expired:
            request.status = Status.EXPIRED
        if not self.live and not self.waiting:
            return Plan(tuple(cancel), expired, wait=True)
        if not self.live and self.idle_wait_s and (remaining := self._company_wait(now)) > 0:
            return Plan(tuple(cancel), expired, wait=True, wait_s=remaining)
        return Plan(tuple(cancel), expired, tuple(self._admit(now, max(0, session_rows))))

    @staticmethod
    def _hopeless(request: Request[Sized], wall: float, step_s: float | None) -> bool:
        if request.status is not Status.WAITING or request.item.deadline is None or step_s is None:
            return False
        needed = 1 if request.item.stream else max(1, request.item.min_steps)  # a stream's first piece is worth having
        return wall + needed * step_s > request.item.deadline

    @property
    def busy_rows(self) -> int:
        """Rows live or waiting."""
        return sum(r.item.rows for r in (*self.live.values(), *self.waiting))

    def backlog(self, collected: int) -> Backlog:
        """What admission needs (see ``admission.py``): when each row frees,
        live rows after their expected remaining steps and the waiting
        queue placed behind them; ``collected``: requests taken in so far."""
        typical = self.estimator.typical_steps
        slots = [0.0] * max(0, self.max_rows - sum(r.item.rows for r in self.live.values()))
        for request in self.live.values():
            done = self.steps - request.steps_at_admission
            left = min(request.item.max_steps, max(expected_steps(request.item, typical), done + 1)) - done
            slots += [float(max(1, left))] * request.item.rows
        heapq.heapify(slots)
        for request in self.waiting:
            place(slots, request.item.rows, expected_steps(request.item, typical))
        return Backlog(tuple(slots), self.busy_rows, self.estimator.step_times, typical, collected)

    def admitted(self, request: Request[Sized]) -> None:
        """The session took ``request`` (under its id)."""
        request.status = Status.RUNNING
        self.live[request.id] = request

    def _company_wait(self, now: float) -> float:
        """How long an idle replica still waits for a batch to fill: up to
        ``idle_wait_s`` after the first arrival, unless it is full already."""
        if sum(r.item.rows for r in self.waiting) >= self.max_rows:
            return 0.0
        return self.waiting[0].arrived + self.idle_wait_s - now

    def _admit(self, now: float, rows: int) -> list[Request[Sized]]:
        """Waiting requests while rows are free (``static``: only into an
        empty session). A request too big for the limit runs alone."""
        if self.policy == "static" and self.live:
            return []
        chosen = []
        while self.waiting and (rows + self.waiting[0].item.rows <= self.max_rows or rows == 0):
            request = self.waiting.popleft()
            rows += request.item.rows
            request.admitted = now
            request.steps_at_admission, request.rows_at_admission = self.steps, self.rows_stepped
            chosen.append(request)
        return chosen

    def update_from_output(
        self, events: list[Event], rows: int, now: float, took_s: float | None = None
    ) -> tuple[list[Delivery], StepReport]:
        """What a step of ``rows`` rows, which took ``took_s`` seconds, gave
        whom; complete requests leave. The step and the answers it completed
        go to the estimator."""
        queued = tuple(
            (r.admitted - r.arrived) * 1000 for r in self.live.values() if r.steps_at_admission == self.steps
        )
        self.steps += 1
        self.rows_stepped += rows
        deliveries, answered = [], []
        for event in events:
            request = self.live.get(event.key)
            if request is None:
                continue
            timing = None
            if event.result is not None:
                del self.live[event.key]
                steps = self.steps - request.steps_at_admission
                answered.append(steps)
                mean_rows = (self.rows_stepped - request.rows_at_admission) / max(1, steps)
                timing = BatchTiming(
                    (request.admitted - request.arrived) * 1000,
                    (now - request.admitted) * 1000,
                    round(mean_rows),
                    steps=steps,
                )
            deliveries.append(Delivery(request, Output(event, timing)))
        self.estimator.observe(rows, took_s, answered)
        return deliveries, StepReport(rows, queued)

    def drop_live(self) -> list[Request[Sized]]:
        """Every admitted request, which a failed step took with it."""
        dropped, self.live = list(self.live.values()), {}
        return dropped

    def drop_all(self) -> list[Request[Sized]]:
        """Every request, admitted or waiting: the loop starts over."""
        dropped = self.drop_live() + list(self.waiting)
        self.waiting.clear()
        self._left = []
        return dropped
