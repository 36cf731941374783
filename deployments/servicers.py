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
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from t5electra import protocol

from . import proxy_extension

GENERATION_SERVICE = protocol.GENERATION.full_name
DETECTION_SERVICE = protocol.DETECTION.full_name
MODELS_SERVICE = protocol.MODELS.full_name
INFERENCE_SERVICE = protocol.INFERENCE.full_name


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


_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
"""The method handler for (client streams, server streams)."""


def _register(servicer: Any, server: Any, service: ServiceDescriptor) -> None:
    """Every method of ``service``, answered by the servicer's method of the
    same name, streaming each way as the descriptor says; in Serve's proxy,
    with the proxy extended first (``proxy_extension.py``)."""
    proxy_extension.install(server)
    handlers = {}
    for method in service.methods:
        kind = _HANDLER_KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=_decoder(GetMessageClass(method.input_type)),
            response_serializer=GetMessageClass(method.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def add_text_generation(servicer: Any, server: Any) -> None:
    _register(servicer, server, protocol.GENERATION)


def add_replacement_detection(servicer: Any, server: Any) -> None:
    _register(servicer, server, protocol.DETECTION)


def add_models(servicer: Any, server: Any) -> None:
    _register(servicer, server, protocol.MODELS)


def add_open_inference(servicer: Any, server: Any) -> None:
    """``inference.GRPCInferenceService``, the Open Inference Protocol."""
    _register(servicer, server, protocol.INFERENCE)
