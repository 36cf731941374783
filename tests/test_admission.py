"""Admission's estimate and refusal, from backlogs the test writes: no
threads, no clock (``wall`` is a number the test chooses)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest

from t5electra.deployments.admission import Admission, Backlog, Estimator, StepTimes, expected_steps, place
from t5electra.deployments.gate import Gate
from t5electra.deployments.refusals import DeadlineTooShort, Overloaded

pytestmark = pytest.mark.unit

TENTH = StepTimes(0.1, 0.0)
"""A tenth of a second a step, whatever the rows."""


@dataclass(frozen=True)
class Ask:
    steps: int
    deadline: float | None = None
    rows: int = 1
    forced: bool = True

    stream: bool = False

    @property
    def min_steps(self) -> int:
        return self.steps if self.forced else 1

    @property
    def max_steps(self) -> int:
        return self.steps


def test_place_takes_the_first_rows_to_free_and_holds_them() -> None:
    slots = [0.0, 4.0, 10.0]
    assert place(slots, 1, 5) == 0.0  # the free row: now, until step 5
    assert place(slots, 2, 3) == 5.0  # rows free at 4 and 5: starts when both are
    assert sorted(slots) == [8.0, 8.0, 10.0]


def test_expected_steps_follow_recent_answers_within_the_requests_bounds() -> None:
    assert expected_steps(Ask(64, forced=False), None) == 64
    assert expected_steps(Ask(64, forced=False), 12.5) == 12.5
    assert expected_steps(Ask(8, forced=False), 30.0) == 8  # never past max_new_tokens
    assert expected_steps(Ask(16), 4.0) == 16  # a forced length is known


def test_everything_is_admitted_before_a_step_was_timed() -> None:
    admission = Admission()
    for _ in range(100):
        admission.admit(Ask(16, deadline=0.1), wall=0.0)


def test_a_request_that_would_finish_after_its_deadline_is_refused_with_the_wait_as_pushback() -> None:
    admission = Admission()
    # Two rows, both busy for 10 more steps of 0.1 s.
    admission.publish(Backlog(slots=(10.0, 10.0), step_times=TENTH))
    with pytest.raises(Overloaded) as refused:
        admission.admit(Ask(16, deadline=2.0), wall=0.0)  # would finish at 2.6 s
    assert refused.value.retry_after_ms == 1000  # when a row frees
    admission.admit(Ask(16, deadline=3.0), wall=0.0)  # finishes at 2.6 s: fits
    admission.admit(Ask(16, deadline=3.0), wall=0.0)  # the other row, also at 2.6 s
    with pytest.raises(Overloaded) as refused:
        admission.admit(Ask(16, deadline=3.0), wall=0.0)  # behind both: 2.6 + 1.6 s
    assert refused.value.retry_after_ms == 2600
    admission.admit(Ask(16), wall=0.0)  # no deadline: queued, whatever the wait (row 1 until 4.2 s)
    admission.admit(Ask(16), wall=0.0)  # row 2 until 4.2 s
    estimate = admission.estimate(Ask(1))
    assert estimate is not None and estimate.start_s == pytest.approx(4.2)


def test_requests_the_thread_collected_are_counted_by_its_backlog_not_twice() -> None:
    admission = Admission()
    admission.publish(Backlog(slots=(0.0,), step_times=TENTH, collected=0))
    admission.admit(Ask(10), wall=0.0)
    estimate = admission.estimate(Ask(10))
    assert estimate is not None and estimate.start_s == pytest.approx(1.0)
    # The thread took it in and placed it itself: the slot frees after 10 steps.
    admission.publish(Backlog(slots=(10.0,), step_times=TENTH, collected=1))
    estimate = admission.estimate(Ask(10))
    assert estimate is not None and estimate.start_s == pytest.approx(1.0)


def test_a_refusal_survives_ray_pickling_with_its_pushback() -> None:
    error = pickle.loads(pickle.dumps(Overloaded("busy", retry_after_ms=350)))
    assert isinstance(error, Overloaded) and str(error) == "busy" and error.retry_after_ms == 350


def test_a_stream_is_refused_only_when_its_first_piece_would_come_too_late() -> None:
    admission = Admission()
    admission.publish(Backlog(slots=(10.0,), step_times=TENTH))
    admission.admit(Ask(512, deadline=1.5, stream=True), wall=0.0)  # first piece at 1.1 s: worth having
    with pytest.raises(DeadlineTooShort):
        admission.admit(Ask(512, deadline=1.5), wall=0.0)  # unary: 512 forced steps take 51.2 s alone


def test_work_that_cannot_fit_even_alone_is_deadline_exceeded_without_pushback() -> None:
    admission = Admission()
    admission.publish(Backlog(slots=(0.0, 0.0), step_times=TENTH))  # idle
    with pytest.raises(DeadlineTooShort) as refused:
        admission.admit(Ask(512, deadline=0.15), wall=0.0)
    assert not isinstance(refused.value, Overloaded) and not hasattr(refused.value, "retry_after_ms")
    assert "51200 ms of decoding even on an idle replica (512 steps)" in str(refused.value)
    assert "allows 150 ms" in str(refused.value)
    assert refused.value.horizon is not None and refused.value.horizon.start_s == 0.0
    with pytest.raises(DeadlineTooShort):
        admission.admit(Ask(1, deadline=-1.0), wall=0.0)  # a deadline that passed
    with pytest.raises(DeadlineTooShort):
        admission.admit(Ask(512, deadline=0.05, stream=True), wall=0.0)  # not even the first piece


def test_a_length_only_estimated_never_refuses_a_request_on_an_idle_replica() -> None:
    admission = Admission()
    admission.publish(Backlog(slots=(0.0,), step_times=TENTH))
    admission.admit(Ask(512, deadline=2.0, forced=False), wall=0.0)  # 51.2 s if it ran to max_new_tokens
    # Behind the queue it is held to its least work: one step after the
    # 51.2 s the row above is expected to take.
    with pytest.raises(Overloaded) as refused:
        admission.admit(Ask(512, deadline=2.0, forced=False), wall=0.0)
    assert refused.value.retry_after_ms == 51200


def test_waiting_is_the_cause_of_an_overloaded_refusal() -> None:
    admission = Admission()
    admission.publish(Backlog(slots=(10.0,), step_times=TENTH))  # the only row frees in 1 s
    admission.admit(Ask(4, deadline=1.5), wall=0.0)  # 1.0 + 0.4 s: fits
    with pytest.raises(Overloaded) as refused:
        admission.admit(Ask(4, deadline=1.5), wall=0.0)  # behind it: 1.4 + 0.4 s
    assert refused.value.retry_after_ms == 1400
    assert "cannot start in time behind the work queued" in str(refused.value)


def test_the_step_time_line_fits_steps_of_every_size_and_ignores_outliers() -> None:
    steps = [(1, 0.012), (4, 0.018), (8, 0.026), (16, 0.042), (2, 0.014), (16, 3.0)]  # 3 s: a beam search
    line = StepTimes.fit(steps)
    assert line is not None
    assert line.base_s == pytest.approx(0.010, abs=0.001) and line.per_row_s == pytest.approx(0.002, abs=0.0002)
    assert StepTimes.fit([(4, 0.02), (4, 0.02)]) == StepTimes(0.02, 0.0)  # one size: its time
    assert StepTimes.fit([]) is None


def test_the_margin_makes_admission_stricter() -> None:
    strict = Admission(margin=1.5)
    strict.publish(Backlog(slots=(0.0,), step_times=TENTH))
    with pytest.raises(DeadlineTooShort):
        strict.admit(Ask(16, deadline=2.0), wall=0.0)  # 1.6 s, 2.4 s with the margin
    lenient = Admission()
    lenient.publish(Backlog(slots=(0.0,), step_times=TENTH))
    lenient.admit(Ask(16, deadline=2.0), wall=0.0)
    strict.publish(Backlog(slots=(5.0,), step_times=TENTH))
    with pytest.raises(Overloaded):
        strict.admit(Ask(8, deadline=1.8), wall=0.0)  # 0.5 + 0.8 s, 1.95 s with the margin


def test_the_ingress_gate_refuses_as_the_replica_would_while_its_horizon_is_fresh() -> None:
    replica = Admission()
    replica.publish(Backlog(slots=(10.0, 10.0), step_times=TENTH))
    with pytest.raises(Overloaded) as refused:
        replica.admit(Ask(16, deadline=4.0), wall=2.0)  # 1.0 + 1.6 s needed, 2 s left
    horizon = refused.value.horizon
    assert horizon is not None and horizon.start_s == pytest.approx(1.0) and horizon.step_s == pytest.approx(0.1)
    assert horizon.alone_step_s == pytest.approx(0.1)
    gate = Gate(max_new_tokens=512, max_rows=8, fresh_s=0.25)
    gate.learn(horizon)
    with pytest.raises(Overloaded):
        gate.check(Ask(16, deadline=4.0), wall=2.1)  # 1.0 + 1.6 s needed, 1.9 s left
    with pytest.raises(DeadlineTooShort):
        gate.check(Ask(512, deadline=4.0), wall=2.1)  # 51.2 s of work alone
    gate.check(Ask(16, deadline=5.0), wall=2.1)  # 2.9 s left: the replica decides
    gate.check(Ask(16, deadline=4.0), wall=2.3)  # the horizon is stale: the replica decides
    gate.check(Ask(16), wall=2.1)  # no deadline: never refused
    gate.check(Ask(100_000, deadline=4.0), wall=2.1)  # out of bounds: the replica's validation answers


def test_the_estimator_learns_a_steps_time_by_rows_and_a_typical_answer_from_step_reports() -> None:
    estimator = Estimator()
    estimator.timed([(1, 0.012)] * 4)  # a warm-up: one-row steps only, so one size's time for all
    assert estimator.step_times is not None and estimator.step_times.at(16) == pytest.approx(0.012)
    for step in range(16):
        rows = 1 + step % 4
        estimator.observe(rows, 0.01 + 0.002 * rows, answered_steps=(10,) if step % 2 else ())
    assert estimator.step_times.base_s == pytest.approx(0.01)
    assert estimator.step_times.per_row_s == pytest.approx(0.002)
    assert estimator.typical_steps == 10
    estimator.observe(4, None, answered_steps=(30, 30, 30, 30, 30, 30, 30, 30, 30))
    assert estimator.typical_steps == 30, "the median of the recent answers"
