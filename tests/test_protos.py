"""The wire contract lints and only grows: ``buf lint`` with the exceptions
``protos/buf.yaml`` records, and ``buf breaking`` against the protos of the
0.1 release, taken from the repository's history."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from support import REPOSITORY

pytestmark = pytest.mark.unit

PROTOS = REPOSITORY / "protos"
RELEASE_0_1 = "1d54c16^"
"""The last commit before words, suggestions, log-probabilities and the
Models service: the protos tests/compat/stubs_0_1 were generated from."""


def buf(*args: str, cwd: Path = PROTOS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")
    assert binary, "the Buf CLI comes with the dev extra (buf-bin)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def release_0_1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", RELEASE_0_1, "protos"], capture_output=True, check=True
    )
    out = tmp_path_factory.mktemp("release-0.1")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(out, filter="data")
    return out / "protos"


def test_buf_lint_is_clean() -> None:
    result = buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_protos_only_grew_since_the_0_1_release(release_0_1: Path) -> None:
    assert (release_0_1 / "t5electra" / "v1" / "generation.proto").exists()
    result = buf("breaking", ".", "--against", str(release_0_1))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_renumbered_field_would_be_caught(release_0_1: Path, tmp_path: Path) -> None:
    changed = tmp_path / "protos"
    shutil.copytree(PROTOS, changed)
    proto = changed / "t5electra" / "v1" / "generation.proto"
    proto.write_text(proto.read_text().replace("string text = 1;", "string text = 99;", 1))
    result = buf("breaking", ".", "--against", str(release_0_1), cwd=changed)
    assert result.returncode != 0 and "text" in result.stdout
