"""The vocabulary of failures a request can meet.

Engines and deployments raise these; the ingress maps each to one gRPC status
code in a single place (``deployments/status.py``). Anything else that escapes
is a bug and becomes INTERNAL.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base of the errors a caller is meant to see, message included."""


class InvalidInput(ServingError):
    """A request field is out of range or malformed (INVALID_ARGUMENT).

    ``field`` names the offending field as it is spelled on the wire, so that
    callers can point at it without parsing the message.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

    def __reduce__(self):
        # Ray pickles exceptions across processes; keep both arguments.
        return (type(self), (self.field, str(self).split(": ", 1)[1]))


class NotConfigured(ServingError):
    """The request asks for something this server was not set up to do
    (FAILED_PRECONDITION); the message names the setting that enables it."""


class UnknownModel(ServingError):
    """The request names a model this server does not serve (NOT_FOUND)."""


class ModelNotReady(ServingError):
    """The model is still loading or has no live replica (UNAVAILABLE)."""


class Unauthenticated(ServingError):
    """No bearer token, or one the server does not know (UNAUTHENTICATED)."""


class PermissionDenied(ServingError):
    """A known caller asked for an RPC its token does not allow (PERMISSION_DENIED)."""


class Overloaded(ServingError):
    """The work queued ahead keeps this request from being answered within
    its deadline, or the server holds as much work as it may
    (RESOURCE_EXHAUSTED): refused at once, so that the caller can go
    elsewhere or come back after ``retry_after_ms``, when it could start."""

    def __init__(self, message: str, retry_after_ms: int, horizon: object = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms
        self.horizon = horizon  # the refusing replica's admission (domain.Horizon), for the ingress

    def __reduce__(self):
        return (type(self), (str(self), self.retry_after_ms, self.horizon))


class DeadlineExceeded(ServingError, TimeoutError):
    """The request's deadline passed while it waited or ran (DEADLINE_EXCEEDED)."""


class DeadlineTooShort(DeadlineExceeded):
    """Even on an idle replica, the least work the request must do takes
    longer than its deadline allows: refused at once (DEADLINE_EXCEEDED, what
    the caller would get anyway, only sooner), with no pushback, since a
    retry cannot help. Unlike :class:`Overloaded`, waiting is not the cause."""

    def __init__(self, message: str, horizon: object = None) -> None:
        super().__init__(message)
        self.horizon = horizon  # the refusing replica's admission (domain.Horizon), for the ingress

    def __reduce__(self):
        return (type(self), (str(self), self.horizon))


RETURNED = (Overloaded, DeadlineExceeded)
"""Failures a model replica returns as values rather than raising. Under
overload they are most of its answers, and Ray's path for a raised error (a
traceback and an ERROR log line per request) would cost the replica more than
the answer saves; and a deadline is the caller's choice, not a fault of the
server's. The ingress raises them again (``deployments/bounded.py``)."""
