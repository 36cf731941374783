"""The T5 decoding thread's plumbing around the scheduler (whose decisions
test_scheduler.py covers): answers reach callers, departures reach the
session, failures reach every caller they concern and the loop goes on.
Callers wait for their answers, never for a time."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass

import pytest

from t5electra.deployments.decode_loop import DecodeLoop
from t5electra.deployments.records import Output
from t5electra.deployments.refusals import DeadlineExceeded, DeadlineTooShort
from t5electra.deployments.scheduler import StepReport

from support.waiting import wait_for

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Job:
    """A request that needs ``tokens`` steps (None: never ends)."""

    name: str
    tokens: int | None
    rows: int = 1
    deadline: float | None = None

    stream: bool = False

    @property
    def min_steps(self) -> int:
        return self.tokens or 1

    @property
    def max_steps(self) -> int:
        return self.tokens or 1_000_000


@dataclass(frozen=True)
class Event:
    key: int
    piece: str | None
    result: str | None


class CountingSession:
    """A session whose requests each take a fixed number of steps; records
    which names every step advanced, and can be made to fail."""

    def __init__(self, fail_at_step: int | None = None, refuse: str | None = None) -> None:
        self.jobs: dict[int, list] = {}
        self.steps: list[set[str]] = []
        self.cancelled: list[str] = []
        self.fail_at_step = fail_at_step
        self.refuse = refuse
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        return not self.jobs

    @property
    def rows(self) -> int:
        return sum(job.rows for job, _ in self.jobs.values())

    def add(self, job: Job, key: int) -> int:
        if job.name == self.refuse:
            raise ValueError(f"cannot add {job.name}")
        self.jobs[key] = [job, 0]
        return key

    def cancel(self, key: int) -> None:
        with self._lock:
            self.cancelled.append(self.jobs.pop(key)[0].name)

    def step(self) -> list[Event]:
        if self.fail_at_step == len(self.steps):
            raise RuntimeError("model failed")
        self.steps.append({job.name for job, _ in self.jobs.values()})
        events = []
        for key, state in list(self.jobs.items()):
            state[1] += 1
            job, made = state
            done = made == job.tokens
            if done:
                del self.jobs[key]
            events.append(Event(key, f"{job.name}{made}", f"{job.name} done" if done else None))
        return events


def test_calls_and_streams_get_their_answers_with_timing() -> None:
    reports: list[StepReport] = []
    session = CountingSession()
    loop = DecodeLoop(lambda: session, max_rows=4, policy="continuous", idle_wait_s=0.0, on_steps=reports.extend)

    async def main() -> tuple[Output[Event], list[str]]:
        unary = asyncio.ensure_future(loop.call(Job("u", 3)))
        pieces = [output.payload.piece async for outputs in loop.stream(Job("s", 5)) for output in outputs]
        return await unary, pieces

    answer, pieces = asyncio.run(main())
    timing = answer.timing
    assert answer.payload.result == "u done" and timing is not None and timing.inference_ms > 0
    assert pieces == [f"s{i}" for i in range(1, 6)]
    assert [r.rows for r in reports] == [len(names) for names in session.steps]


def test_a_caller_that_leaves_is_cancelled_and_the_next_one_is_served() -> None:
    session = CountingSession()
    loop = DecodeLoop(lambda: session, max_rows=4, policy="continuous", idle_wait_s=0.0)

    async def main() -> str:
        # aclosing: the caller's departure is posted when it leaves, not
        # whenever the abandoned generator happens to be finalized.
        async with contextlib.aclosing(loop.stream(Job("gone", None))) as pieces:
            async for _ in pieces:
                break  # the caller leaves after its first piece
        return (await loop.call(Job("next", 2))).payload.result

    assert asyncio.run(main()) == "next done"
    # The decoding thread hands the departure to the session; wait for that
    # state instead of assuming the thread got there first.
    wait_for(lambda: session.cancelled == ["gone"], what="the departed caller's cancel")


def test_a_failing_step_fails_its_callers_and_the_loop_goes_on() -> None:
    sessions: list[CountingSession] = []

    def new_session() -> CountingSession:
        sessions.append(CountingSession(fail_at_step=1 if not sessions else None))
        return sessions[-1]

    loop = DecodeLoop(new_session, max_rows=4, policy="continuous", idle_wait_s=0.0)

    async def main() -> str:
        with pytest.raises(RuntimeError, match="model failed"):
            await loop.call(Job("unlucky", 5))
        return (await loop.call(Job("later", 2))).payload.result

    assert asyncio.run(main()) == "later done"
    assert len(sessions) == 2


def test_a_fault_outside_the_step_fails_every_caller_instead_of_hanging() -> None:
    sessions: list[CountingSession] = []

    def new_session() -> CountingSession:
        sessions.append(CountingSession(refuse="broken"))
        return sessions[-1]

    loop = DecodeLoop(new_session, max_rows=4, policy="continuous", idle_wait_s=0.0)

    async def main() -> str:
        with pytest.raises(ValueError, match="cannot add broken"):
            await loop.call(Job("broken", 2))
        return (await loop.call(Job("later", 2))).payload.result

    assert asyncio.run(main()) == "later done"
    assert len(sessions) == 2


def test_a_request_past_its_deadline_gets_deadline_exceeded() -> None:
    session = CountingSession()
    loop = DecodeLoop(lambda: session, max_rows=4, policy="continuous", idle_wait_s=0.0)

    async def main() -> None:
        with pytest.raises(DeadlineExceeded):
            await loop.call(Job("late", None, deadline=time.time() - 1))

    asyncio.run(main())
    assert session.steps == []


def test_a_primed_loop_refuses_work_that_cannot_fit_from_the_first_request() -> None:
    """Step times from a warm-up: the very first request whose least work
    cannot fit its deadline is refused at once, before any step ran."""
    session = CountingSession()
    loop = DecodeLoop(lambda: session, max_rows=4, policy="continuous", idle_wait_s=0.0)
    loop.prime([(1, 0.1)] * 4)

    async def main() -> None:
        # 512 steps of 0.1 s cannot fit 5 s, however slowly this machine posts it.
        await loop.call(Job("long", 512, deadline=time.time() + 5.0))

    with pytest.raises(DeadlineTooShort, match="512 steps"):
        asyncio.run(main())
    assert session.steps == []
