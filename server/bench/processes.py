"""What the serving processes hold in memory, read from the operating system,
so that a benchmark or soak measures the server it started without joining
its Ray cluster."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
