"""Whether a T5 replica can answer a request within its deadline, decided
the moment the request arrives, before it queues.

A first-in first-out queue past saturation hands every request to the model
after its caller stopped waiting: the capacity goes to work nobody reads
(measured: 2x the capacity of Poisson arrivals with a 2 s deadline, 0.07 of
the capacity answered in time). So each arrival is placed, in thought, on
the session's rows as they stand after the decoding thread's latest step:
every live row frees after its expected remaining steps, each waiting
request takes the first rows to free up, and so does this one.

Two reasons to refuse at once are told apart, because callers must act on
them differently:

- the work alone cannot fit: even on an idle replica, the least the request
  must do (``min_new_tokens`` steps; a stream's first piece) takes longer
  than its deadline allows. DEADLINE_EXCEEDED (:class:`DeadlineTooShort`),
  no pushback: a retry cannot help, and the caller gets what it would have
  got at its deadline, only sooner;
- waiting is the cause: the work fits on an idle replica but would answer
  (finish, for a unary call; give its first piece, for a stream, whose pieces
  before the deadline are worth having) after the deadline behind the work
  running and queued. RESOURCE_EXHAUSTED (:class:`Overloaded`) with a
  pushback of the time until it could start.

Where only an estimate of the request's own length (a typical answer) says
it will not fit, it is not refused for its own size: it is held to its least
work behind the queue instead. The thread publishes what the estimate needs
(:class:`Backlog`) after every step; the replica's event loop adds what it
admitted since.

Expected steps are the request's ``max_new_tokens``, or fewer when answers
have been ending sooner (the replica's running mean), never fewer than its
``min_new_tokens``: a forced length is known exactly.
"""

from __future__ import annotations

import heapq
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .refusals import DeadlineTooShort, Overloaded
from .replies import Horizon


class Sized(Protocol):
    """What the estimate needs of a request."""

    @property
    def rows(self) -> int: ...

    @property
    def min_steps(self) -> int: ...

    @property
    def max_steps(self) -> int: ...

    @property
    def stream(self) -> bool:
        """Streamed: the pieces before the deadline are worth having."""

    @property
    def deadline(self) -> float | None:
        """``time.time()`` after which nobody wants the answer, if known."""


def expected_steps(item: Sized, typical: float | None) -> float:
    """Decoding steps ``item`` is expected to take."""
    guess = item.max_steps if typical is None else min(item.max_steps, typical)
    return max(float(item.min_steps), guess, 1.0)


def least_steps(item: Sized) -> int:
    """Steps ``item`` takes at the least before its answer is worth having:
    a stream's first piece, a unary call's forced length."""
    return 1 if item.stream else max(1, item.min_steps)


def place(slots: list[float], rows: int, steps: float) -> float:
    """Puts a request of ``rows`` rows and ``steps`` steps on ``slots`` (a
    heap: steps until each row is free) and returns when it starts, in steps."""
    taken = [heapq.heappop(slots) for _ in range(min(rows, len(slots)))]
    start = max(taken, default=0.0)
    for _ in taken:
        heapq.heappush(slots, start + steps)
    return start


@dataclass(frozen=True)
class StepTimes:
    """A decoding step's time as a line in its rows, fitted to recent steps:
    a step of 16 rows costs several times one of a single row, and every
    step, whatever its size, updates both terms, so the estimate for a size
    not run lately is never a stale record of other times."""

    base_s: float
    per_row_s: float

    def at(self, rows: int) -> float:
        return self.base_s + self.per_row_s * rows

    @classmethod
    def fit(cls, steps: Sequence[tuple[int, float]]) -> StepTimes | None:
        """Least squares over (rows, seconds) pairs, leaving out steps over
        ten times the median (a whole beam search, a first step's warm-up);
        both terms kept at zero or above. None for no steps."""
        if not steps:
            return None
        ceiling = 10 * statistics.median(seconds for _, seconds in steps)
        kept = [(rows, seconds) for rows, seconds in steps if seconds <= ceiling]
        mean_rows = statistics.fmean(rows for rows, _ in kept)
        mean_s = statistics.fmean(seconds for _, seconds in kept)
        spread = sum((rows - mean_rows) ** 2 for rows, _ in kept)
        if spread == 0:  # one size only: its time, whatever the size
            return cls(mean_s, 0.0)
        per_row = sum((rows - mean_rows) * (seconds - mean_s) for rows, seconds in kept) / spread
        base = mean_s - per_row * mean_rows
        if per_row < 0:
            return cls(mean_s, 0.0)
        if base < 0:  # through the origin instead
            return cls(0.0, sum(r * s for r, s in kept) / sum(r * r for r, _ in kept))
        return cls(base, per_row)


_TIMED_STEPS = 64  # recent steps the step-time line is fitted to
_REFIT_EVERY = 8  # steps between two fits of the line
_RECENT_ANSWERS = 31  # answers whose median length is expected (few outliers move a median)


@dataclass
class Estimator:
    """What admission estimates with, learnt from the decoding loop's step
    reports: a step's time as a line in its rows (:class:`StepTimes`, refitted
    every few steps over the recent ones) and the steps a typical answer
    takes (the median of recent answers)."""

    step_times: StepTimes | None = None
    _steps: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=_TIMED_STEPS))
    _answers: deque[int] = field(default_factory=lambda: deque(maxlen=_RECENT_ANSWERS))
    _observed: int = 0

    def timed(self, steps: Sequence[tuple[int, float]]) -> None:
        """(rows, seconds) of steps run outside the loop (a warm-up), so that
        admission knows a step's time before the first request's steps."""
        self._steps.extend(steps)
        self.step_times = StepTimes.fit(self._steps)

    def observe(self, rows: int, seconds: float | None, answered_steps: Sequence[int] = ()) -> None:
        """One step of ``rows`` rows that took ``seconds`` (None: not timed),
        and the steps each request it completed took."""
        if seconds is not None:
            self._steps.append((rows, seconds))
            if self._observed % _REFIT_EVERY == 0 or self.step_times is None:
                self.step_times = StepTimes.fit(self._steps)
        self._observed += 1
        self._answers.extend(answered_steps)

    @property
    def typical_steps(self) -> float | None:
        """Steps a recent answer took."""
        return statistics.median(self._answers) if self._answers else None


@dataclass(frozen=True)
class Backlog:
    """The decoding thread's state after a step, as admission needs it:
    ``slots``, steps until each row frees with the waiting queue placed;
    ``busy_rows``, rows live or waiting; ``step_times``, a step's time by
    its rows (None before a step was timed); ``typical_steps``, the recent median steps of an answer;
    ``collected``, requests the thread has taken in."""

    slots: tuple[float, ...] = ()
    busy_rows: int = 0
    step_times: StepTimes | None = None
    typical_steps: float | None = None
    collected: int = 0


@dataclass(frozen=True)
class Estimate:
    """Seconds from now until the request starts, gives its first token and
    finishes; and the seconds its least work takes on an idle replica."""

    start_s: float
    first_s: float
    finish_s: float
    least_s: float


class Admission:
    """The event loop's side: estimates and refuses arrivals. ``publish``
    is called from the decoding thread; a :class:`Backlog` is replaced whole."""

    def __init__(self, margin: float = 1.0) -> None:
        """``margin``: estimates are multiplied by it before they are held
        against a deadline, so that fewer requests admitted miss it."""
        self.margin = margin
        self.backlog = Backlog()
        self._admitted = 0
        self._pending: deque[tuple[int, Sized]] = deque()

    def publish(self, backlog: Backlog) -> None:
        self.backlog = backlog

    def estimate(self, item: Sized) -> Estimate | None:
        """When ``item`` would start and finish (seconds from now), behind
        everything admitted, at the step time of the batch it makes (with
        the margin); None before a step was timed."""
        backlog = self.backlog
        while self._pending and self._pending[0][0] <= backlog.collected:
            self._pending.popleft()
        if backlog.step_times is None:
            return None
        rows = backlog.busy_rows + sum(ahead.rows for _, ahead in self._pending) + item.rows
        step_s = backlog.step_times.at(min(rows, len(backlog.slots) or rows)) * self.margin
        slots = list(backlog.slots)
        heapq.heapify(slots)
        for _, ahead in self._pending:
            place(slots, ahead.rows, expected_steps(ahead, backlog.typical_steps))
        steps = expected_steps(item, backlog.typical_steps)
        start = place(slots, item.rows, steps)
        alone_s = backlog.step_times.at(item.rows) * self.margin
        return Estimate(start * step_s, (start + 1) * step_s, (start + steps) * step_s, least_steps(item) * alone_s)

    def admit(self, item: Sized, wall: float) -> None:
        """Counts ``item`` in, or raises :class:`Overloaded` or
        :class:`DeadlineTooShort` (see :func:`judge`; ``wall``: ``time.time()``
        now). The item must then be handed to the thread, which counts it in
        ``collected``."""
        estimate = self.estimate(item)
        if estimate is not None and (refusal := judge(item, estimate, wall)) is not None:
            refusal.horizon = self.horizon(wall)
            raise refusal
        self._admitted += 1
        self._pending.append((self._admitted, item))

    def horizon(self, wall: float) -> Horizon | None:
        """The admission as it stands, for the ingress to refuse by (a new
        one-row request's start and step time); None before a step was timed."""
        probe = self.estimate(_PROBE)
        if probe is None:
            return None
        return Horizon(
            probe.start_s,
            probe.first_s - probe.start_s,
            self.backlog.typical_steps,
            wall,
            alone_step_s=probe.least_s,
        )


def judge(item: Sized, estimate: Estimate, wall: float) -> Overloaded | DeadlineTooShort | None:
    """The refusal of ``item`` when its answer, as estimated, would come
    after its deadline (the whole answer for a unary call, the first piece
    for a stream): :class:`DeadlineTooShort` when its least work alone does
    not fit, else :class:`Overloaded` when the wait for a row is what makes
    it miss, with the time until it could start as the pushback."""
    if item.deadline is None:
        return None
    left = item.deadline - wall
    if left <= 0:  # it waited out its deadline before it reached a replica
        return DeadlineTooShort("the deadline passed before the request reached a model replica")
    if estimate.least_s > left:
        return DeadlineTooShort(
            f"the request needs about {estimate.least_s * 1000:.0f} ms of decoding even on an idle replica "
            f"({least_steps(item)} steps), and its deadline allows {max(0.0, left) * 1000:.0f} ms"
        )
    own = (estimate.first_s if item.stream else estimate.finish_s) - estimate.start_s
    # An estimate of its own length alone (a typical answer) never refuses
    # a request: behind the queue, it is held to its least work instead.
    budget = own if own <= left else estimate.least_s
    if estimate.start_s + budget <= left:
        return None
    return Overloaded(
        f"cannot start in time behind the work queued: it could start in about {estimate.start_s * 1000:.0f} ms, "
        f"needs about {budget * 1000:.0f} ms once started, and its deadline allows {left * 1000:.0f} ms",
        retry_after_ms=max(1, round(estimate.start_s * 1000)),
    )


@dataclass(frozen=True)
class _Probe:
    """A one-row, one-step request: where the next arrival would start."""

    rows: int = 1
    min_steps: int = 1
    max_steps: int = 1
    stream: bool = False
    deadline: float | None = None


_PROBE = _Probe()
