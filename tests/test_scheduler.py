"""The T5 scheduler's decisions, driven as its loop drives it: schedule,
add what it admits, a step with made-up events, update_from_output. No
threads, no sleeps, no clock: times are numbers the test chooses."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from t5electra.deployments.records import Request
from t5electra.deployments.scheduler import Delivery, Scheduler, StepReport

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Job:
    """A request that needs ``tokens`` steps and occupies ``rows`` rows."""

    name: str
    tokens: int
    rows: int = 1
    deadline: float | None = None
    forced: bool = True  # its length is known: min_new_tokens = max_new_tokens

    stream: bool = False

    @property
    def min_steps(self) -> int:
        return self.tokens if self.forced else 1

    @property
    def max_steps(self) -> int:
        return self.tokens


@dataclass(frozen=True)
class Event:
    key: int
    result: str | None


@dataclass
class Run:
    """A scheduler and a pretend session of :class:`Job`s, stepped by hand."""

    scheduler: Scheduler
    made: dict[int, int] = field(default_factory=dict)  # request id (the session key) -> tokens made
    jobs: dict[int, Job] = field(default_factory=dict)
    steps: list[set[str]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    answers: dict[str, Delivery] = field(default_factory=dict)
    reports: list[StepReport] = field(default_factory=list)
    clock: float = 0.0

    def submit(self, job: Job) -> Request[Job]:
        request = Request(job, arrived=self.clock)
        self.scheduler.submit(request)
        return request

    def step(self, wall: float = 0.0) -> bool:
        """One turn of the loop; False when the scheduler says to wait."""
        rows = sum(self.jobs[k].rows for k in self.made)
        plan = self.scheduler.schedule(self.clock, wall, rows)
        for key in plan.cancel:
            self.cancelled.append(self.jobs[key].name)
            del self.made[key]
        self.expired += [r.item.name for r in plan.expired]
        if plan.wait:
            return False
        for request in plan.admit:
            self.jobs[request.id], self.made[request.id] = request.item, 0
            self.scheduler.admitted(request)
        self.clock += 1.0  # a step takes a second of made-up time
        rows = sum(self.jobs[k].rows for k in self.made)
        self.steps.append({self.jobs[k].name for k in self.made})
        events = []
        for key in list(self.made):
            self.made[key] += 1
            done = self.made[key] == self.jobs[key].tokens
            events.append(Event(key, f"{self.jobs[key].name} done" if done else None))
            if done:
                del self.made[key]
        deliveries, report = self.scheduler.update_from_output(events, rows, self.clock, 1.0)
        self.reports.append(report)
        self.answers.update({d.request.item.name: d for d in deliveries if d.output.timing is not None})
        return True

    def run(self, steps: int = 1000) -> None:
        for _ in range(steps):
            if not self.step():
                return


def test_continuous_admits_at_the_next_step_and_a_short_request_leaves_when_done() -> None:
    run = Run(Scheduler(max_rows=4, policy="continuous"))
    run.submit(Job("long", 10))
    run.step()
    run.step()
    run.submit(Job("short", 2))
    run.run()
    assert run.steps[2] == {"long", "short"} and run.steps[3] == {"long", "short"}
    assert all(names == {"long"} for names in run.steps[4:]) and len(run.steps) == 10
    assert run.answers["short"].output.payload.result == "short done"


def test_static_admits_only_into_an_empty_batch() -> None:
    run = Run(Scheduler(max_rows=4, policy="static"))
    run.submit(Job("long", 5))
    run.step()
    run.submit(Job("short", 2))
    run.run()
    assert run.steps == [{"long"}] * 5 + [{"short"}] * 2


def test_rows_never_exceed_the_limit_and_a_request_too_big_runs_alone() -> None:
    run = Run(Scheduler(max_rows=4, policy="continuous"))
    for i in range(5):
        run.submit(Job(f"j{i}", 3, rows=2))
    run.submit(Job("huge", 2, rows=6))
    run.run()
    assert set(run.answers) == {f"j{i}" for i in range(5)} | {"huge"}
    for names in run.steps:
        rows = sum(6 if name == "huge" else 2 for name in names)
        assert rows <= 4 or names == {"huge"}
    assert {"huge"} in run.steps


def test_a_caller_that_leaves_is_cancelled_at_the_next_step_and_its_rows_go_to_others() -> None:
    run = Run(Scheduler(max_rows=2, policy="continuous"))
    gone = run.submit(Job("gone", 10_000, rows=2))
    run.step()
    run.submit(Job("next", 2, rows=2))
    run.step()
    assert run.steps == [{"gone"}, {"gone"}], "no rows free for next while gone decodes"
    run.scheduler.leave(gone)
    run.run()
    assert run.cancelled == ["gone"] and run.steps[2:] == [{"next"}, {"next"}]


def test_a_caller_that_leaves_while_waiting_never_runs() -> None:
    run = Run(Scheduler(max_rows=1, policy="continuous"))
    run.submit(Job("busy", 3))
    run.step()
    leaver = run.submit(Job("leaver", 3))
    run.scheduler.leave(leaver)
    run.run()
    assert "leaver" not in set().union(*run.steps) and run.cancelled == []


def test_requests_past_their_deadline_leave_the_queue_and_the_batch() -> None:
    run = Run(Scheduler(max_rows=1, policy="continuous"))
    run.submit(Job("running", 10, deadline=100.0))
    run.step(wall=50.0)
    run.submit(Job("queued", 2, deadline=60.0))
    run.step(wall=55.0)
    run.step(wall=61.0)  # "queued" expired while waiting for the busy row
    assert run.expired == ["queued"] and run.cancelled == []
    run.step(wall=101.0)  # "running" expired mid-decode
    assert run.expired == ["queued", "running"] and run.cancelled == ["running"]
    assert not run.scheduler.waiting and not run.scheduler.live


def test_an_idle_replica_waits_for_company_until_the_batch_fills_or_the_wait_ends() -> None:
    scheduler = Scheduler(max_rows=3, policy="continuous", idle_wait_s=0.5)
    scheduler.submit(Request(Job("a", 1), arrived=10.0))
    plan = scheduler.schedule(now=10.1, wall=0.0, session_rows=0)
    assert plan.wait and plan.wait_s == pytest.approx(0.4)
    assert [r.item.name for r in scheduler.schedule(now=10.6, wall=0.0, session_rows=0).admit] == ["a"]
    for name in "bcd":
        scheduler.submit(Request(Job(name, 1), arrived=20.0))
    assert [r.item.name for r in scheduler.schedule(now=20.0, wall=0.0, session_rows=0).admit] == ["b", "c", "d"]


def test_each_step_is_reported_with_its_rows_queue_times_and_answers_with_timing() -> None:
    run = Run(Scheduler(max_rows=4, policy="continuous"))
    run.submit(Job("a", 3))
    run.clock = 2.0  # "b" arrives two seconds later and waits a step
    run.step()
    run.submit(Job("b", 3, rows=2))
    run.run()
    assert [r.rows for r in run.reports] == [1, 3, 3, 2]
    assert [r.admitted_queue_ms for r in run.reports] == [(2000.0,), (0.0,), (), ()]
    a, b = run.answers["a"].output.timing, run.answers["b"].output.timing
    assert a is not None and (a.queue_ms, a.inference_ms, a.batch_size) == (2000.0, 3000.0, 2)
    assert b is not None and (b.queue_ms, b.inference_ms, b.batch_size) == (0.0, 3000.0, 3)
    assert run.scheduler.steps == 4 and run.scheduler.decoding == 0


def test_a_failed_step_drops_the_admitted_requests_and_keeps_the_waiting_ones() -> None:
    run = Run(Scheduler(max_rows=1, policy="continuous"))
    run.submit(Job("running", 5))
    run.step()
    run.submit(Job("waiting", 1))
    assert [r.item.name for r in run.scheduler.drop_live()] == ["running"]
    assert [r.item.name for r in run.scheduler.waiting] == ["waiting"]
    assert [r.item.name for r in run.scheduler.drop_all()] == ["waiting"]


def test_a_waiting_request_that_cannot_finish_by_its_deadline_expires_instead_of_taking_a_row() -> None:
    run = Run(Scheduler(max_rows=1, policy="continuous"))
    run.submit(Job("first", 3))
    run.step(wall=0.0)  # a step of 1 s timed: the step time is known now
    run.submit(Job("forced", 5, deadline=6.0))  # at least 5 steps: cannot start after wall 1
    run.submit(Job("may end early", 5, deadline=6.0, forced=False))
    run.step(wall=2.0)
    assert run.expired == ["forced"]
    run.run()
    assert "may end early" in run.answers


def test_the_backlog_places_the_waiting_queue_behind_the_live_rows() -> None:
    run = Run(Scheduler(max_rows=2, policy="continuous"))
    run.submit(Job("long", 10))
    run.step()
    run.submit(Job("a", 4))
    run.submit(Job("b", 4))
    backlog = run.scheduler.backlog(collected=3)
    # One row is free: "a" takes it (free again after 4 steps), "b" follows
    # there (8), "long" holds the other row 9 more steps.
    assert sorted(backlog.slots) == [8.0, 9.0]
    assert backlog.step_times is not None and backlog.step_times.at(2) == 1.0
    assert backlog.busy_rows == 3 and backlog.collected == 3
