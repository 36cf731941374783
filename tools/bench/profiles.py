"""Sampling profiles of the serving processes under load, read without
joining their Ray cluster: py-spy attaches to each process by pid, records
folded stacks for the load's length, and the stacks are reduced to the
frames that hold most samples, so that a change to the serving path starts
from where the time goes (docs/benchmarks.md quotes them)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_RATE_HZ = 200
_CARRIERS = {
    "Thread._bootstrap_inner (threading.py)",
    "Thread.run (threading.py)",
    "_worker (concurrent/futures/thread.py)",
}
"""Frames under every thread's work, which say nothing of where it goes."""
_INSTALLED = re.compile(r".*(site-packages|lib/python3\.\d+)/")


@dataclass(frozen=True)
class Frames:
    """One process's profile: samples in all, and per frame (``function
    (file)``) the share of samples in which it was on the stack."""

    role: str
    samples: int
    inclusive: list[tuple[str, float]]

    def lines(self, top: int) -> list[str]:
        head = f"{self.role}: {self.samples} samples at {_RATE_HZ} Hz"
        return [head, *(f"  {share:6.1%}  {frame}" for frame, share in self.inclusive[:top])]


def _frame_name(frame: str) -> str:
    """``function (path/to/module.py:line)`` without the line and with the
    path cut to the package, so that one function is one entry."""
    name, _, place = frame.partition(" (")
    path = _INSTALLED.sub("", place.rsplit(":", 1)[0])
    return f"{name} ({path.split('/t5electra/', 1)[-1]})"


def read_folded(role: str, folded: Path) -> Frames:
    """Reduces py-spy's ``--format raw`` output (one ``frame;frame;... count``
    line per distinct stack) to inclusive shares per frame."""
    on_stack: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for frame in {_frame_name(f) for f in stack.split(";")[1:]} - _CARRIERS:  # the first is the thread
            on_stack[frame] += int(count)
    shares = [(frame, n / total) for frame, n in on_stack.most_common()] if total else []
    return Frames(role, total, shares)


def py_spy() -> str | None:
    """py-spy's executable: on PATH, or beside this interpreter (a virtual
    environment's, when it is not on PATH); None when it is not installed."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


@contextmanager
def recording(pids: dict[str, int], seconds: float, out: Path) -> Iterator[dict[str, Path]]:
    """py-spy recording each of ``pids`` (role -> pid) for ``seconds``;
    yields where each role's folded stacks go, complete once the block ends."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[dev]'")
    out.mkdir(parents=True, exist_ok=True)
    files = {role: out / f"{role}.folded" for role in pids}
    command = [spy, "record", "--rate", str(_RATE_HZ), "--duration", str(max(1, round(seconds))), "--format", "raw"]
    spies = [
        subprocess.Popen(
            [*command, "--pid", str(pid), "--output", str(files[role]), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for role, pid in pids.items()
    ]
    try:
        yield files
    finally:
        for spying in spies:
            spying.wait(timeout=seconds + 60)
