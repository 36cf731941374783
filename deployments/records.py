"""The one record a request has in a model replica, from the moment its
replica method posts it to the model thread until its answer (or failure)
goes back: an id, a status, what the engine prepared, its way back to the
caller, and the times and counts its timing is made from. The mailbox
creates it; the T5 scheduler, the ELECTRA planner and the session (whose
key is the record's id) all hold the same record, and a caller that leaves
is found by it, as vLLM keeps one ``Request`` per request.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .replies import BatchTiming

T = TypeVar("T")
P = TypeVar("P")

_ids = itertools.count()


class Status(enum.Enum):
    WAITING = "waiting"  # posted, not yet in a session or batch
    RUNNING = "running"  # in the session (T5) or a batch being run (ELECTRA)
    FINISHED = "finished"  # answered
    LEFT = "left"  # its caller went away
    EXPIRED = "expired"  # its deadline passed, or could no longer be met
    FAILED = "failed"  # the model failed it


@dataclass(eq=False)
class Request(Generic[T]):
    """One request in a model thread. ``item`` is what the engine prepared
    (``PreparedGeneration``, ``PreparedDetection``); ``outputs`` is how the
    model thread's answers reach the caller's coroutine. ``arrived`` is
    when the model thread collected it and ``admitted`` when it joined a
    session or batch (``time.perf_counter()``); the step counts at
    admission are T5's, for its timing."""

    item: T
    id: int = field(default_factory=lambda: next(_ids))
    status: Status = Status.WAITING
    outputs: asyncio.Queue[Any] = field(default_factory=asyncio.Queue, repr=False)
    arrived: float = 0.0
    admitted: float = 0.0
    steps_at_admission: int = 0
    rows_at_admission: int = 0


@dataclass(frozen=True)
class Output(Generic[P]):
    """What a model thread sends a caller: a step's event (T5) or a batch's
    result (ELECTRA), and with the request's last output its timing in the
    replica (the replica adds its own share, ``replica_ms``)."""

    payload: P
    timing: BatchTiming | None = None
