"""What the mesh features cost, measured in one run on one machine:
tracing (off, on with every request sampled, off again) and the Open
Inference Protocol's ModelInfer against the native RPC for each model.

``python -m t5electra.tools.bench.overhead`` first times tracing's hooks
in this process, as the ingress and a T5 replica call them for one request
(CPU time per request, off and on, the export to a receiver included). Then
it starts ``t5electra serve`` with tracing off and on in turn (off, on, off,
on, off for two rounds) and loads each with the load tester at one
concurrency: a shared machine's speed drifts by tens of percent from one
minute to the next, so each figure is the median of its servers and the
spread of the "off" ones is printed beside the difference tracing makes.
With tracing on, the server exports to an OTLP receiver in a process of its
own, which counts what arrives. The first server also alternates the
native RPCs with ModelInfer, point by point.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from t5electra.deployments.replies import BatchTiming
from t5electra.deployments.tracing import OFF, Carrier, Tracing

from .checkpoints import ModelPair, small, tiny
from .otlp import counting_receiver, trace_receiver
from .points import closed_loop, load_point, served
from .processes import free_port

NATIVE_AND_INFER = (("generate", "model-infer-t5"), ("detect", "model-infer-electra"))


def _point(address: str, rpc: str, args: argparse.Namespace, say: Callable[[str], None], label: str) -> float:
    """Throughput (requests/s) of one load point."""
    params = {} if "electra" in rpc or rpc == "detect" else {"max_new_tokens": args.max_new_tokens}
    load = closed_loop(address, rpc, args.concurrency, args.duration, args.warmup, params=params)
    return load_point(load, say, label)["throughput_rps"] or 0.0


_CALLER = [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), ("x-request-id", "r1")]
_HOOK_REQUESTS = 1000
"""Fewer than the span processor's queue (2048) holds, so that no span is dropped."""


def _ingress_hooks(tracing: Tracing) -> Carrier | None:
    """The ingress's hooks for one Generate."""
    attributes = {"rpc.system": "grpc", "rpc.service": "t5electra.v1.TextGeneration", "rpc.method": "Generate"}
    with tracing.rpc("t5electra.v1.TextGeneration/Generate", _CALLER, attributes) as traced:
        with tracing.model_call(traced, "TextGenerator.generate") as carrier:
            pass
        Tracing.rpc_outcome(
            traced, grpc.StatusCode.OK, {"model": "m", "tokens_in": 7, "tokens_out": 16, "batch_size": 8}
        )
    return carrier


def _replica_hooks(tracing: Tracing, carrier: Carrier | None) -> None:
    """A T5 replica's hooks for the same request."""
    with tracing.replica("TextGenerator.generate", carrier) as span:
        span.queued()
        span.answered(BatchTiming(5.0, 80.0, 8, steps=16), "decode", {"steps": 16, "mean_rows": 8})


def hook_cost_us() -> dict[str, float]:
    """CPU microseconds per request of the ingress's and a replica's hooks,
    tracing off and on; "on" includes the export, which ``shutdown`` flushes
    inside the timed span, and the receiver's decoding (it runs in this
    process), so it is an upper bound."""

    def cpu_per_request(calls: Callable[[], object], tracing: Tracing) -> float:
        started = time.process_time()
        for _ in range(_HOOK_REQUESTS):
            calls()
        tracing.shutdown()
        return (time.process_time() - started) / _HOOK_REQUESTS * 1e6

    costs = {
        "ingress_off": cpu_per_request(lambda: _ingress_hooks(OFF), OFF),
        "replica_off": cpu_per_request(lambda: _replica_hooks(OFF, None), OFF),
    }
    with trace_receiver() as receiver:
        environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": "always_on"}
        saved = {key: os.environ.get(key) for key in environ}
        os.environ.update(environ)  # the exporter reads its configuration from the environment
        try:
            ingress, replica = Tracing.from_environment("Ingress"), Tracing.from_environment("TextGenerator")
            carrier = _ingress_hooks(ingress)
            costs["ingress_on"] = cpu_per_request(lambda: _ingress_hooks(ingress), ingress)
            costs["replica_on"] = cpu_per_request(lambda: _replica_hooks(replica, carrier), replica)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return costs


def run(args: argparse.Namespace, models: ModelPair, workdir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    hooks = hook_cost_us()
    say("tracing's hooks, CPU µs per request: " + ", ".join(f"{k} {v:.1f}" for k, v in hooks.items()))
    natives = [native for native, _ in NATIVE_AND_INFER]
    rates: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    protocols: dict[str, list[float]] = {}
    spans = 0
    phases = ["off", "on"] * args.rounds + ["off"]
    for index, phase in enumerate(phases):
        port = free_port()
        env = {}
        if phase == "on":
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_TRACES_SAMPLER": "always_on"}
        say(f"tracing {phase} ({index + 1} of {len(phases)})")
        with counting_receiver(port) as receiver:
            with served(models, args.threads, workdir, env=env, label=f"-{index}-{phase}") as (_, address):
                for rpc in natives:
                    rates[phase].setdefault(rpc, []).append(_point(address, rpc, args, say, phase))
                if index == 0:
                    # Native and ModelInfer alternate on one server, so that a
                    # drift of the machine's speed shows in both alike.
                    for _ in range(args.rounds):
                        for pair in NATIVE_AND_INFER:
                            for rpc in pair:
                                protocols.setdefault(rpc, []).append(_point(address, rpc, args, say, "protocols"))
            spans += receiver.spans  # the server's stop exported what it still held
    median = {phase: {rpc: statistics.median(r) for rpc, r in by_rpc.items()} for phase, by_rpc in rates.items()}
    protocol_median = {rpc: statistics.median(r) for rpc, r in protocols.items()}
    return {
        "models": models.size,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "hook_cpu_us_per_request": hooks,
        "rates_rps": rates,
        "protocol_rates_rps": protocols,
        "spans_received": spans,
        "tracing_on_vs_off": {rpc: median["on"][rpc] / median["off"][rpc] for rpc in natives},
        "off_spread": {rpc: (max(rates["off"][rpc]) - min(rates["off"][rpc])) / median["off"][rpc] for rpc in natives},
        "model_infer_vs_native": {
            infer: protocol_median[infer] / protocol_median[native] for native, infer in NATIVE_AND_INFER
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m t5electra.tools.bench.overhead",
        description="Tracing off / on (every request sampled) / off, and ModelInfer against the native RPC, "
        "each a closed loop at one concurrency against its own t5electra serve.",
    )
    parser.add_argument("--size", choices=["tiny", "small"], default="tiny", help="embedded (tiny) or small models")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per point (20)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="servers with tracing on (each bracketed by two off), and native/ModelInfer alternations (2)",
    )
    parser.add_argument("--workdir", type=Path, help="keep server logs (and small models) here")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="t5electra-overhead-"))
    workdir.mkdir(parents=True, exist_ok=True)
    models = tiny() if args.size == "tiny" else small(workdir)
    result = run(args, models, workdir, print)
    print(json.dumps({k: v for k, v in result.items() if "rates" not in k}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
