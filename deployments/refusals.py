"""The failures serving itself answers with, as opposed to the engines':
a request refused for load or for a deadline it cannot meet, or one whose
deadline passed. A refusal carries the refusing replica's admission horizon,
which the ingress learns and then refuses by. ``status.py`` maps them to
status codes with the rest."""

from __future__ import annotations

from t5electra.server.errors import ServingError

from .replies import Horizon


class Overloaded(ServingError):
    """The work queued ahead keeps this request from being answered within
    its deadline, or the server holds as much work as it may
    (RESOURCE_EXHAUSTED): refused at once, so that the caller can go
    elsewhere or come back after ``retry_after_ms``, when it could start."""

    def __init__(self, message: str, retry_after_ms: int, horizon: Horizon | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms
        self.horizon = horizon  # the refusing replica's admission, for the ingress

    def __reduce__(self):
        return (type(self), (str(self), self.retry_after_ms, self.horizon))


class DeadlineExceeded(ServingError, TimeoutError):
    """The request's deadline passed while it waited or ran (DEADLINE_EXCEEDED)."""


class DeadlineTooShort(DeadlineExceeded):
    """Even on an idle replica, the least work the request must do takes
    longer than its deadline allows: refused at once (DEADLINE_EXCEEDED, what
    the caller would get anyway, only sooner), with no pushback, since a
    retry cannot help. Unlike :class:`Overloaded`, waiting is not the cause."""

    def __init__(self, message: str, horizon: Horizon | None = None) -> None:
        super().__init__(message)
        self.horizon = horizon  # the refusing replica's admission, for the ingress

    def __reduce__(self):
        return (type(self), (str(self), self.horizon))


RETURNED = (Overloaded, DeadlineExceeded)
"""Failures a model replica returns as values rather than raising. Under
overload they are most of its answers, and Ray's path for a raised error (a
traceback and an ERROR log line per request) would cost the replica more than
the answer saves; and a deadline is the caller's choice, not a fault of the
server's. The ingress raises them again (``deployments/bounded.py``)."""
