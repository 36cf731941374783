"""The processes a benchmark or soak starts: a free port for each, starting
one and waiting until it says it is ready, and what the serving processes
hold in memory and spend in CPU time, read from the operating system so
that the measuring process never joins the server's Ray cluster."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from t5electra.deployments import names

_GIVEN: set[int] = set()
_GIVEN_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1, and that this process
    has not handed out before: ports are often given out several at a time for
    servers that bind them all later (one Ray node takes five), and the kernel
    may offer the same free port to two probes in a row, which made a node
    refuse to start with two of its components on one port."""
    with _GIVEN_LOCK:
        while True:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            if port not in _GIVEN:
                _GIVEN.add(port)
                return port


def _tree(root_pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(root_pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def serving_memory_mb(root_pid: int) -> float:
    """Resident memory of the server process and every Ray process it started
    (its process tree), in MiB."""
    total = 0
    for process in _tree(root_pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def replica_peak_rss_mb(root_pid: int, deployment: str) -> float | None:
    """Peak resident memory (Linux's VmHWM) of the replica process of
    ``deployment`` in the server's process tree, in MiB; the largest if
    several run, None where the system does not report it."""
    peaks = []
    for process in _tree(root_pid):
        try:
            if not any(deployment in part for part in process.cmdline()):
                continue
            status = Path(f"/proc/{process.pid}/status").read_text()
        except (psutil.Error, OSError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks) if peaks else None


@dataclass(frozen=True)
class Started:
    pid: int
    seconds: float


SERVE_READY = "Ctrl-C or SIGTERM stops it."
"""The last line ``t5electra serve`` prints when it is up: every line before
it (the models served, the Ray cluster's address) is written by then. Its
first line, "serving on", comes before the models are described."""


@contextmanager
def started_process(
    name: str, command: list[str], ready: str, log: Path, env: dict[str, str], timeout: float = 300
) -> Iterator[Started]:
    """Starts ``command``, waits for ``ready`` in its output (which goes to
    ``log``), yields its pid and how long that took, and stops it with SIGTERM."""
    started = time.monotonic()
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **env})
        try:
            while ready not in log.read_text():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"{name} not ready after {timeout}s; see {log}")
                time.sleep(0.2)
            yield Started(process.pid, time.monotonic() - started)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


ROLES = (
    ("proxy", "ProxyActor"),
    ("ingress", f":{names.INGRESS}"),
    ("t5 replica", f":{names.TEXT_GENERATOR}"),
    ("electra replica", f":{names.DETECTOR}"),
    ("controller", "ServeController"),
    ("raylet", "raylet"),
    ("gcs", "gcs_server"),
)


def _role(process: psutil.Process) -> str:
    title = " ".join(process.cmdline())
    return next((role for role, marker in ROLES if marker in title), "other ray")


def serving_processes(root_pid: int) -> dict[int, str]:
    """Every process of the server's tree, by role."""
    root = psutil.Process(root_pid)
    found = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            found[process.pid] = "t5electra serve" if process.pid == root_pid else _role(process)
        except psutil.Error:
            continue
    return found


def _cpu_s(pids: dict[int, str]) -> dict[str, float]:
    by_role: dict[str, float] = {}
    for pid, role in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        by_role[role] = by_role.get(role, 0.0) + times.user + times.system
    return by_role


@contextmanager
def cpu_spent(root_pid: int) -> Iterator[dict[str, float]]:
    """CPU seconds each role spent while the block ran (filled in at its end)."""
    pids = serving_processes(root_pid)
    before = _cpu_s(pids)
    spent: dict[str, float] = {}
    yield spent
    after = _cpu_s(pids)
    spent.update({role: after[role] - before.get(role, 0.0) for role in after})
