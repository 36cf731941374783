"""The Open Inference Protocol's requests -> this server's requests, for
the ingress's ``inference.GRPCInferenceService`` methods; the answers, as
output tensors and model metadata, are built in ``inference_outputs.py`` and
exported here too, so that the ingress reads the protocol through one module.

Each model takes one input, ``text``: a BYTES tensor of any shape, each
element a UTF-8 text and one request to the model (the model batches them
with whatever else it serves). Request parameters are the model's own, by
the native requests' names: Generate's (``max_new_tokens``, ``do_sample``,
``temperature``..., ``stop_sequences`` as a JSON list in a string) for T5;
``threshold`` and ``offset_unit`` for ELECTRA. What the outputs cannot
carry is refused rather than dropped: log-probabilities, and word scoring
(words are DetectReplacements'). Errors use Triton's wording, so that
clients written against Triton read them the same.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

from t5electra.protocol import bytes_tensor
from t5electra.protocol.inference import open_inference_pb2 as oip
from t5electra.server.domain import DetectionRequest, GenerationParameters, GenerationRequest
from t5electra.server.errors import InvalidInput, UnknownModel

from .inference_outputs import (
    ELECTRA_INPUTS,
    ELECTRA_OUTPUTS,
    T5_INPUTS,
    T5_OUTPUTS,
    TEXT,
    Tensor,
    TensorSpec,
    detection_outputs,
    generation_outputs,
    infer_response,
    model_metadata,
    streamed_piece,
)
from .servicers import Undecodable

__all__ = [
    "ELECTRA_INPUTS",
    "ELECTRA_OUTPUTS",
    "T5_INPUTS",
    "T5_OUTPUTS",
    "TEXT",
    "Inputs",
    "Tensor",
    "TensorSpec",
    "decode_bytes",
    "detection_outputs",
    "detection_requests",
    "generation_outputs",
    "generation_requests",
    "infer_response",
    "inputs",
    "model_metadata",
    "model_name",
    "streamed_piece",
    "unknown",
]

_NOT_OFFERED = {
    "logprobs": "log-probabilities are not offered through the Open Inference Protocol; Generate answers them",
    "top_logprobs": "log-probabilities are not offered through the Open Inference Protocol; Generate answers them",
    "word_scoring": "ModelInfer answers tokens; words, and how they are scored, are DetectReplacements'",
    "suggestions": "suggestions are DetectReplacements'",
}
"""Parameters of the native requests that these outputs have no place for."""
_STOP_SEQUENCES = "stop_sequences"
_GENERATION_PARAMETERS = {
    f.name: f.type for f in fields(GenerationParameters) if f.name not in {_STOP_SEQUENCES, *_NOT_OFFERED}
}
_DETECTION_PARAMETERS = {"threshold": "float", "offset_unit": "str"}


@dataclass(frozen=True)
class Inputs:
    """The texts of a ModelInfer request, its parameters and its input's shape."""

    texts: tuple[str, ...]
    shape: tuple[int, ...]
    parameters: dict[str, bool | int | float | str]


def unknown(model: str) -> UnknownModel:
    return UnknownModel(f"Request for unknown model: '{model}' is not found")


def decode_bytes(raw: bytes, field: str) -> list[bytes]:
    try:
        return bytes_tensor.unpack(raw)
    except bytes_tensor.MalformedBytes as error:
        raise InvalidInput(field, str(error)) from None


def _parameter(value: oip.InferParameter) -> bool | int | float | str:
    choice = value.WhichOneof("parameter_choice")
    return "" if choice is None else getattr(value, choice)


def model_name(request: oip.ModelInferRequest | Undecodable) -> str:
    if isinstance(request, Undecodable):
        raise InvalidInput("request", f"{request.size} bytes are not a valid {request.message_type} message")
    return request.model_name


def inputs(request: oip.ModelInferRequest, model: str) -> Inputs:
    """The texts of ``request`` for ``model``, or INVALID_ARGUMENT in Triton's words."""
    names = [tensor.name for tensor in request.inputs]
    if names != [TEXT]:
        extra = [name for name in names if name != TEXT]
        if extra:
            raise InvalidInput("inputs", f"unexpected inference input '{extra[0]}' for model '{model}'")
        raise InvalidInput("inputs", f"expected 1 inputs but got {len(names)} inputs for model '{model}'")
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES":
        raise InvalidInput(
            "inputs",
            f"inference input '{TEXT}' data-type is '{tensor.datatype}', but model '{model}' expects 'BYTES'",
        )
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            count = len(request.raw_input_contents)
            raise InvalidInput("raw_input_contents", f"expected 1 entry, one per input, got {count}")
        if tensor.contents.ByteSize():
            raise InvalidInput("inputs", "contents field must not be specified when using raw_input_contents")
        elements = decode_bytes(request.raw_input_contents[0], "raw_input_contents")
    else:
        elements = list(tensor.contents.bytes_contents)
    shape = tuple(tensor.shape)
    if any(size < 0 for size in shape) or math.prod(shape) != len(elements):
        raise InvalidInput(
            "inputs",
            f"unexpected shape for input '{TEXT}' for model '{model}': {list(shape)} holds {math.prod(shape)} "
            f"elements, the contents {len(elements)}",
        )
    try:
        texts = tuple(element.decode("utf-8") for element in elements)
    except UnicodeDecodeError as error:
        raise InvalidInput("inputs", f"input '{TEXT}' holds an element that is not UTF-8 ({error.reason})") from None
    parameters = {name: _parameter(value) for name, value in request.parameters.items()}
    return Inputs(texts, shape, parameters)


def _typed(name: str, value: object, kind: str) -> Any:
    """``value`` as the parameter's type; bool is not an int, an int is a float."""
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind in ("int", "int | None") and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    raise InvalidInput(f"parameters.{name}", f"must be {kind.split(' ')[0]}, got {type(value).__name__}")


def _check_names(given: Inputs, known: set[str]) -> None:
    for name in sorted(given.parameters):
        if name in _NOT_OFFERED:
            raise InvalidInput(f"parameters.{name}", _NOT_OFFERED[name])
        if name not in known:
            raise InvalidInput(
                f"parameters.{name}", f"not a parameter of this model (it takes {', '.join(sorted(known))})"
            )


def _stop_sequences(value: object) -> tuple[str, ...]:
    """The protocol's parameters are scalars: a list travels as JSON in a string."""
    try:
        stops = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError:
        stops = None
    if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
        raise InvalidInput(f"parameters.{_STOP_SEQUENCES}", 'must be a JSON list of strings in a string, e.g. ["\\n"]')
    return tuple(stops)


def generation_requests(given: Inputs, request_id: str, deadline: float | None) -> list[GenerationRequest]:
    _check_names(given, {*_GENERATION_PARAMETERS, _STOP_SEQUENCES})
    values = {
        name: _typed(name, value, _GENERATION_PARAMETERS[name])
        for name, value in given.parameters.items()
        if name != _STOP_SEQUENCES
    }
    if _STOP_SEQUENCES in given.parameters:
        values[_STOP_SEQUENCES] = _stop_sequences(given.parameters[_STOP_SEQUENCES])
    parameters = GenerationParameters(**values)
    return [
        GenerationRequest(text, parameters, f"{request_id}/{index}", deadline) for index, text in enumerate(given.texts)
    ]


def detection_requests(given: Inputs, request_id: str, deadline: float | None) -> list[DetectionRequest]:
    _check_names(given, set(_DETECTION_PARAMETERS))
    threshold = _typed("threshold", given.parameters.get("threshold", DetectionRequest.threshold), "float")
    unit = _typed("offset_unit", given.parameters.get("offset_unit", DetectionRequest.offset_unit), "str").lower()
    return [
        DetectionRequest(text, threshold, f"{request_id}/{index}", offset_unit=unit, deadline=deadline)
        for index, text in enumerate(given.texts)
    ]
