"""The bench's figures for one model size and the ratios made from its
measured load points: how much of the engine's own speed serving keeps,
what batching and the scheduler gain, and the overhead a request pays on
its way through the server; and the targets they are judged by."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .checkpoints import ModelPair

REFERENCE_CONCURRENCY = 16
"""The concurrency at which served, plain and engine figures are compared."""
OVERLOAD_FACTOR = 2.0
"""The overload point's open-loop rate, in multiples of the closed-loop capacity."""
OVERLOAD_DEADLINE_S = 2.0
SCHEDULERS = ("continuous", "static")

# (ratio, rpc) -> (comparison, threshold): what the project aims for.
TARGETS: dict[tuple[str, str], tuple[str, float]] = {
    ("serving_efficiency", "generate"): (">=", 0.8),
    ("serving_efficiency", "detect"): (">=", 0.6),
    ("served_over_engine_b16", "generate"): (">=", 0.85),
    ("served_over_engine_b16", "detect"): (">=", 0.8),
    ("batching_gain", "generate"): (">=", 3.0),
    ("batching_gain", "detect"): (">=", 5.0),
    ("served_over_plain", "generate"): (">=", 3.0),
    ("served_over_plain", "detect"): (">=", 2.0),
    ("p50_overhead_ms", "generate"): ("<=", 3.0),
    ("p50_overhead_ms", "detect"): ("<=", 3.0),
    ("server_cpu_ms_outside_engine", "generate"): ("<=", 2.0),
    ("server_cpu_ms_outside_engine", "detect"): ("<=", 1.5),
    ("stream_over_unary", "generate-stream"): (">=", 0.9),
    ("overload_goodput", "generate"): (">=", 0.95),
    ("overload_refusal_p99_ms", "generate"): ("<=", 20.0),
    ("r1_continuous", "generate-stream"): (">=", 0.85),
    ("r2_continuous", "generate-stream"): ("<=", 0.25),
    ("continuous_over_static", "generate-stream"): (">=", 1.3),
    # The peers phase, keyed by precision instead of rpc.
    ("t5_over_ctranslate2_int8", "int8"): (">=", 1.0),
    ("electra_over_onnxruntime_int8", "int8"): (">=", 0.8),
    ("c1_p50_over_float32", "int8"): ("<=", 0.5),
    # The engines in-process against the peers (head_to_head.py).
    ("t5_int8_over_ctranslate2_int8_b16", "engines"): (">=", 1.0),
    ("t5_int8_over_ctranslate2_int8_b1", "engines"): (">=", 1.0),
    ("electra_int8_over_onnxruntime_int8_b16", "engines"): (">=", 1.0),
}


def _find(points: list[dict[str, Any]], rpc: str, key: str, value: int) -> dict[str, Any] | None:
    return next((p for p in points if p["rpc"] == rpc and p[key] == value), None)


def divide(numerator: float | None, denominator: float | None) -> float | None:
    """A ratio, or None when either side is missing or the denominator is
    zero: a ratio is never made up from a window that measured nothing."""
    return None if numerator is None or not denominator else numerator / denominator


def subtract(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _at(point: dict[str, Any] | None, *keys: str) -> float | None:
    """``point[k1][k2]...``, or None where the point or any level is missing."""
    value: Any = point
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _summed(values: dict[str, float] | None) -> float | None:
    return None if not values else sum(values.values())


def formed_batch(point: dict[str, Any] | None) -> int:
    """The batch size a served load point ran at, rounded to a whole request."""
    if point is None or "batch_size" not in point:
        return 1
    return max(1, round(point["batch_size"]["mean"]))


def ratios(result: SizeResult) -> dict[str, dict[str, float | None]]:
    """Per rpc: serving efficiency (served at the reference concurrency over
    the engine at the batch size that formed there, and over the engine at
    batch 16), batching gain (served at the reference concurrency over served
    at 1), served over plain at the reference concurrency, served p50 at
    concurrency 1 minus the engine's p50 at batch size 1, and the server's
    CPU milliseconds per request at the reference concurrency, in all and
    less the engine's own time per request at batch 16 (one thread)."""

    def rate(point: dict[str, Any] | None) -> float | None:
        return _at(point, "throughput_rps")

    out: dict[str, dict[str, float | None]] = {}
    for rpc in {p["rpc"] for p in result.served}:
        served_ref = _find(result.served, rpc, "concurrency", REFERENCE_CONCURRENCY)
        served_one = _find(result.served, rpc, "concurrency", 1)
        engine_ref = _find(result.engine, rpc, "batch_size", formed_batch(served_ref))
        engine_one = _find(result.engine, rpc, "batch_size", 1)
        plain_ref = _find(result.plain, rpc, "concurrency", REFERENCE_CONCURRENCY)
        overhead = subtract(_at(served_one, "latency_ms", "p50"), _at(engine_one, "latency_ms", "p50"))
        engine_b16 = _find(result.engine, rpc, "batch_size", REFERENCE_CONCURRENCY)
        server_ms = _summed(_at(served_ref, "cpu_ms_per_request"))
        out[rpc] = {
            **_cross_rpc(result, rpc),
            "serving_efficiency": divide(rate(served_ref), rate(engine_ref)),
            "served_over_engine_b16": divide(rate(served_ref), rate(engine_b16)),
            "batching_gain": divide(rate(served_ref), rate(served_one)),
            "served_over_plain": divide(rate(served_ref), rate(plain_ref)),
            "p50_overhead_ms": overhead,
            "server_cpu_ms": server_ms,
            "server_cpu_ms_outside_engine": subtract(server_ms, divide(1000.0, rate(engine_b16))),
        }
    return out


def _cross_rpc(result: SizeResult, rpc: str) -> dict[str, float | None]:
    """What compares ``rpc`` with other phases: a stream's tokens/s over
    Generate's at the reference concurrency; Generate's overload point
    (answered in time ÷ capacity, and the p99 time to a refusal)."""
    if rpc == "generate-stream":
        unary = _find(result.served, "generate", "concurrency", REFERENCE_CONCURRENCY)
        stream = _find(result.served, rpc, "concurrency", REFERENCE_CONCURRENCY)
        return {"stream_over_unary": divide(_at(stream, "tokens_per_s"), _at(unary, "tokens_per_s"))}
    if rpc == "generate" and result.overload:
        return {
            "overload_goodput": divide(_at(result.overload, "goodput_rps"), result.overload["capacity_rps"]),
            "overload_refusal_p99_ms": _at(result.overload, "refusal_ms", "p99"),
        }
    return {}


def scheduling_ratios(mixed: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """R1 (mixed tokens/s over all-LONG tokens/s), R2 (first piece p50 under
    the mixed load over the p50 latency of its LONG requests) per scheduler,
    and continuous over static tokens/s at mixed lengths."""
    out: dict[str, float | None] = {}
    for scheduler, phase in mixed.items():
        groups = phase["mixed"].get("groups") or [None, None]
        long = _at(groups[1], "latency_ms", "p50")
        out[f"r1_{scheduler}"] = divide(_at(phase, "mixed", "tokens_per_s"), _at(phase, "all_long", "tokens_per_s"))
        out[f"r2_{scheduler}"] = divide(_at(phase, "mixed", "ttft_ms", "p50"), long)
    if set(SCHEDULERS) <= mixed.keys():
        out["continuous_over_static"] = divide(
            _at(mixed["continuous"], "mixed", "tokens_per_s"), _at(mixed["static"], "mixed", "tokens_per_s")
        )
    return out


@dataclass
class SizeResult:
    """Every phase's load points for one model size, filled in as the
    phases run; the ratios are made when it is written out."""

    models: ModelPair
    startup_s: float = 0.0
    served: list[dict[str, Any]] = field(default_factory=list)
    plain: list[dict[str, Any]] = field(default_factory=list)
    engine: list[dict[str, Any]] = field(default_factory=list)
    mixed: dict[str, dict[str, Any]] = field(default_factory=dict)
    overload: dict[str, Any] = field(default_factory=dict)
    peers: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.models.size,
            "models": asdict(self.models),
            "served_startup_s": round(self.startup_s, 1),
            "served": self.served,
            "plain": self.plain,
            "engine": self.engine,
            "mixed": self.mixed,
            "overload": self.overload,
            "ratios": ratios(self),
            "scheduling": scheduling_ratios(self.mixed),
            "peers": self.peers,
        }
