"""``t5electra serve`` as a service manager runs it: its own process
group, its output collected, killed with its whole group if a test fails."""

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

from t5electra.tools.bench.processes import free_port


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
def serving(*flags: str) -> Iterator[Served]:
    """``t5electra serve [flags]`` in a process group of its own, as a
    service manager starts it."""
    port = free_port()
    env = {**os.environ, "T5ELECTRA_HTTP_PORT": str(free_port()), "T5ELECTRA_METRICS_PORT": str(free_port())}
    process = subprocess.Popen(
        [sys.executable, "-m", "t5electra.tools.cli", "serve", "--port", str(port), *flags],
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
