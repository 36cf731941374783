"""NVIDIA's tritonclient, unchanged, against the server's Open Inference
Protocol. tritonclient pins protobuf below 7 and ships its own generated
``inference`` module, so it runs in a virtual environment of its own
(installed from the package index once per session), never in the
server's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPOSITORY
from support.reference import PROMPTS, SENTENCES
from support.serving import ServerUnderTest

pytestmark = pytest.mark.system


@pytest.fixture(scope="session")
def triton_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("tritonclient") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "tritonclient[grpc]==2.73.*"],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return python


def test_a_triton_user_calls_both_models_unchanged(server: ServerUnderTest, triton_python: Path) -> None:
    prompts = list(PROMPTS[:2])
    with server.client() as client:
        expected = [client.generate(p, max_new_tokens=12) for p in prompts]
        detected = client.detect_replacements(SENTENCES[0])
    script = REPOSITORY / "tests" / "support" / "tritonclient_calls.py"
    done = subprocess.run(
        [str(triton_python), str(script), server.address, json.dumps(prompts), SENTENCES[0]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    assert seen["live"] and seen["ready"] and seen["t5_ready"] and seen["electra_inputs"] == ["text"]
    assert seen["t5_text"] == [g.text for g in expected]
    assert seen["t5_tokens"] == [g.sequences[0].generated_tokens for g in expected]
    assert seen["electra_scores"][0] == pytest.approx([t.score for t in detected.tokens], abs=1e-6)
    assert seen["unknown"] == ["StatusCode.NOT_FOUND", "Request for unknown model: 'gpt' is not found"]
