"""How the services are registered with Ray Serve's gRPC proxy.

The same method table grpcio-tools generates, with one difference: a request
body that is not a valid message decodes to :class:`Undecodable` instead of
failing inside grpcio, which would answer UNKNOWN ("Unexpected DecodeError")
before any of our code ran. The ingress refuses it with INVALID_ARGUMENT,
like any other malformed input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from t5electra.protocol.v1 import detection_pb2, generation_pb2, models_pb2

GENERATION_SERVICE = "t5electra.v1.TextGeneration"
DETECTION_SERVICE = "t5electra.v1.ReplacementDetection"
MODELS_SERVICE = "t5electra.v1.Models"


@dataclass(frozen=True)
class Undecodable:
    """A request body that did not parse as ``message_type``."""

    message_type: str
    size: int
    reason: str


def _decoder(message_type: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    def decode(raw: bytes) -> Message | Undecodable:
        try:
            return message_type.FromString(raw)
        except DecodeError as error:
            return Undecodable(message_type.DESCRIPTOR.full_name, len(raw), str(error))

    return decode


def _register(server: Any, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


def add_text_generation(servicer: Any, server: Any) -> None:
    request = _decoder(generation_pb2.GenerateRequest)
    _register(
        server,
        GENERATION_SERVICE,
        {
            "Generate": grpc.unary_unary_rpc_method_handler(
                servicer.Generate,
                request_deserializer=request,
                response_serializer=generation_pb2.GenerateResponse.SerializeToString,
            ),
            "GenerateStream": grpc.unary_stream_rpc_method_handler(
                servicer.GenerateStream,
                request_deserializer=request,
                response_serializer=generation_pb2.GenerateStreamResponse.SerializeToString,
            ),
        },
    )


def add_replacement_detection(servicer: Any, server: Any) -> None:
    _register(
        server,
        DETECTION_SERVICE,
        {
            "DetectReplacements": grpc.unary_unary_rpc_method_handler(
                servicer.DetectReplacements,
                request_deserializer=_decoder(detection_pb2.DetectReplacementsRequest),
                response_serializer=detection_pb2.DetectReplacementsResponse.SerializeToString,
            ),
        },
    )


def add_models(servicer: Any, server: Any) -> None:
    _register(
        server,
        MODELS_SERVICE,
        {
            "Tokenize": grpc.unary_unary_rpc_method_handler(
                servicer.Tokenize,
                request_deserializer=_decoder(models_pb2.TokenizeRequest),
                response_serializer=models_pb2.TokenizeResponse.SerializeToString,
            ),
            "GetModelInfo": grpc.unary_unary_rpc_method_handler(
                servicer.GetModelInfo,
                request_deserializer=_decoder(models_pb2.GetModelInfoRequest),
                response_serializer=models_pb2.GetModelInfoResponse.SerializeToString,
            ),
        },
    )
