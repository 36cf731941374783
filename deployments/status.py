"""The one place where a failure becomes a gRPC status code.

Exceptions raised inside a model replica reach the ingress wrapped in Ray's
``RayTaskError``; the original is unwrapped first so that an ``InvalidInput``
raised by an engine is INVALID_ARGUMENT here too. Anything not listed is a
bug and answers INTERNAL.
"""

from __future__ import annotations

import random

import grpc
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

from t5electra.server.errors import (
    InvalidInput,
    ModelNotReady,
    NotConfigured,
    PermissionDenied,
    Unauthenticated,
    UnknownModel,
)

from .refusals import DeadlineExceeded, Overloaded

RETRY_AFTER_MS = 200
# A model with no running replica comes back when Serve has started one
# (6-9 s on two cores): retrying sooner only spends the caller's attempts,
# of which gRPC's own retries allow at most five.
RETRY_AFTER_NO_REPLICA_MS = 2500


def unwrap(error: BaseException) -> BaseException:
    while isinstance(error, RayTaskError) and error.cause is not None and error.cause is not error:
        error = error.cause
    return error


def to_status_code(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """(code, message) for a failed request; the message is safe to show callers."""
    error = unwrap(error)
    if isinstance(error, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    if isinstance(error, UnknownModel):
        return grpc.StatusCode.NOT_FOUND, str(error)
    if isinstance(error, NotConfigured):
        return grpc.StatusCode.FAILED_PRECONDITION, str(error)
    if isinstance(error, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, str(error)
    if isinstance(error, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED, str(error)
    if isinstance(error, Overloaded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"server overloaded, retry after grpc-retry-pushback-ms: {error}"
    if isinstance(error, BackPressureError):
        return (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "server overloaded, retry after grpc-retry-pushback-ms",
        )
    if isinstance(error, ModelNotReady):
        return grpc.StatusCode.UNAVAILABLE, f"model unavailable, retry later: {error}"
    if isinstance(error, (DeploymentUnavailableError, ReplicaUnavailableError, RayActorError)):
        return grpc.StatusCode.UNAVAILABLE, f"model replica unavailable, retry later ({type(error).__name__})"
    if isinstance(error, DeadlineExceeded):
        return grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline exceeded: {error}"
    if isinstance(error, (TimeoutError, GetTimeoutError)):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded inside the server"
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); see server logs"


def retry_hint(error: BaseException, code: grpc.StatusCode) -> list[tuple[str, str]]:
    """Trailing metadata that tells a client when retrying makes sense: the
    standard ``grpc-retry-pushback-ms``, which gRPC's own retries (a service
    config's retryPolicy) obey, and ``retry-after-ms`` for older clients."""
    if code not in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
        return []
    error = unwrap(error)
    if isinstance(error, Overloaded):
        base = error.retry_after_ms  # when the work queued ahead should have drained
    elif isinstance(error, BackPressureError) and error.retry_after_s:
        base = round(error.retry_after_s * 1000)
    else:
        base = RETRY_AFTER_NO_REPLICA_MS if isinstance(error, ModelNotReady) else RETRY_AFTER_MS
    # gRPC waits exactly the pushback: callers refused together would come
    # back together and be refused again, so each is told a different wait,
    # never shorter than the hint: sooner, the work ahead has not drained.
    wait = round(base * random.uniform(1.0, 1.5))
    return [("grpc-retry-pushback-ms", str(wait)), ("retry-after-ms", str(wait))]
