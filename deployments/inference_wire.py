"""The Open Inference Protocol's tensors <-> this server's requests and
answers, for the ingress's ``inference.GRPCInferenceService`` methods.

Each model takes one input, ``text``: a BYTES tensor of any shape, each
element a UTF-8 text and one request to the model (the model batches them
with whatever else it serves). Request parameters are the model's own, by
the native requests' names: Generate's (``max_new_tokens``, ``do_sample``,
``temperature``..., ``stop_sequences`` as a JSON list in a string) for T5;
``threshold`` and ``offset_unit`` for ELECTRA. What these outputs cannot
carry is refused rather than dropped: log-probabilities, and word scoring
(words are DetectReplacements'). Outputs:

- T5, for an input of shape S and K = ``num_return_sequences`` (1 unless
  given): ``text`` (BYTES), ``generated_tokens`` (INT64) and
  ``finish_reason`` (BYTES: length, eos_token, stop_sequence), each of shape
  S + [K], a text's sequences best first.
- ELECTRA: for N texts of up to T tokens, ``tokens`` (BYTES [N, T]),
  ``scores`` (FP32 [N, T]), ``offsets`` (INT32 [N, T, 2], start and end in
  ``offset_unit``) and ``replaced`` (BOOL [N, T]), padded with "", 0, -1
  and false; ``token_count`` (INT64 [N]) says how many of each row are real.

Every output goes back in ``raw_output_contents``, in the order of the
outputs, as tritonclient reads it (a BYTES element is its length in 4 bytes,
little endian, then its bytes). Errors use Triton's wording, so that
clients written against Triton read them the same.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from t5electra.protocol import bytes_tensor
from t5electra.protocol.inference import open_inference_pb2 as oip
from t5electra.server.domain import (
    Detection,
    DetectionRequest,
    GenerationParameters,
    GenerationRequest,
    GenerationResult,
    StreamPiece,
)
from t5electra.server.errors import InvalidInput, UnknownModel

from .servicers import Undecodable

TEXT = "text"

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
class Tensor:
    """One output: name, datatype, shape and its raw bytes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes


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


def generation_outputs(results: Sequence[GenerationResult], shape: tuple[int, ...], per_text: int) -> list[Tensor]:
    """Each text's ``per_text`` sequences (``num_return_sequences``) along a last dimension."""
    shape = (*shape, per_text)
    sequences = [sequence for result in results for sequence in result.sequences]
    return [
        Tensor(TEXT, "BYTES", shape, bytes_tensor.pack([s.text.encode() for s in sequences])),
        Tensor(
            "generated_tokens",
            "INT64",
            shape,
            struct.pack(f"<{len(sequences)}q", *(s.generated_tokens for s in sequences)),
        ),
        Tensor(
            "finish_reason",
            "BYTES",
            shape,
            bytes_tensor.pack([s.finish_reason.name.lower().encode() for s in sequences]),
        ),
    ]


def streamed_piece(
    request: oip.ModelInferRequest, model: str, version: str, request_id: str, piece: StreamPiece
) -> oip.ModelInferResponse:
    """One piece of a streamed T5 answer, as a Triton decoupled model sends
    it: its new text as ``text`` [1, 1]; the last piece also has
    ``generated_tokens`` and ``finish_reason``, and the parameter
    ``triton_final_response`` (false on the others). Outputs the request
    names are the only ones sent, as far as the piece has them."""
    outputs = [Tensor(TEXT, "BYTES", (1, 1), bytes_tensor.pack([piece.text.encode()]))]
    if piece.finish_reason is not None:
        outputs += [
            Tensor("generated_tokens", "INT64", (1, 1), struct.pack("<q", piece.generated_tokens)),
            Tensor("finish_reason", "BYTES", (1, 1), bytes_tensor.pack([piece.finish_reason.name.lower().encode()])),
        ]
    wanted = {output.name for output in request.outputs}
    unknown_names = sorted(wanted - {spec.name for spec in T5_OUTPUTS})
    if unknown_names:
        raise InvalidInput("outputs", f"unexpected inference output '{unknown_names[0]}' for model '{model}'")
    response = oip.ModelInferResponse(model_name=model, model_version=version, id=request.id or request_id)
    for tensor in outputs:
        if not wanted or tensor.name in wanted:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
            response.raw_output_contents.append(tensor.raw)
    response.parameters["triton_final_response"].bool_param = piece.finish_reason is not None
    return response


def detection_outputs(detections: Sequence[Detection]) -> list[Tensor]:
    rows, width = len(detections), max((len(d.tokens) for d in detections), default=0)

    def padded(pick: Callable[[Any], Any], fill: Any) -> list[Any]:
        return [value for d in detections for value in [*map(pick, d.tokens), *[fill] * (width - len(d.tokens))]]

    tokens = padded(lambda t: t.token.encode(), b"")
    scores = padded(lambda t: t.score, 0.0)
    offsets = [edge for pair in padded(lambda t: (t.start, t.end), (-1, -1)) for edge in pair]
    replaced = padded(lambda t: t.replaced, False)
    return [
        Tensor("tokens", "BYTES", (rows, width), bytes_tensor.pack(tokens)),
        Tensor("scores", "FP32", (rows, width), struct.pack(f"<{len(scores)}f", *scores)),
        Tensor("offsets", "INT32", (rows, width, 2), struct.pack(f"<{len(offsets)}i", *offsets)),
        Tensor("replaced", "BOOL", (rows, width), bytes(int(value) for value in replaced)),
        Tensor("token_count", "INT64", (rows,), struct.pack(f"<{rows}q", *(len(d.tokens) for d in detections))),
    ]


def infer_response(
    request: oip.ModelInferRequest, model: str, version: str, request_id: str, outputs: list[Tensor]
) -> oip.ModelInferResponse:
    """The outputs asked for (all when none are), each in raw_output_contents."""
    wanted = [output.name for output in request.outputs]
    by_name = {tensor.name: tensor for tensor in outputs}
    for name in wanted:
        if name not in by_name:
            raise InvalidInput("outputs", f"unexpected inference output '{name}' for model '{model}'")
    chosen = [by_name[name] for name in wanted] if wanted else outputs
    response = oip.ModelInferResponse(model_name=model, model_version=version, id=request.id or request_id)
    for tensor in chosen:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        response.raw_output_contents.append(tensor.raw)
    return response


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


T5_INPUTS = (TensorSpec(TEXT, "BYTES", (-1,)),)
T5_OUTPUTS = (
    TensorSpec(TEXT, "BYTES", (-1, -1)),
    TensorSpec("generated_tokens", "INT64", (-1, -1)),
    TensorSpec("finish_reason", "BYTES", (-1, -1)),
)
ELECTRA_INPUTS = (TensorSpec(TEXT, "BYTES", (-1,)),)
ELECTRA_OUTPUTS = (
    TensorSpec("tokens", "BYTES", (-1, -1)),
    TensorSpec("scores", "FP32", (-1, -1)),
    TensorSpec("offsets", "INT32", (-1, -1, 2)),
    TensorSpec("replaced", "BOOL", (-1, -1)),
    TensorSpec("token_count", "INT64", (-1,)),
)


def model_metadata(
    name: str, version: str, inputs_: Sequence[TensorSpec], outputs: Sequence[TensorSpec], properties: dict[str, str]
) -> oip.ModelMetadataResponse:
    response = oip.ModelMetadataResponse(name=name, versions=[version], platform="pytorch", properties=properties)
    for spec in inputs_:
        response.inputs.add(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
    for spec in outputs:
        response.outputs.add(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
    return response
