"""The wire contract lints and only grows: ``buf lint`` with the exceptions
``protos/buf.yaml`` records, and ``buf breaking`` against the protos of the
0.1 release.

Those protos are committed in ``tests/compat/protos_0_1`` (the ``protos/``
folder of 0.1, byte for byte, in the same layout; 0.1 had no buf.yaml) rather
than read from git history: a shallow clone, what most CI systems check out,
lacks the 0.1 commit, and the test needs no ``git`` at all."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPOSITORY

pytestmark = pytest.mark.unit

PROTOS = REPOSITORY / "protos"
RELEASE_0_1 = REPOSITORY / "tests" / "compat" / "protos_0_1"
"""The protos of the last commit before words, suggestions, log-probabilities
and the Models service (``git archive 1d54c16^ protos``): the ones
tests/compat/stubs_0_1 were generated from."""


def buf(*args: str, cwd: Path = PROTOS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    assert binary, "the Buf CLI comes with the dev extra (buf-bin)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_buf_lint_is_clean() -> None:
    result = buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_protos_only_grew_since_the_0_1_release() -> None:
    assert (RELEASE_0_1 / "t5electra" / "v1" / "generation.proto").exists()
    result = buf("breaking", ".", "--against", str(RELEASE_0_1))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_renumbered_field_would_be_caught(tmp_path: Path) -> None:
    changed = tmp_path / "protos"
    shutil.copytree(PROTOS, changed)
    proto = changed / "t5electra" / "v1" / "generation.proto"
    proto.write_text(proto.read_text().replace("string text = 1;", "string text = 99;", 1))
    result = buf("breaking", ".", "--against", str(RELEASE_0_1), cwd=changed)
    assert result.returncode != 0 and "text" in result.stdout
