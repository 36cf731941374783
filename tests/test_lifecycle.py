"""Stopping ``t5electra serve`` the ways operators do: SIGTERM to the whole
process group (systemd's default, ``kill -TERM -PGID``), SIGTERM to the
command alone, and Ctrl-C twice. Each time: how long it took, the exit code,
what happened to the requests in flight, and that no process is left."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from t5electra.clients import NO_RETRY, Client, T5ElectraError
from t5electra.deployments.settings import Settings
from t5electra.tools.serving.lifecycle import drain_budget_s

from support.served import serving
from support.waiting import wait_for

pytestmark = pytest.mark.system

# Long enough (seconds, served) to be decoding when the signal comes.
LONG = {"min_new_tokens": 512, "max_new_tokens": 512}
# How long the command lets a drain take before it kills the server (exit
# 130): `t5electra serve` without flags, as here, runs on the default settings.
DRAIN_BUDGET_S = drain_budget_s(Settings.load())
# The command's own part past the budget: it checks the budget every 0.2 s,
# then kills and reaps the server's session.
EXIT_MARGIN_S = 10.0


def in_flight(address: str, count: int) -> tuple[list[tuple[str, float]], list[threading.Thread]]:
    """Starts ``count`` long streams and returns once each has its first
    piece, i.e. is decoding in the replica; each records its status code
    and when it ended."""
    ended: list[tuple[str, float]] = []
    decoding = threading.Semaphore(0)

    def call() -> None:
        with Client(address, retry=NO_RETRY) as client:
            first = True
            try:
                for _ in client.generate_stream("reverse words: apple river stone", timeout=60, **LONG):
                    if first:
                        decoding.release()
                        first = False
                ended.append(("OK", time.monotonic()))
            except T5ElectraError as error:
                ended.append((error.code.name, time.monotonic()))
            finally:
                if first:
                    decoding.release()

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert decoding.acquire(timeout=120), "a stream never started"
    return ended, threads


def until(served, text: str, timeout: float = 120) -> None:
    """Until the server's output holds ``text``."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in served.output):
        assert time.monotonic() < deadline, f"never printed {text!r}: {''.join(served.output)[-2000:]}"
        time.sleep(0.05)


def alive(pids: set[int], within: float = 60.0) -> set[int]:
    """Which of ``pids`` are still running once each has had ``within``
    seconds to exit (a killed process takes a moment to go); returns as soon
    as all have."""
    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, still = psutil.wait_procs(processes, timeout=within)
    running = set()
    for process in still:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                running.add(process.pid)
        except psutil.NoSuchProcess:
            continue
    return running


@pytest.mark.parametrize("target", ["process group", "command alone"])
def test_sigterm_drains_and_stops_cleanly(target: str) -> None:
    with serving() as served:
        tree = served.tree()
        assert len(tree) > 5, "the command, its server and Ray's processes"
        ended, threads = in_flight(served.address, 3)
        sent = time.monotonic()
        if target == "process group":
            os.killpg(served.process.pid, signal.SIGTERM)
        else:
            served.process.send_signal(signal.SIGTERM)
        code = served.process.wait(timeout=DRAIN_BUDGET_S + 60)
        took = time.monotonic() - sent
        for thread in threads:
            thread.join(timeout=120)
        left = alive(tree)
    codes = [code for code, _ in ended]
    print(f"\nSIGTERM to the {target}: exit {code} after {took:.1f} s; in flight: {codes}; left: {len(left)}")
    assert code == 0, "".join(served.output)[-3000:]
    # The server printed it before it exited; the reader thread may still be on its way to it.
    wait_for(lambda: any(line.startswith("stopped after") for line in served.output), what="'stopped after'")
    assert took < DRAIN_BUDGET_S + EXIT_MARGIN_S, f"within the drain budget ({DRAIN_BUDGET_S:.0f} s)"
    assert len(codes) == 3 and set(codes) <= {"OK", "UNAVAILABLE"}, codes
    # A stream may finish before the signal on a machine slow to start the
    # others; it must have finished well, and one at least was still running.
    before = [code for code, at in ended if at <= sent]
    during = [code for code, at in ended if at > sent]
    assert set(before) <= {"OK"}, ended
    assert during, "a call was still running when the signal came"
    assert "OK" in during, "a request in flight was answered during the drain"
    assert not left, [psutil.Process(p).cmdline() for p in left]


def test_second_ctrl_c_stops_at_once() -> None:
    with serving() as served:
        tree = served.tree()
        ended, threads = in_flight(served.address, 2)
        served.process.send_signal(signal.SIGINT)
        until(served, "draining")
        second = time.monotonic()
        served.process.send_signal(signal.SIGINT)
        code = served.process.wait(timeout=DRAIN_BUDGET_S + 60)
        took = time.monotonic() - second
        for thread in threads:
            thread.join(timeout=120)
        left = alive(tree)
    codes = [code for code, _ in ended]
    print(f"\ntwo Ctrl-C: exit {code} {took:.1f} s after the second; in flight: {codes}; left: {len(left)}")
    assert code == 130, "".join(served.output)[-3000:]
    # Killed by the second Ctrl-C, not by the drain overrunning its budget:
    # the command says which (an overrun would have said so before).
    wait_for(lambda: "stopping at once" in [line.strip() for line in served.output], what="'stopping at once'")
    assert not any("the drain took longer" in line for line in served.output), served.output
    assert took < DRAIN_BUDGET_S, f"stopped without waiting out the drain budget ({DRAIN_BUDGET_S:.0f} s)"
    assert len(codes) == 2 and set(codes) <= {"OK", "UNAVAILABLE", "CANCELLED"}, codes
    assert not left, [psutil.Process(p).cmdline() for p in left]
