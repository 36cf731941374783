"""Closed-loop callers that run through a planned operation and account
for every call: one with the Python client's default retries, one without."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from t5electra.clients import NO_RETRY, Client, RetryPolicy, T5ElectraError

RETRYABLE = {"UNAVAILABLE", "RESOURCE_EXHAUSTED"}


@dataclass
class Caller:
    """Alternates a short Generate and a DetectReplacements, back to back."""

    address: str
    retry: RetryPolicy
    log: list[tuple[float, str, bool]] = field(default_factory=list)  # (time, code, retry hint sent)
    details: Counter = field(default_factory=Counter)
    crashed: list[BaseException] = field(default_factory=list)  # anything but a status code ends the caller

    def run(self, stop: threading.Event) -> None:
        try:
            self._call_until(stop)
        except BaseException as error:
            self.crashed.append(error)
            raise

    def _call_until(self, stop: threading.Event) -> None:
        with Client(self.address, retry=self.retry, timeout=60) as client:
            turn = 0
            while not stop.is_set():
                turn += 1
                try:
                    if turn % 2:
                        client.generate("reverse words: apple river stone", max_new_tokens=8)
                    else:
                        client.detect_replacements("The callable is invoked with a single banana.")
                    self.log.append((time.monotonic(), "OK", False))
                except T5ElectraError as error:
                    self.details[f"{error.code.name}: {error.details[:100]}"] += 1
                    self.log.append((time.monotonic(), error.code.name, "grpc-retry-pushback-ms" in error.metadata))

    def during(self, start: float, end: float) -> dict[str, Any]:
        window = [(code, hint) for t, code, hint in self.log if start <= t <= end]
        return {
            "sent": len(window),
            "failed": dict(Counter(code for code, _ in window if code != "OK")),
            "without_hint": sum(1 for code, hint in window if code != "OK" and not hint),
        }


@dataclass
class Traffic:
    retrying: Caller
    bare: Caller

    def account(self, start: float, end: float) -> dict[str, Any]:
        return {"with retries": self.retrying.during(start, end), "without retries": self.bare.during(start, end)}

    def check(self, figures: dict[str, Any]) -> None:
        """Nothing lost with retries; without, only retryable codes, each
        with the server's retry hint."""
        assert not self.retrying.crashed and not self.bare.crashed, (self.retrying.crashed, self.bare.crashed)
        assert figures["with retries"]["sent"] > 0 and figures["without retries"]["sent"] > 0, figures
        assert figures["with retries"]["failed"] == {}, (figures, dict(self.retrying.details))
        assert set(figures["without retries"]["failed"]) <= RETRYABLE, (figures, dict(self.bare.details))
        assert figures["without retries"]["without_hint"] == 0, figures


@contextmanager
def traffic(address: str) -> Iterator[Traffic]:
    """Both callers running for the duration of the block."""
    running = Traffic(Caller(address, RetryPolicy()), Caller(address, NO_RETRY))
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,)) for c in (running.retrying, running.bare)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        yield running
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
