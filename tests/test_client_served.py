"""The async client, the load tester and the Locust user against the
session's real Serve application."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from t5electra.clients import AsyncClient
from t5electra.tools.load.report import write_json
from t5electra.tools.load.run import run_load
from t5electra.tools.load.workload import LoadConfig

pytestmark = pytest.mark.serve


def test_async_client_against_the_server(server) -> None:
    async def calls() -> tuple:
        async with AsyncClient(server.address) as client:
            generation = await client.generate("reverse words: apple river stone")
            stream = client.generate_stream("reverse words: apple river stone")
            pieces = [piece async for piece in stream]
            detection = await client.detect_replacements("Return the value of the attribute.")
            inferred = await client.model_infer("t5", ["reverse words: apple river stone"], max_new_tokens=16)
            return generation, pieces, stream.end, detection, inferred, await client.health()

    generation, pieces, end, detection, inferred, health = asyncio.run(calls())
    assert "".join(pieces) == generation.text == end.text == inferred.texts("text")[0]
    assert inferred.outputs["text"][:2] == ("BYTES", (1, 1)) and inferred.metadata["model"]
    assert detection.tokens and health == "SERVING"


@pytest.mark.parametrize("rpc", ["generate", "generate-stream", "detect", "model-infer-t5", "model-infer-electra"])
def test_loadtest_figures_are_consistent(server, tmp_path: Path, rpc: str) -> None:
    config = LoadConfig(server.address, rpc=rpc, concurrency=2, duration=3.0, warmup=0.5)
    report = asyncio.run(run_load(config, progress=False))
    write_json(report, tmp_path / "load.json")
    figures = json.loads((tmp_path / "load.json").read_text())
    assert figures["requests"] == figures["successes"] + sum(figures["errors"].values()) > 0
    latency = figures["latency_ms"]
    assert latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert figures["throughput_rps"] > 0 and figures["successes"] > 0
    if rpc == "generate-stream":
        ttft = figures["ttft_ms"]
        assert 0 < ttft["p50"] <= ttft["p99"] <= latency["max"]
    report.plot(tmp_path / "load.png")
    assert (tmp_path / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "throughput" in report.table()


def test_loadtest_open_loop_with_request_count(server) -> None:
    # No warm-up: a request claimed just before its end would be sent (and
    # measured) just after it, uncounted by the request count.
    config = LoadConfig(server.address, rpc="detect", rate=20, duration=None, requests=15, warmup=0.0)
    figures = asyncio.run(run_load(config, progress=False)).to_json()
    assert figures["mode"] == "open"
    assert figures["requests"] + figures["unfinished"] == 15


# Runs the documented user unchanged and stops the run once every RPC has
# been reported, so a slow machine makes the run longer, never emptier.
_UNTIL_EVERY_RPC = """
import gevent
from locust import events

from t5electra.tools.load.locust_user import T5ElectraUser  # noqa: F401 - the user Locust runs

WANTED = {"Generate", "GenerateStream", "DetectReplacements"}
seen = set()


@events.init.add_listener
def _watch(environment, **_):
    @environment.events.request.add_listener
    def _reported(name, **__):
        seen.add(name)
        if WANTED <= seen and environment.runner is not None:
            gevent.spawn(environment.runner.quit)
"""


def test_locust_user_reports_every_rpc(server, tmp_path: Path) -> None:
    """Runs the documented Locust user headless until it has reported every
    RPC (at most two minutes). The locustfile is run, not imported: importing
    locust here would monkeypatch this process (Ray and asyncio included)
    with gevent."""
    locustfile = tmp_path / "until_every_rpc.py"
    locustfile.write_text(_UNTIL_EVERY_RPC)
    command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", "2", "-r", "2", "-t", "120s"]
    command += ["--host", server.address, "--json-file", str(tmp_path / "stats"), "--only-summary"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads((tmp_path / "stats.json").read_text())}
    assert {"Generate", "GenerateStream", "DetectReplacements"} <= set(rows), result.stderr[-2000:]
    assert all(row["num_requests"] > 0 and row["num_failures"] == 0 for row in rows.values())
