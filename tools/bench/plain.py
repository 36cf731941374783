"""The plain alternative: what a team writes without a model server. One
grpcio process with a thread pool, each RPC calling the engine for its own
request, no batching, no Ray. It serves the same protos as the product so the
same load tester drives both. Benchmark code, not part of the product.

Run: ``python -m t5electra.tools.bench.plain --t5 PATH --electra PATH --port N``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import TypeVar

import grpc

from t5electra.deployments import wire
from t5electra.deployments.replies import BatchTiming, Reply, Usage
from t5electra.protocol.v1 import detection_pb2, detection_pb2_grpc, generation_pb2, generation_pb2_grpc
from t5electra.server.detector import ReplacementDetector
from t5electra.server.errors import InvalidInput
from t5electra.server.generator import T5Generator

T = TypeVar("T")
WORKERS = 8
_SINGLE = (("batch-size", "1"),)


def _prepare(context: grpc.ServicerContext, prepare: Callable[[], T]) -> T:
    """Runs the engine's validation; a refusal ends the call with INVALID_ARGUMENT."""
    try:
        return prepare()
    except InvalidInput as error:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        raise  # abort raises; this keeps type checkers informed


class PlainGeneration(generation_pb2_grpc.TextGenerationServicer):
    def __init__(self, generator: T5Generator) -> None:
        self._generator = generator

    def Generate(self, request: generation_pb2.GenerateRequest, context: grpc.ServicerContext):
        prepared = _prepare(context, lambda: self._generator.prepare(wire.generation_request(request, "")))
        context.set_trailing_metadata(_SINGLE)
        result = self._generator.generate([prepared])[0]
        usage = Usage(result.input_tokens, result.output_tokens)
        return wire.generate_response(Reply(result, self._generator.name, usage, BatchTiming()))

    def GenerateStream(
        self, request: generation_pb2.GenerateRequest, context: grpc.ServicerContext
    ) -> Iterator[generation_pb2.GenerateStreamResponse]:
        prepared = _prepare(context, lambda: self._generator.prepare(wire.generation_request(request, ""), stream=True))
        session = self._generator.session([prepared])
        while not session.done and context.is_active():
            for event in session.step():
                if event.result is not None:
                    context.set_trailing_metadata(_SINGLE)
                    usage = Usage(event.result.input_tokens, event.result.output_tokens)
                    yield wire.last_stream_response(Reply(event.piece, self._generator.name, usage, BatchTiming()))
                elif event.piece is not None:
                    yield wire.stream_response(event.piece)


class PlainDetection(detection_pb2_grpc.ReplacementDetectionServicer):
    def __init__(self, detector: ReplacementDetector) -> None:
        self._detector = detector

    def DetectReplacements(
        self, request: detection_pb2.DetectReplacementsRequest, context: grpc.ServicerContext
    ) -> detection_pb2.DetectReplacementsResponse:
        prepared = _prepare(context, lambda: self._detector.prepare(wire.detection_request(request, "")))
        context.set_trailing_metadata(_SINGLE)
        detection = self._detector.detect([prepared])[0]
        usage = Usage(detection.input_tokens)
        return wire.detect_response(Reply(detection, self._detector.name, usage, BatchTiming()))


def serve(t5: str, electra: str, port: int, dtype: str = "auto") -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS))
    generation_pb2_grpc.add_TextGenerationServicer_to_server(PlainGeneration(T5Generator(t5, dtype=dtype)), server)
    detector = ReplacementDetector(electra, dtype=dtype)
    detection_pb2_grpc.add_ReplacementDetectionServicer_to_server(PlainDetection(detector), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--t5", required=True)
    parser.add_argument("--electra", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--dtype", default="auto", help="precision of both models (default auto: float32)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    server = serve(args.t5, args.electra, args.port, args.dtype)
    print(f"plain server ready on 127.0.0.1:{args.port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
