"""The ``t5electra`` command as a user runs it: a real ``serve`` process,
called by the ``generate`` and ``detect`` commands, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from t5electra.clients import Client
from t5electra.deployments.names import DETECTOR, INGRESS, TEXT_GENERATOR
from t5electra.tools.bench.processes import free_port

from support.served import Served, serving

pytestmark = pytest.mark.system


def t5electra(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "t5electra.tools.cli", *args], capture_output=True, text=True, env=env, **kwargs
    )


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """``t5electra serve`` in its own process (and its own Ray), on free
    ports, with its defaults (the embedded generator comes with them)."""
    with serving() as running:
        yield running


def test_serve_prints_where_it_listens_and_what_it_serves(served) -> None:
    address, output = served.address, "".join(served.output)
    assert f":{address.rsplit(':', 1)[1]} (gRPC" in output
    assert "tiny-t5 (float32 on cpu)" in output and "tiny-electra (float32 on cpu)" in output
    with Client(address) as client:
        assert client.health() == "SERVING"


def test_generate_command_streams_the_answer(served) -> None:
    address = served.address
    result = t5electra("generate", "reverse words: apple river stone", "--address", address)
    assert result.returncode == 0, result.stderr
    with Client(address) as client:
        assert result.stdout.strip() == client.generate("reverse words: apple river stone").text
    assert "[ended by the model, " in result.stderr and "EOS_TOKEN" not in result.stderr


def test_generate_command_lists_log_probabilities(served) -> None:
    address = served.address
    prompt = "reverse words: apple river stone"
    result = t5electra("generate", prompt, "--address", address, "--logprobs", "2", "--no-stream")
    assert result.returncode == 0, result.stderr
    text, *rows = result.stdout.splitlines()
    with Client(address) as client:
        expected = client.generate(prompt, logprobs=True, top_logprobs=2).sequences[0]
    assert text == expected.text
    assert [row.split()[1] for row in rows] == [t.token for t in expected.tokens]
    assert [float(row.split()[0]) for row in rows] == pytest.approx([t.logprob for t in expected.tokens], abs=1e-3)


def test_detect_command_words_suggestions_and_utf16_offsets(served) -> None:
    address = served.address
    text = "The callable 😀 is invoked with a single banana argument."
    result = t5electra(
        "detect", text, "--address", address, "--suggest", "3", "--offsets", "utf16", "--threshold", "0.4", "--json"
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["offset_unit"] == "UTF16_CODE_UNIT"
    encoded = text.encode("utf-16-le")
    for word in answer["words"]:
        assert encoded[2 * word["start"] : 2 * word["end"]].decode("utf-16-le") == word["text"]
    replaced = [w for w in answer["words"] if w["replaced"]]
    assert replaced and all(w["suggestions"] for w in replaced)
    shown = t5electra("detect", text, "--address", address, "--words", "--offsets", "utf16", "--threshold", "0.4")
    assert shown.returncode == 0, shown.stderr
    for span in answer["replaced_spans"]:
        assert f"[[{span['text']}]]" in shown.stdout.splitlines()[0]
    assert len(shown.stdout.splitlines()) == 1 + len(answer["words"])


def test_tokenize_and_models_commands(served) -> None:
    address = served.address
    tokenized = t5electra("tokenize", "reverse words: apple river", "--address", address, "--json")
    assert tokenized.returncode == 0, tokenized.stderr
    tokens = json.loads(tokenized.stdout)
    with Client(address) as client:
        assert tokens["count"] == client.generate("reverse words: apple river").input_tokens
    listed = t5electra("models", "--address", address)
    assert listed.returncode == 0, listed.stderr
    assert "T5: tiny-t5 (t5," in listed.stdout and "ELECTRA: tiny-electra (electra," in listed.stdout
    assert "suggestions from tiny-electra-generator" in listed.stdout


def test_generate_command_json_and_errors(served) -> None:
    address = served.address
    result = t5electra("generate", "sort numbers: 3 1 2", "--address", address, "--json", "--num-beams", "2")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["model"] == "tiny-t5" and answer["sequences"][0]["finish_reason"] in {"EOS_TOKEN", "LENGTH"}
    bad = t5electra("generate", "x", "--address", address, "--max-new-tokens", "0")
    assert bad.returncode == 1
    assert "INVALID_ARGUMENT: parameters.max_new_tokens" in bad.stderr


def test_detect_command(served) -> None:
    address = served.address
    text = "The callable is invoked with a single banana for each element."
    result = t5electra("detect", text, "--address", address, "--scores")
    assert result.returncode == 0, result.stderr
    first_line = result.stdout.splitlines()[0]
    assert first_line.replace("[[", "").replace("]]", "") == text
    assert "replaced:" in result.stderr
    as_json = json.loads(t5electra("detect", text, "--address", address, "--json").stdout)
    assert as_json["model"] == "tiny-electra" and as_json["tokens"]


def test_status_command_joins_the_servers_ray(served) -> None:
    """The Ray that ``t5electra serve`` started for itself, found by the
    address it printed; its token is found without RAY_AUTH_MODE."""
    gcs = next(line.split()[-1] for line in served.output if "Ray cluster:" in line)
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    result = t5electra("status", "--address", gcs, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 of 1 nodes alive" in result.stdout
    assert "application t5electra RUNNING (route prefix /t5electra)" in result.stdout
    for deployment in (INGRESS, TEXT_GENERATOR, DETECTOR):
        assert re.search(rf"{deployment}\s+HEALTHY\s+1/1 replicas running", result.stdout), result.stdout
    assert " on head " in result.stdout
    status = json.loads(t5electra("status", "--address", gcs, "--json", env=env, timeout=120).stdout)
    (app,) = status["applications"]
    assert {d["name"]: d["target_replicas"] for d in app["deployments"]} == {
        INGRESS: 1,
        TEXT_GENERATOR: 1,
        DETECTOR: 1,
    }


def test_cluster_commands_fail_fast_without_a_cluster() -> None:
    for command in ("status", "shutdown", "serve"):
        result = t5electra(command, "--address", f"127.0.0.1:{free_port()}", timeout=60)
        assert result.returncode == 2
        assert "error: no Ray cluster at 127.0.0.1:" in result.stderr


def test_sigterm_drains_and_exits_cleanly(served) -> None:
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=120) == 0, "".join(served.output)[-3000:]
    deadline = time.monotonic() + 10  # the reader thread takes the last lines
    while not any(line.startswith("stopped after") for line in served.output) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(line.startswith("stopped after") for line in served.output), "".join(served.output)[-3000:]
