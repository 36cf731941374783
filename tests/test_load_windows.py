"""Measured windows that could come back empty: the load tester keeps a
window open until it has measured something (or says it was cut), and the
bench's ratios and tables show a missing figure as missing instead of
dividing by zero."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from t5electra.protocol.v1 import generation_pb2, generation_pb2_grpc
from t5electra.tools.bench import report
from t5electra.tools.bench.figures import scheduling_ratios
from t5electra.tools.load.report import MISSING, LoadReport, Sample
from t5electra.tools.load.run import run_load
from t5electra.tools.load.workload import LoadConfig

pytestmark = pytest.mark.unit


class SlowFirstGeneration(generation_pb2_grpc.TextGenerationServicer):
    """Takes ``first_delay`` seconds for each of the first ``slow_calls``
    calls and ``delay`` for the rest: a server that is slow while the load
    tester warms up, as a busy machine is. The first ``failing_calls`` calls
    fail at once instead (UNAVAILABLE), as a server still warming up might;
    a call asking for ``failing_tokens`` new tokens always does."""

    def __init__(
        self,
        slow_calls: int,
        first_delay: float,
        delay: float = 0.0,
        failing_calls: int = 0,
        failing_tokens: int | None = None,
    ) -> None:
        self.slow_calls, self.first_delay, self.delay = slow_calls, first_delay, delay
        self.failing_calls, self.failing_tokens = failing_calls, failing_tokens
        self.calls = 0
        self.seen: list[tuple[dict[str, str], float | None]] = []  # each call's metadata and time left
        self._lock = threading.Lock()

    def Generate(self, request, context):
        with self._lock:
            self.seen.append((dict(context.invocation_metadata()), context.time_remaining()))
            self.calls += 1
            slow = self.calls <= self.slow_calls
            failing = self.calls <= self.failing_calls
        if failing or request.parameters.max_new_tokens == self.failing_tokens:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        time.sleep(self.first_delay if slow else self.delay)
        return generation_pb2.GenerateResponse(
            sequences=[generation_pb2.GeneratedSequence(text="ok", generated_tokens=1)],
            usage=generation_pb2.Usage(input_tokens=1, output_tokens=1),
        )


@pytest.fixture
def serving() -> Iterator[Callable[[SlowFirstGeneration], str]]:
    servers: list[grpc.Server] = []

    def start(servicer: SlowFirstGeneration) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(8))
        generation_pb2_grpc.add_TextGenerationServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def test_a_window_outlasted_by_the_warm_up_requests_still_measures_one_per_caller(serving) -> None:
    # Every warm-up request ends after the nominal window (0.1 s + 0.1 s):
    # with a fixed window nothing sent after the warm-up would complete.
    address = serving(SlowFirstGeneration(slow_calls=4, first_delay=0.5))
    # The cap (100 s) is only a safety net here: a hang reaches it, a slow machine does not.
    config = LoadConfig(
        address, rpc="generate", concurrency=4, duration=0.1, warmup=0.1, timeout=10, max_window_factor=1000
    )
    figures = asyncio.run(run_load(config, progress=False)).to_json()
    assert figures["requests"] >= 4 and figures["successes"] == figures["requests"]
    assert figures["window_capped"] is False
    assert figures["throughput_rps"] > 0 and figures["latency_ms"]["p50"] is not None


def test_a_window_that_reaches_its_cap_says_so_and_makes_up_no_figure(serving) -> None:
    # Both callers send their first request within the second of warm-up
    # (at once, unless the machine stalls for a second); it returns after
    # the cap (1.04 s), so nothing sent after the warm-up ever completes.
    address = serving(SlowFirstGeneration(slow_calls=2, first_delay=3.0))
    config = LoadConfig(
        address, rpc="generate", concurrency=2, duration=0.02, warmup=1.0, timeout=10, max_window_factor=2
    )
    result = asyncio.run(run_load(config, progress=False))
    figures = result.to_json()
    assert figures["window_capped"] is True and figures["requests"] == 0
    assert figures["throughput_rps"] is None and figures["tokens_per_s"] is None
    assert set(figures["latency_ms"].values()) == {None}
    table = result.table()
    assert "window cut at 2x the duration" in table and f"throughput    {MISSING:>8} req/s" in table


def test_failures_do_not_close_a_window_before_each_group_has_succeeded(serving) -> None:
    """A burst of failures (a server warming up) completes fast: counted as
    completions, it ended the window on failures alone and a mixed load
    reported no success for a group. Only successes close the window."""
    address = serving(SlowFirstGeneration(slow_calls=0, first_delay=0.0, delay=0.01, failing_calls=200))
    mix = ({"max_new_tokens": 4}, {"max_new_tokens": 48})
    config = LoadConfig(
        address, rpc="generate", concurrency=4, duration=0.05, warmup=0.05, timeout=10, mix=mix, max_window_factor=2000
    )
    figures = asyncio.run(run_load(config, progress=False)).to_json()
    assert figures["window_capped"] is False and figures["errors"]["UNAVAILABLE"] > 0
    assert all(group["successes"] > 0 for group in figures["groups"]), figures["groups"]


def test_a_group_that_only_fails_keeps_the_window_open_until_its_cap_and_says_why(serving) -> None:
    address = serving(SlowFirstGeneration(slow_calls=0, first_delay=0.0, delay=0.01, failing_tokens=48))
    mix = ({"max_new_tokens": 4}, {"max_new_tokens": 48})
    config = LoadConfig(
        address, rpc="generate", concurrency=2, duration=0.05, warmup=0.05, timeout=10, mix=mix, max_window_factor=40
    )
    result = asyncio.run(run_load(config, progress=False))
    figures = result.to_json()
    assert figures["window_capped"] is True
    assert [group["successes"] > 0 for group in figures["groups"]] == [True, False]
    assert "error UNAVAILABLE" in result.table()


def _empty_point(rpc: str, mix: tuple[dict, ...] = ()) -> dict:
    return LoadReport(LoadConfig("127.0.0.1:1", rpc=rpc, concurrency=16, mix=mix), [], 0.0, capped=True).to_json()


def _bench_with_an_empty_long_phase() -> dict:
    mix = ({"max_new_tokens": 4, "min_new_tokens": 4}, {"max_new_tokens": 48, "min_new_tokens": 48})
    empty_phase = {"mixed": _empty_point("generate-stream", mix), "all_long": _empty_point("generate-stream")}
    mixed = {"continuous": empty_phase, "static": empty_phase}
    served = [_empty_point("detect") | {"concurrency": c} for c in (1, 16)]
    return {
        "machine": {"cpu": "test", "cpu_count": 2, "gpu": None, "versions": {"torch": "x"}},
        "config": {"rpcs": ["detect"], "max_new_tokens": 8, "torch_threads": 1},
        "sizes": [
            {
                "size": "tiny",
                "models": {"weights": "embedded"},
                "served_startup_s": 1.0,
                "served": served,
                "plain": [],
                "engine": [],
                "mixed": mixed,
                "ratios": {"detect": {"batching_gain": None}},
                "scheduling": scheduling_ratios(mixed),
            }
        ],
    }


def test_scheduling_ratios_of_an_empty_phase_are_missing_not_a_crash() -> None:
    bench = _bench_with_an_empty_long_phase()
    assert bench["sizes"][0]["scheduling"] == {
        "r1_continuous": None,
        "r2_continuous": None,
        "r1_static": None,
        "r2_static": None,
        "continuous_over_static": None,
    }


def test_the_report_prints_missing_figures_as_a_dash(tmp_path: Path) -> None:
    bench = _bench_with_an_empty_long_phase()
    text = report.table(bench)
    assert f"r1_continuous{'':<11}{MISSING:>8}" in text
    rows = report.mixed_rows(bench["sizes"][0])
    assert rows[0][0] == "continuous" and set(rows[0][1:]) == {MISSING}
    markdown = report.markdown(bench, "t5electra bench --quick")
    assert f"| generate-stream | r1_continuous | {MISSING} |" in markdown
    report.plot(bench, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_a_plain_load_sends_the_grpc_deadline_and_none_of_the_projects_metadata(serving) -> None:
    servicer = SlowFirstGeneration(slow_calls=0, first_delay=0.0)
    address = serving(servicer)
    for plain in (True, False):
        servicer.seen.clear()
        config = LoadConfig(
            address, rpc="generate", concurrency=1, duration=None, requests=2, warmup=0, timeout=5, plain=plain
        )
        assert asyncio.run(run_load(config, progress=False)).to_json()["successes"] == 2
        metadata, left = servicer.seen[-1]
        assert left is not None and 0 < left < 6  # the 5 s timeout, as gRPC carries it
        assert ("x-request-id" in metadata, "x-request-timeout-ms" in metadata) == (not plain, not plain)


def test_rates_count_what_completed_in_the_window_whenever_it_was_sent() -> None:
    """Two callers, a window from 1 s to 3 s: the request sent in the warm-up
    that completed at 1.5 s counts toward the rates (not the latencies);
    the one that completed after sending stopped does not."""
    config = LoadConfig("127.0.0.1:1", rpc="generate", concurrency=2, rate=2.0, duration=2, warmup=1)
    warm = Sample(0.5, 1.5, "OK", tokens_out=3)
    measured = [
        Sample(1.2, 2.0, "OK", tokens_out=3),
        Sample(1.6, 2.2, "RESOURCE_EXHAUSTED"),
        Sample(2.5, 3.5, "OK", tokens_out=3),
    ]
    counted = [warm, *measured[:2]]
    figures = LoadReport(config, measured, 2.0, counted=counted).to_json()
    assert figures["requests"] == 3 and figures["successes"] == 2
    assert figures["throughput_rps"] == 1.5 and figures["goodput_rps"] == 1.0 and figures["tokens_per_s"] == 3.0
    assert figures["goodput_of_rate"] == 0.5
    assert figures["refusal_ms"]["max"] == pytest.approx(600)
