"""The benchmark machinery, run for a few seconds on the tiny checkpoints
through its command line: the JSON's structure and internal consistency.
Figures are never asserted; they depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from t5electra.tools.bench.figures import OVERLOAD_FACTOR, REFERENCE_CONCURRENCY

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable,
        "-m",
        "t5electra.tools.cli",
        "bench",
        "--quick",
        "--rpcs",
        "detect,generate,generate-stream",
        "--duration",
        "1",
        "--max-new-tokens",
        "8",
        "--json",
        str(out / "bench.json"),
        "--plot",
        str(out / "bench.png"),
        "--markdown",
        str(out / "bench.md"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), done.stdout, out / "bench.png"


def test_every_phase_measured_every_point(bench: tuple[dict, str, Path]) -> None:
    figures, _, _ = bench
    assert set(figures["machine"]["versions"]) >= {"torch", "transformers", "ray", "grpcio"}
    assert figures["machine"]["cpu_count"] >= 1
    (size,) = figures["sizes"]
    assert size["size"] == "tiny" and size["served_startup_s"] > 0
    for system in ("served", "plain"):
        assert {(p["rpc"], p["concurrency"]) for p in size[system]} == {
            (rpc, c) for rpc in ("detect", "generate", "generate-stream") for c in (1, REFERENCE_CONCURRENCY)
        }
    assert all("batch_size" in p for p in size["served"]), "every served point knows its batch size"
    formed = {(p["rpc"], max(1, round(p["batch_size"]["mean"]))) for p in size["served"]}
    engine = {(p["rpc"], p["batch_size"]) for p in size["engine"]}
    assert formed <= engine and {("detect", 1), ("generate-stream", 1)} <= engine


def test_load_points_are_internally_consistent(bench: tuple[dict, str, Path]) -> None:
    figures, _, _ = bench
    (size,) = figures["sizes"]
    for point in size["served"] + size["plain"]:
        assert point["requests"] == point["successes"] + sum(point["errors"].values())
        assert point["requests"] > 0 and point["throughput_rps"] > 0
        latency = point["latency_ms"]
        assert latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        if point["rpc"] == "generate-stream":
            assert point["ttft_ms"]["p50"] <= latency["p50"]
            assert point["tokens_per_s"] > 0
    for point in size["engine"]:
        assert point["requests"] % point["batch_size"] == 0
        assert point["latency_ms"]["p50"] <= point["latency_ms"]["p99"]


def test_ratios_follow_from_the_points(bench: tuple[dict, str, Path]) -> None:
    figures, _, _ = bench
    (size,) = figures["sizes"]

    def served(rpc: str, concurrency: int) -> dict:
        return next(p for p in size["served"] if p["rpc"] == rpc and p["concurrency"] == concurrency)

    for rpc, ratios in size["ratios"].items():
        reference = served(rpc, REFERENCE_CONCURRENCY)
        plain = next(p for p in size["plain"] if p["rpc"] == rpc and p["concurrency"] == REFERENCE_CONCURRENCY)
        assert ratios["batching_gain"] == pytest.approx(reference["throughput_rps"] / served(rpc, 1)["throughput_rps"])
        assert ratios["served_over_plain"] == pytest.approx(reference["throughput_rps"] / plain["throughput_rps"])
        assert ratios["serving_efficiency"] > 0
        b16 = next(p for p in size["engine"] if p["rpc"] == rpc and p["batch_size"] == REFERENCE_CONCURRENCY)
        assert ratios["served_over_engine_b16"] == pytest.approx(reference["throughput_rps"] / b16["throughput_rps"])
        cpu = reference["cpu_ms_per_request"]
        assert ratios["server_cpu_ms"] == pytest.approx(sum(cpu.values()))
        assert ratios["server_cpu_ms_outside_engine"] == pytest.approx(
            ratios["server_cpu_ms"] - 1000 / b16["throughput_rps"]
        )


def test_a_stream_and_the_overload_point_are_judged_against_generate(bench: tuple[dict, str, Path]) -> None:
    figures, stdout, _ = bench
    (size,) = figures["sizes"]
    generate, stream = (
        next(p for p in size["served"] if p["rpc"] == rpc and p["concurrency"] == REFERENCE_CONCURRENCY)
        for rpc in ("generate", "generate-stream")
    )
    assert size["ratios"]["generate-stream"]["stream_over_unary"] == pytest.approx(
        stream["tokens_per_s"] / generate["tokens_per_s"]
    )
    overload = size["overload"]
    assert overload["capacity_rps"] == generate["throughput_rps"]
    assert overload["mode"] == "open" and overload["plain"]
    assert overload["rate"] == pytest.approx(OVERLOAD_FACTOR * generate["throughput_rps"])
    assert overload["requests"] == overload["successes"] + sum(overload["errors"].values())
    assert set(overload["errors"]) <= {"RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}, "overload is refused, never failed"
    ratios = size["ratios"]["generate"]
    assert ratios["overload_goodput"] == pytest.approx(overload["goodput_rps"] / generate["throughput_rps"])
    assert ratios["overload_refusal_p99_ms"] == overload["refusal_ms"]["p99"]
    assert "overload_goodput" in stdout and "stream_over_unary" in stdout


def test_the_servers_cpu_is_accounted_to_its_processes(bench: tuple[dict, str, Path]) -> None:
    """Every served point carries CPU ms per request by process; the ones a
    request crosses spent some, and the table shows them."""
    figures, stdout, plot = bench
    (size,) = figures["sizes"]
    model = {"detect": "electra replica", "generate": "t5 replica", "generate-stream": "t5 replica"}
    for point in size["served"]:
        spent = {role for role, ms in point["cpu_ms_per_request"].items() if ms > 0}
        assert {"proxy", "ingress", model[point["rpc"]]} <= spent, point["cpu_ms_per_request"]
    assert f"server CPU ms per request at c={REFERENCE_CONCURRENCY}" in stdout
    assert "Server CPU milliseconds per request" in (plot.parent / "bench.md").read_text()


def test_table_plot_and_markdown_are_written(bench: tuple[dict, str, Path]) -> None:
    figures, stdout, plot = bench
    assert "ratios:" in stdout and "serving_efficiency" in stdout and "machine:" in stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (plot.parent / "bench.md").read_text()
    assert table.startswith("Measured with `t5electra bench --quick")
    rows = [line for line in table.splitlines() if line.startswith("| detect | served |")]
    assert len(rows) == len([p for p in figures["sizes"][0]["served"] if p["rpc"] == "detect"])


def test_mixed_lengths_compare_the_schedulers(bench: tuple[dict, str, Path]) -> None:
    figures, stdout, _ = bench
    (size,) = figures["sizes"]
    assert set(size["mixed"]) == {"continuous", "static"}
    for scheduler, phase in size["mixed"].items():
        short, long = phase["mixed"]["groups"]
        assert short["params"] == {"max_new_tokens": 4, "min_new_tokens": 4}
        assert long["params"] == {"max_new_tokens": 48, "min_new_tokens": 48}
        assert short["successes"] > 0 and long["successes"] > 0, (scheduler, phase["mixed"]["errors"])
        assert phase["all_long"]["tokens_per_s"] > 0 and phase["replica_peak_rss_mb"] > 100
        ratios = size["scheduling"]
        assert ratios[f"r1_{scheduler}"] == pytest.approx(
            phase["mixed"]["tokens_per_s"] / phase["all_long"]["tokens_per_s"]
        )
        assert ratios[f"r2_{scheduler}"] == pytest.approx(phase["mixed"]["ttft_ms"]["p50"] / long["latency_ms"]["p50"])
    assert size["scheduling"]["continuous_over_static"] > 0
    assert "mixed lengths" in stdout and "mean ms per hop" in stdout


def test_unary_points_break_latency_down_by_hop(bench: tuple[dict, str, Path]) -> None:
    figures, _, _ = bench
    (size,) = figures["sizes"]
    detect = next(p for p in size["served"] if p["rpc"] == "detect" and p["concurrency"] == 1)
    hops = detect["hops_ms"]
    assert set(hops) == {"proxy", "ingress", "model call", "replica", "queue", "engine"}
    assert hops["engine"] > 0 and hops["proxy"] > 0
    assert sum(hops.values()) == pytest.approx(detect["latency_ms"]["mean"], rel=0.01)
