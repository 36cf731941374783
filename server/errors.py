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
