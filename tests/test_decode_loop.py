"""The T5 replica's decoding loop on its own, in a plain event loop, driving
a counting session: when requests are admitted under each policy, what
callers get, and what happens to those who leave."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest

from t5electra.deployments.decode_loop import DecodeLoop, StepReport

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Job:
    """A request that needs ``tokens`` steps and occupies ``rows`` rows."""

    name: str
    tokens: int
    rows: int = 1
    deadline: float | None = None


@dataclass(frozen=True)
class Event:
    key: int
    piece: str | None
    result: str | None


class CountingSession:
    """A session whose requests each take a fixed number of steps; records
    which keys every step advanced and can be made to fail."""

    def __init__(self) -> None:
        self.jobs: dict[int, list] = {}
        self.steps: list[set[str]] = []
        self.cancelled: list[str] = []
        self.fail_at_step: int | None = None
        self.refuse: str | None = None
        self._next = 0
        self.step_started = threading.Event()

    @property
    def done(self) -> bool:
        return not self.jobs

    @property
    def rows(self) -> int:
        return sum(job.rows for job, _ in self.jobs.values())

    def add(self, job: Job) -> int:
        if job.name == self.refuse:
            raise ValueError(f"cannot add {job.name}")
        key, self._next = self._next, self._next + 1
        self.jobs[key] = [job, 0]
        return key

    def cancel(self, key: int) -> None:
        self.cancelled.append(self.jobs.pop(key)[0].name)

    def step(self) -> list[Event]:
        self.step_started.set()
        if self.fail_at_step == len(self.steps):
            raise RuntimeError("model failed")
        self.steps.append({job.name for job, _ in self.jobs.values()})
        events = []
        for key, state in list(self.jobs.items()):
            state[1] += 1
            job, made = state
            if made == job.tokens:
                del self.jobs[key]
                events.append(Event(key, f"{job.name}{made}", f"{job.name} done"))
            else:
                events.append(Event(key, f"{job.name}{made}", None))
        threading.Event().wait(0.002)  # a step takes time, as a model's does
        return events


def loop_with(session: CountingSession, policy: str, max_rows: int = 4, **kwargs) -> DecodeLoop:
    return DecodeLoop(lambda: session, max_rows=max_rows, policy=policy, idle_wait_s=0.0, **kwargs)


async def answer(loop: DecodeLoop, job: Job, delay: float = 0.0) -> str:
    await asyncio.sleep(delay)
    event, timing = await loop.call(job)
    assert timing is not None and timing.inference_ms > 0
    return event.result


def test_continuous_admits_at_the_next_step() -> None:
    session = CountingSession()
    loop = loop_with(session, "continuous")

    async def main() -> list[str]:
        return await asyncio.gather(answer(loop, Job("long", 40)), answer(loop, Job("short", 2), delay=0.02))

    assert asyncio.run(main()) == ["long done", "short done"]
    joined = next(i for i, names in enumerate(session.steps) if "short" in names)
    left = max(i for i, names in enumerate(session.steps) if "short" in names)
    assert joined > 0 and left == joined + 1, "short joins the running batch and leaves after its 2 steps"
    assert "long" in session.steps[-1] and "short" not in session.steps[-1]


def test_static_waits_for_the_batch_to_empty() -> None:
    session = CountingSession()
    loop = loop_with(session, "static")

    async def main() -> list[str]:
        return await asyncio.gather(answer(loop, Job("long", 20)), answer(loop, Job("short", 2), delay=0.01))

    assert asyncio.run(main()) == ["long done", "short done"]
    first_short = next(i for i, names in enumerate(session.steps) if "short" in names)
    assert all("long" in names for names in session.steps[:first_short])
    assert not any("long" in names for names in session.steps[first_short:])


def test_rows_never_exceed_the_limit_and_a_request_too_big_runs_alone() -> None:
    session = CountingSession()
    loop = loop_with(session, "continuous", max_rows=4)

    async def main() -> list[str]:
        jobs = [Job(f"j{i}", 3, rows=2) for i in range(5)] + [Job("huge", 2, rows=6)]
        return await asyncio.gather(*(answer(loop, job) for job in jobs))

    assert asyncio.run(main()) == [f"j{i} done" for i in range(5)] + ["huge done"]
    for names in session.steps:
        rows = sum(6 if name == "huge" else 2 for name in names)
        assert rows <= 4 or names == {"huge"}


def test_streams_get_pieces_and_a_slow_reader_gets_them_together() -> None:
    session = CountingSession()
    loop = loop_with(session, "continuous")

    async def main() -> list[list[str]]:
        received = []
        async for events in loop.stream(Job("s", 12)):
            received.append([event.piece for event, _ in events])
            await asyncio.sleep(0.02)  # slower than the steps
        return received

    received = asyncio.run(main())
    assert [p for batch in received for p in batch] == [f"s{i}" for i in range(1, 13)]
    assert len(received) < 12, "pieces that waited arrive together"


def test_a_caller_that_leaves_is_cancelled_at_the_next_step() -> None:
    session = CountingSession()
    loop = loop_with(session, "continuous")

    async def main() -> None:
        async def leave_early() -> None:
            async for _ in loop.stream(Job("gone", 10_000)):
                return

        await leave_early()
        assert await answer(loop, Job("next", 2)) == "next done"

    asyncio.run(main())
    assert session.cancelled == ["gone"]
    assert len(session.steps) < 100


def test_a_failing_step_fails_its_callers_and_the_loop_goes_on() -> None:
    sessions: list[CountingSession] = []

    def new_session() -> CountingSession:
        session = CountingSession()
        session.fail_at_step = 1 if not sessions else None
        sessions.append(session)
        return session

    loop = DecodeLoop(new_session, max_rows=4, policy="continuous", idle_wait_s=0.0)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="model failed"):
            await loop.call(Job("unlucky", 5))
        assert await answer(loop, Job("later", 2)) == "later done"

    asyncio.run(main())
    assert len(sessions) == 2


def test_a_fault_outside_the_step_fails_every_caller_instead_of_hanging() -> None:
    sessions: list[CountingSession] = []

    def new_session() -> CountingSession:
        session = CountingSession()
        session.refuse = "broken"
        sessions.append(session)
        return session

    loop = DecodeLoop(new_session, max_rows=4, policy="continuous", idle_wait_s=0.0)

    async def main() -> None:
        with pytest.raises(ValueError, match="cannot add broken"):
            await asyncio.wait_for(loop.call(Job("broken", 2)), timeout=30)
        assert await asyncio.wait_for(answer(loop, Job("later", 2)), timeout=30) == "later done"

    asyncio.run(main())
    assert len(sessions) == 2


def test_each_step_is_reported_with_its_rows_and_queue_times() -> None:
    reports: list[StepReport] = []
    session = CountingSession()
    loop = loop_with(session, "continuous", on_step=reports.append)

    async def main() -> None:
        await asyncio.gather(answer(loop, Job("a", 3)), answer(loop, Job("b", 3)))

    asyncio.run(main())
    assert sum(len(r.admitted_queue_ms) for r in reports) == 2
    assert [r.rows for r in reports] == [len(names) for names in session.steps]
