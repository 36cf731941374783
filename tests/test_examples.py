"""Every example README.md and docs/api.md show, run against one server as
``t5electra serve`` starts it (default settings, embedded models), so that
an example cannot drift from what the server answers: the ``t5electra``
client commands (generate, detect, tokenize, models; loadtest for one
second instead of its documented thirty, with every request answered), the
``grpcurl`` calls (the real grpcurl, which the dev extra installs) and the
Python snippets that use the project's clients. Any error status fails it.

Out of its scope, and skipped by kind (the test checks it skipped those
kinds only): commands that install or test (``python3 -m venv``, ``pip``,
``pytest``), start a server (``t5electra serve``, already running here) or
need another environment (``grpc_health_probe``, a Go binary no package
registry here has; ``tritonclient``, covered by test_tritonclient.py in its
own environment)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import REPOSITORY
from support.served import Served, serving

pytestmark = pytest.mark.system

PAGES = ("README.md", "docs/api.md")
DOCUMENTED = "localhost:9000"
SKIPPED_KINDS = {"install or test", "serve", "grpc_health_probe", "tritonclient"}


@dataclass(frozen=True)
class Example:
    """A Python block (``code``) or one shell command (``words``)."""

    page: str
    line: int
    code: str = ""
    words: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {' '.join(self.words) or self.code.splitlines()[0]}"


def _commands(block: str) -> Iterator[tuple[str, ...]]:
    """The block's commands as a shell reads them: a line ends one unless a
    quote is still open (a JSON body over two lines) or it ends in a
    backslash; comments dropped."""
    pending = ""
    for line in block.replace("\\\n", " ").splitlines(keepends=True):
        pending += line
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        if words:
            yield tuple(words)
        pending = ""


def examples() -> list[Example]:
    """Each shell command and each Python block of the pages."""
    found = []
    for page in PAGES:
        text = (REPOSITORY / page).read_text()
        for block in re.finditer(r"```(sh|python)\n(.*?)```", text, re.S):
            line = text[: block.start()].count("\n") + 2
            if block.group(1) == "python":
                found.append(Example(page, line, code=block.group(2)))
            else:
                found += [Example(page, line, words=words) for words in _commands(block.group(2))]
    return found


def skipped_kind(example: Example) -> str | None:
    """Why ``example`` is out of scope, or None."""
    if example.code:
        return "tritonclient" if "triton" in example.code else None  # tritonclient imported as triton
    words = example.words
    if words[0] == "python3":  # python3 -m venv .venv && pip install ... (&& pytest)
        return "install or test"
    if words[:2] == ("t5electra", "serve"):
        return "serve"
    if words[0] == "grpc_health_probe":
        return "grpc_health_probe"
    return None


@pytest.fixture(scope="module")
def default_server() -> Iterator[Served]:
    """``t5electra serve`` with no flags but its port."""
    with serving() as running:
        yield running


def run_command(example: Example, address: str, workdir: Path) -> None:
    words = [address if word == DOCUMENTED else word for word in example.words]
    if words[0] == "grpcurl":
        # The dev extra installs it beside this interpreter, which may not be on PATH.
        grpcurl = shutil.which("grpcurl", path=os.pathsep.join((str(Path(sys.executable).parent), os.defpath)))
        assert grpcurl is not None, "no grpcurl beside the interpreter: install the dev extra"
        done = subprocess.run([grpcurl, *words[1:]], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{example}\n{done.stdout}{done.stderr}"
        return
    assert words[0] == "t5electra", f"no way to run {example}"
    report = workdir / "loadtest.json"
    if words[1] == "loadtest":
        duration = words.index("--duration")
        words[duration : duration + 2] = ["--duration", "1", "--warmup", "0.5", "--json", str(report)]
    command = [sys.executable, "-m", "t5electra.tools.cli", *words[1:], "--address", address]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{example}\n{done.stdout}{done.stderr}"
    if words[1] == "loadtest":
        figures = json.loads(report.read_text())
        assert figures["successes"] > 0 and not figures["errors"], (str(example), figures["errors"])


def run_python(example: Example, address: str) -> None:
    code = example.code.replace(f'"{DOCUMENTED}"', repr(address))
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, str(example), "exec"), {"__name__": "example"})


def test_every_documented_example_answers_without_an_error_status(default_server: Served, tmp_path: Path) -> None:
    address = default_server.address
    ran, skipped = [], set()
    for example in examples():
        if (kind := skipped_kind(example)) is not None:
            skipped.add(kind)
            continue
        if example.code:
            run_python(example, address)
        else:
            run_command(example, address, tmp_path)
        ran.append(example)
    assert skipped == SKIPPED_KINDS
    commands = {e.words[1] for e in ran if e.words[:1] == ("t5electra",)}
    assert commands == {"generate", "detect", "tokenize", "models", "loadtest"}, commands
    assert any(e.words[:1] == ("grpcurl",) for e in ran) and any(e.code for e in ran)
