"""Waiting on a model deployment no longer than the caller waits.

A request may wait in Ray's router (for a replica with room) and then in the
replica; neither knows the caller's deadline by itself. The ingress bounds
its wait by the deadline and, when it passes, cancels the call: a request
still in the router never reaches a replica, and one already there leaves
its queue or its batch (Serve cancels the replica's task). The caller gets
DEADLINE_EXCEEDED at its deadline, not when its own cancel comes around.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from ray.serve.handle import DeploymentResponse, DeploymentResponseGenerator

from .refusals import DeadlineExceeded, DeadlineTooShort, Overloaded
from .replies import Horizon, Reply

T = TypeVar("T")


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.time())


def _refused(answer: Any, learn: Callable[[Horizon], None] | None = None) -> Any:
    """A model replica returns its refusals and expiries (``RETURNED``)
    instead of raising them, to keep them cheap, and a shared call
    (``hop.py``) each request's own failure: here they are raised.
    ``learn`` is given the admission horizon a refusal or a reply carries
    (T5's)."""
    horizon = answer.horizon if isinstance(answer, (Reply, Overloaded, DeadlineTooShort)) else None
    if learn is not None and horizon is not None:
        learn(horizon)
    if isinstance(answer, Exception):
        raise answer
    return answer


async def answer(
    response: DeploymentResponse, deadline: float | None, learn: Callable[[Horizon], None] | None = None
) -> Any:
    """The deployment's answer, or :class:`DeadlineExceeded` at ``deadline``.
    Cancelling the wait cancels the call: awaiting a Ray response that is
    cancelled leaves the replica working for nobody."""
    try:
        answered = await asyncio.wait_for(response, _left(deadline))
    except TimeoutError as error:
        response.cancel()
        raise DeadlineExceeded("the deadline passed before the model answered") from error
    except asyncio.CancelledError:
        response.cancel()
        raise
    # Outside the wait: a DeadlineExceeded the replica returned is a
    # TimeoutError too, and keeps its own message.
    return _refused(answered, learn)


async def shared(wait: Awaitable[Any], deadline: float | None) -> Any:
    """The answer to a request that shares its model call with others
    (``hop.py``), or :class:`DeadlineExceeded` at ``deadline``."""
    try:
        answered = await asyncio.wait_for(wait, _left(deadline))
    except TimeoutError as error:
        raise DeadlineExceeded("the deadline passed before the model answered") from error
    return _refused(answered)


async def together(waits: Iterable[Awaitable[T]]) -> list[T]:
    """Every answer, in order, for a call made of several model calls (a
    ModelInfer of N texts); the first failure ends them all: the others are
    cancelled at once, their rows leave their batches, and it is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(wait) for wait in waits]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def pieces(
    responses: DeploymentResponseGenerator,
    deadline: float | None,
    learn: Callable[[Horizon], None] | None = None,
) -> AsyncIterator[Any]:
    """The deployment's stream, each piece awaited until ``deadline`` at
    most. Left early (the caller went away), it cancels the model's stream:
    Serve's direct ingress closes a leaving caller's stream instead of
    cancelling its task, and closing alone does not reach the model call."""
    ended = False
    try:
        while True:
            try:
                piece = await asyncio.wait_for(anext(responses), _left(deadline))
            except StopAsyncIteration:
                ended = True
                return
            except TimeoutError as error:
                raise DeadlineExceeded("the deadline passed before the stream ended") from error
            yield _refused(piece, learn)
    finally:
        if not ended:
            responses.cancel()
