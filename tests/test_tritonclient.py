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
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(8)]
    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(8)]
    with server.client() as client:
        expected = [client.generate(p, max_new_tokens=12) for p in PROMPTS]
        detected = [client.detect_replacements(s, offset_unit="utf16_code_unit") for s in SENTENCES]
    script = REPOSITORY / "tests" / "support" / "tritonclient_calls.py"
    done = subprocess.run(
        [str(triton_python), str(script), server.address, json.dumps(prompts), json.dumps(sentences)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    assert seen["live"] and seen["ready"] and seen["t5_ready"] and seen["electra_inputs"] == ["text"]
    assert seen["t5_outputs"] == [["text", [-1, -1]], ["generated_tokens", [-1, -1]], ["finish_reason", [-1, -1]]]
    # Greedy answers equal Generate's, one text or eight.
    for count in (1, 8):
        assert seen[f"t5_shape_{count}"] == [count, 1]
        assert seen[f"t5_text_{count}"] == [expected[i % len(PROMPTS)].text for i in range(count)]
        assert seen[f"t5_tokens_{count}"] == [expected[i % len(PROMPTS)].output_tokens for i in range(count)]
    assert seen["t5_two_sequences_shape"] == [1, 2]
    assert "".join(seen["t5_streamed"]) == expected[0].text  # ModelStreamInfer, piece by piece
    for count in (1, 8):
        for row in range(count):
            tokens = detected[row % len(SENTENCES)].tokens
            assert seen[f"electra_count_{count}"][row] == len(tokens)
            assert seen[f"electra_scores_{count}"][row][: len(tokens)] == pytest.approx(
                [t.score for t in tokens], abs=1e-6
            )
            assert seen[f"electra_offsets_{count}"][row][: len(tokens)] == [[t.start, t.end] for t in tokens]
    refused = seen["refused"]
    assert refused["unknown_model"] == ["StatusCode.NOT_FOUND", "Request for unknown model: 'gpt' is not found"]
    for case in ("wrong_datatype", "wrong_shape", "unknown_parameter", "logprobs"):
        assert refused[case][0] == "StatusCode.INVALID_ARGUMENT" and refused[case][1], (case, refused[case])
    assert "expects 'BYTES'" in refused["wrong_datatype"][1]
    assert "unexpected shape" in refused["wrong_shape"][1]
    assert "parameters.beams" in refused["unknown_parameter"][1]
    assert "log-probabilities are not offered" in refused["logprobs"][1]
