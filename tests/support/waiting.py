"""Waiting for a state another thread or process reaches.

A test that asserts such a state right away races the thread that gets
there; one that sleeps a fixed time fails on a slower machine. This polls
the condition until a generous limit, which only a real hang reaches.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 60.0, poll_s: float = 0.01) -> None:
    """Returns once ``condition()`` is true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(poll_s)
