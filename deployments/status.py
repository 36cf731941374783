"""The one place where a failure becomes a gRPC status code.

Exceptions raised inside a model replica reach the ingress wrapped in Ray's
``RayTaskError``; the original is unwrapped first so that an ``InvalidInput``
raised by an engine is INVALID_ARGUMENT here too. Anything not listed is a
bug and answers INTERNAL.
"""

from __future__ import annotations

import grpc
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

from t5electra.server.errors import InvalidInput, ModelNotReady, PermissionDenied, Unauthenticated

RETRY_AFTER_MS = 200


def unwrap(error: BaseException) -> BaseException:
    while isinstance(error, RayTaskError) and error.cause is not None and error.cause is not error:
        error = error.cause
    return error


def to_status_code(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """(code, message) for a failed request; the message is safe to show callers."""
    error = unwrap(error)
    if isinstance(error, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    if isinstance(error, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, str(error)
    if isinstance(error, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED, str(error)
    if isinstance(error, BackPressureError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"server overloaded, retry after {RETRY_AFTER_MS} ms"
    if isinstance(error, ModelNotReady):
        return grpc.StatusCode.UNAVAILABLE, f"model unavailable, retry later: {error}"
    if isinstance(error, (DeploymentUnavailableError, ReplicaUnavailableError, RayActorError)):
        return grpc.StatusCode.UNAVAILABLE, f"model replica unavailable, retry later ({type(error).__name__})"
    if isinstance(error, (TimeoutError, GetTimeoutError)):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded inside the server"
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); see server logs"


def retry_hint(code: grpc.StatusCode) -> list[tuple[str, str]]:
    """Trailing metadata that tells a client when retrying makes sense."""
    if code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
        return [("retry-after-ms", str(RETRY_AFTER_MS))]
    return []
