"""``python -m t5electra.tools.bench.refusals``: the two ways T5 admission
refuses a request, as a plain grpcio client sees them (code, details,
trailers, time to the answer), against a fresh ``t5electra serve`` with its
defaults. A request whose own least work cannot fit its deadline is
DEADLINE_EXCEEDED at once, with no pushback; one that would fit on an idle
replica but not behind a full batch is RESOURCE_EXHAUSTED, with a pushback
of about the wait, which is printed beside it. docs/operations.md quotes a
run; the served tests pin the kinds of answer, not these times."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import grpc

from t5electra.deployments.settings import Settings
from t5electra.protocol.v1 import generation_pb2, generation_pb2_grpc

from .processes import SERVE_READY, free_port, started_process

LONG_PROMPT = "reverse words: " + "apple river stone " * 20


def _forced(text: str, tokens: int) -> generation_pb2.GenerateRequest:
    parameters = generation_pb2.GenerationParameters(min_new_tokens=tokens, max_new_tokens=tokens)
    return generation_pb2.GenerateRequest(text=text, parameters=parameters)


def _show(
    label: str, call: grpc.UnaryUnaryMultiCallable, request: generation_pb2.GenerateRequest, timeout: float
) -> None:
    started = time.perf_counter()
    try:
        call(request, timeout=timeout)
        print(f"{label}: OK after {(time.perf_counter() - started) * 1000:.1f} ms")
    except grpc.RpcError as error:
        print(f"{label}: {error.code().name} after {(time.perf_counter() - started) * 1000:.1f} ms")
        print(f"  details:  {error.details()}")
        print(f"  trailers: {dict(error.trailing_metadata() or ())}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadline-ms", type=float, default=150, help="the idle case's deadline (150)")
    parser.add_argument("--queued-deadline-ms", type=float, default=300, help="the queued case's deadline (300)")
    args = parser.parse_args(argv)
    port = free_port()
    env = {
        "T5ELECTRA_PORT": str(port),
        "T5ELECTRA_HTTP_PORT": str(free_port()),
        "T5ELECTRA_METRICS_PORT": str(free_port()),
    }
    log = Path(tempfile.mkdtemp(prefix="t5electra-refusals-")) / "serve.log"
    serve = [sys.executable, "-m", "t5electra.tools.cli", "serve"]
    with (
        started_process("t5electra serve", serve, SERVE_READY, log, env),
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        generate = generation_pb2_grpc.TextGenerationStub(channel).Generate
        print(f"== idle server: 512 forced tokens, {args.deadline_ms:.0f} ms deadline (the first call times a step)")
        for attempt in range(1, 5):
            _show(f"call {attempt}", generate, _forced(LONG_PROMPT, 512), args.deadline_ms / 1000)
        print(f"== every row busy with 512 forced tokens: 8 tokens, {args.queued_deadline_ms:.0f} ms deadline")
        rows = Settings.load().t5.max_batch_size
        busy = [generate.future(_forced("reverse words: apple river stone", 512), timeout=300) for _ in range(rows)]
        time.sleep(1.0)  # spacing only: the batch forms; the refusal below says where it stands
        refused = time.perf_counter()
        _show("queued", generate, _forced("reverse words: apple river", 8), args.queued_deadline_ms / 1000)
        for call in busy:
            call.result()
        print(f"  the batch ended {(time.perf_counter() - refused) * 1000:.0f} ms after the refusal (the wait)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
