"""Stopping ``t5electra serve`` the ways operators do: SIGTERM to the whole
process group (systemd's default, ``kill -TERM -PGID``), SIGTERM to the
command alone, and Ctrl-C twice. Each time: how long it took, the exit code,
what happened to the requests in flight, and that no process is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil
import pytest

from t5electra.clients import NO_RETRY, Client, T5ElectraError

from conftest import free_port

pytestmark = pytest.mark.system

LONG = {"min_new_tokens": 60, "max_new_tokens": 60}


@dataclass
class Served:
    process: subprocess.Popen
    address: str
    output: list[str] = field(default_factory=list)

    def tree(self) -> set[int]:
        """The command and every process beneath it (its server and Ray)."""
        root = psutil.Process(self.process.pid)
        return {root.pid, *(p.pid for p in root.children(recursive=True))}


@contextmanager
def serving() -> Iterator[Served]:
    """``t5electra serve`` in a process group of its own, as a service
    manager starts it."""
    port = free_port()
    env = {**os.environ, "T5ELECTRA_HTTP_PORT": str(free_port()), "T5ELECTRA_METRICS_PORT": str(free_port())}
    process = subprocess.Popen(
        [sys.executable, "-m", "t5electra.server.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    served = Served(process, f"127.0.0.1:{port}")
    reader = threading.Thread(target=lambda: served.output.extend(process.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not any("Ctrl-C or SIGTERM" in line for line in served.output):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("t5electra serve did not start:\n" + "".join(served.output))
        time.sleep(0.2)
    try:
        yield served
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def in_flight(address: str, count: int) -> tuple[list[str], list[threading.Thread]]:
    codes: list[str] = []

    def call() -> None:
        with Client(address, retry=NO_RETRY) as client:
            try:
                client.generate("reverse words: apple river stone", timeout=60, **LONG)
                codes.append("OK")
            except T5ElectraError as error:
                codes.append(error.code.name)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # the requests reach the replica and start decoding
    return codes, threads


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE}


@pytest.mark.parametrize("target", ["process group", "command alone"])
def test_sigterm_drains_and_stops_cleanly(target: str) -> None:
    with serving() as served:
        tree = served.tree()
        assert len(tree) > 5, "the command, its server and Ray's processes"
        codes, threads = in_flight(served.address, 3)
        sent = time.monotonic()
        if target == "process group":
            os.killpg(served.process.pid, signal.SIGTERM)
        else:
            served.process.send_signal(signal.SIGTERM)
        code = served.process.wait(timeout=60)
        took = time.monotonic() - sent
        for thread in threads:
            thread.join(timeout=60)
        left = alive(tree)
    print(f"\nSIGTERM to the {target}: exit {code} after {took:.1f} s; in flight: {codes}; left: {len(left)}")
    assert code == 0, "".join(served.output)[-3000:]
    assert any(line.startswith("stopped after") for line in served.output)
    assert took < 20 + 15, "within graceful_shutdown_timeout_s and Serve's own stop"
    assert len(codes) == 3 and set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert not left, [psutil.Process(p).cmdline() for p in left]


def test_second_ctrl_c_stops_at_once() -> None:
    with serving() as served:
        tree = served.tree()
        codes, threads = in_flight(served.address, 2)
        sent = time.monotonic()
        served.process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        served.process.send_signal(signal.SIGINT)
        code = served.process.wait(timeout=30)
        took = time.monotonic() - sent
        for thread in threads:
            thread.join(timeout=60)
        left = alive(tree)
    print(f"\ntwo Ctrl-C: exit {code} after {took:.1f} s; in flight: {codes}; left: {len(left)}")
    assert code == 130 and took < 10
    assert set(codes) <= {"OK", "UNAVAILABLE", "CANCELLED"}, codes
    assert not left, [psutil.Process(p).cmdline() for p in left]
