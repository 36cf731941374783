"""The ingress's side of T5 admission: it refuses, without the round trip
to a replica, what the last horizon a replica sent says that replica would
refuse, by the same rule (``admission.judge``). Under overload most arrivals
are refused; each one that reaches a replica costs its event loop, and the
decoding thread that shares the GIL with it, more than the refusal is worth.
"""

from __future__ import annotations

from dataclasses import dataclass

from t5electra.server.domain import GenerationRequest

from .admission import Estimate, Sized, expected_steps, judge, least_steps
from .replies import Horizon


class Gate:
    """Refuses on a replica's last horizon. A horizon older than
    ``fresh_s`` is not used: the next request goes to a replica, whose
    answer brings a new one. Requests whose sizes are out of bounds
    (``max_new_tokens``, ``max_rows``) go to the replica too, whose
    validation answers them INVALID_ARGUMENT."""

    def __init__(self, max_new_tokens: int, max_rows: int, fresh_s: float = 0.25) -> None:
        self.max_new_tokens = max_new_tokens
        self.max_rows = max_rows
        self.fresh_s = fresh_s
        self._horizon: Horizon | None = None

    def learn(self, horizon: Horizon | None) -> None:
        if horizon is not None and (self._horizon is None or horizon.at >= self._horizon.at):
            self._horizon = horizon

    def check(self, item: Sized, wall: float) -> None:
        """Raises :class:`Overloaded` or :class:`DeadlineTooShort` as the
        replica would, while the horizon is fresh."""
        horizon = self._horizon
        if horizon is None or item.deadline is None or wall - horizon.at > self.fresh_s:
            return
        if not (0 <= item.min_steps <= item.max_steps <= self.max_new_tokens and 1 <= item.rows <= self.max_rows):
            return
        steps = expected_steps(item, horizon.typical_steps)
        start = horizon.start_s
        least = least_steps(item) * horizon.alone_step_s
        estimate = Estimate(start, start + horizon.step_s, start + steps * horizon.step_s, least)
        if (refusal := judge(item, estimate, wall)) is not None:
            raise refusal


@dataclass(frozen=True)
class Asked:
    """A generation request as admission sees it, before the replica prepares it."""

    rows: int
    min_steps: int
    max_steps: int
    stream: bool
    deadline: float | None

    @classmethod
    def of(cls, request: GenerationRequest, *, stream: bool) -> Asked:
        parameters = request.parameters
        return cls(
            parameters.num_return_sequences,
            parameters.min_new_tokens,
            parameters.max_new_tokens,
            stream,
            request.deadline,
        )
